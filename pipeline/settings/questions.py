"""Options → ``QuestionSettings``: which writer describes the SQL (rules or a model) and how."""

from __future__ import annotations

import argparse
from typing import Optional

from pipeline.settings.llm import check_model, model_settings
from transforms.core.errors import UserError
from transforms.label.questions import QuestionSettings, parse_styles
from transforms.core.vocab import split_patterns


def question_settings(values: argparse.Namespace, *, dialect: Optional[str],
                      database: Optional[str]) -> Optional[QuestionSettings]:
    """``QuestionSettings`` from the parsed options, or None for ``--llm rules`` (the rules writer).

    Raises ``UserError`` for combinations that cannot work, before any pipeline starts.
    """
    try:
        styles = parse_styles(values.question_styles)
    except ValueError as error:
        raise UserError(f"--question_styles: {error}") from None
    if values.llm == "rules":
        if values.context == "segmented":
            raise UserError("--context segmented needs a model: add --llm gemini or --llm openai")
        if styles:
            raise UserError("--question_styles needs a model: add --llm gemini or --llm openai")
        return None
    llm = model_settings(values)
    check_model("--llm", llm)
    return QuestionSettings(
        llm=llm,
        per_sql=values.questions_per_sql,
        styles=styles,
        schema_patterns=tuple(split_patterns(values.schema)),
        schema_dialect=dialect,
        database=database,
        database_settings={"timeout_s": values.timeout_s, "max_rows": 100,
                           "password_env": values.database_password_env},
        context=values.context,
    )
