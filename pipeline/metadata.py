"""The Flex Template's ``metadata.json``, generated from ``OPTION_SPECS`` so it cannot drift."""

from __future__ import annotations

import json

from pipeline.options import OPTION_SPECS

NAME = "sqlpairs"
DESCRIPTION = (
    "Turn SQL query logs, chat histories and schemas into validated, deduplicated, "
    "difficulty-balanced text-to-SQL training data."
)


def metadata() -> dict:
    """One parameter per pipeline option: name, label, helpText, isOptional, regexes."""
    parameters = []
    for spec in OPTION_SPECS:
        parameter = {
            "name": spec.name,
            "label": spec.label,
            "helpText": spec.help,
            "isOptional": spec.name != "output",
        }
        if spec.choices:
            parameter["regexes"] = ["^(" + "|".join(c.replace("-", "\\-") for c in spec.choices) + ")$"]
        elif spec.regex:
            parameter["regexes"] = [spec.regex]
        elif spec.flag:
            parameter["regexes"] = ["^(true|false)$"]
        parameters.append(parameter)
    return {"name": NAME, "description": DESCRIPTION, "parameters": parameters}


def metadata_json() -> str:
    return json.dumps(metadata(), indent=2)
