"""The Flex Template's ``metadata.json``, generated from ``OPTION_SPECS`` so it cannot drift.

``python -m pipeline metadata > templates/metadata.json`` writes it; a test checks the
committed file equals this output and that the parameters are exactly our options,
with the same help text. Dataflow checks every parameter against its ``regexes``
when a job is launched (before the launcher VM starts), so each parameter with a
shape gets one: its choices, its own ``regex``, or one derived from its argparse
type (booleans, integers, numbers). The format is Dataflow's ``TemplateMetadata``
(``name``, ``description``, ``streaming``, ``parameters[]`` of ``ParameterMetadata``:
``name``, ``label``, ``helpText``, ``isOptional``, ``regexes``, ``defaultValue``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from pipeline.options import OPTION_SPECS, OptionSpec

NAME = "sqlpairs"
DESCRIPTION = (
    "Turn SQL query logs, chat histories and schemas into validated, deduplicated, "
    "difficulty-balanced text-to-SQL training data."
)
#: Options a launch cannot do without (everything else has a default or is optional).
REQUIRED = frozenset({"output"})

_BOOLEAN = "^(true|false)$"
_UNSIGNED_NUMBER = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
#: Regexes for the argparse types of ``pipeline.options`` (by name, so a renamed or
#: removed helper simply gets no regex instead of breaking the generator).
_TYPE_REGEXES = {
    "parse_bool": _BOOLEAN,
    "_positive_int": "^[1-9][0-9]*$",
    "_non_negative_int": "^[0-9]+$",
    "int": "^-?[0-9]+$",
    "_positive_float": _UNSIGNED_NUMBER,
    "_non_negative_float": _UNSIGNED_NUMBER,
    "float": r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)$",
}


def regex_for(spec: OptionSpec) -> Optional[str]:
    """The regex a launch value of ``spec`` must match, or None for free text.

    >>> from pipeline.options import OptionSpec, parse_bool
    >>> regex_for(OptionSpec("dedup", "", "", choices=("sql-only", "none")))
    '^(sql\\\\-only|none)$'
    >>> regex_for(OptionSpec("keep", "", "", type=parse_bool, flag=True))
    '^(true|false)$'
    """
    if spec.choices:
        return "^(" + "|".join(re.escape(choice) for choice in spec.choices) + ")$"
    if spec.regex:
        return spec.regex
    if spec.flag:
        return _BOOLEAN
    return _TYPE_REGEXES.get(getattr(spec.type, "__name__", ""))


def default_text(value: Any) -> Optional[str]:
    """A default as the text a launcher would pass (``true``/``false`` for booleans).

    >>> default_text(False), default_text(5.0), default_text(None)
    ('false', '5.0', None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parameter(spec: OptionSpec) -> dict[str, Any]:
    """One ``ParameterMetadata`` entry for an option."""
    entry: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "helpText": spec.help,
        "isOptional": spec.name not in REQUIRED,
    }
    regex = regex_for(spec)
    if regex:
        entry["regexes"] = [regex]
    default = default_text(spec.default)
    if default is not None:
        entry["defaultValue"] = default
    return entry


def metadata() -> dict[str, Any]:
    """The whole ``metadata.json``: one parameter per pipeline option, in ``OPTION_SPECS`` order."""
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "streaming": False,
        "parameters": [parameter(spec) for spec in OPTION_SPECS],
    }


def metadata_json() -> str:
    """``metadata()`` as the text of ``templates/metadata.json`` (stable key order, final newline
    added by ``print``)."""
    return json.dumps(metadata(), indent=2, ensure_ascii=False)
