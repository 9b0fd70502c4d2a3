"""Options → ``ReadSettings``: how the readers parse logs, chat histories and seed pairs."""

from __future__ import annotations

import argparse

from transforms.label.questions import SEGMENT_CONTEXT
from transforms.ingest.read import ReadSettings


def read_settings(values: argparse.Namespace, *, dialect: str) -> ReadSettings:
    """The readers' settings; ``dialect`` is the dialect the input SQL is written in.

    ``--context segmented`` reads the same bounded window of earlier turns as
    ``window:6`` (``SEGMENT_CONTEXT``): the model picks the turns that matter later.
    """
    return ReadSettings(
        format=values.sql_logs_format,
        sql_field=values.sql_field,
        question_field=values.question_field,
        db_id_field=values.db_id_field,
        tool_name=values.tool_name,
        include_failures=values.include_failures,
        context=SEGMENT_CONTEXT if values.context == "segmented" else values.context,
        dialect=dialect,
        max_sql_bytes=values.max_sql_bytes,
    )
