"""``--evidence`` → ``EvidenceSettings``, checked before the run.

The evidence is written by the ``--llm`` model at temperature 0 (a re-run writes the
same notes, and ``--llm_cache`` makes it free); ``--llm rules`` cannot write it.
"""

from __future__ import annotations

import argparse
from typing import Optional

from transforms.core.errors import UserError
from transforms.generate.evidence import EvidenceSettings
from pipeline.settings.llm import check_model, model_settings
from transforms.core.vocab import split_patterns


def evidence_settings(values: argparse.Namespace, *, database: Optional[str],
                      dialect: Optional[str]) -> Optional[EvidenceSettings]:
    """The evidence stage's settings, or None without ``--evidence``; raises ``UserError``.

    ``database`` is the ``--database`` spec when queries are executed (``--validate
    execute``), else None: the evidence is grounded in each pair's tables from it.
    """
    if not values.evidence:
        return None
    if database is None:
        raise UserError("--evidence grounds its notes in each pair's tables: give --database "
                        "(and do not set --validate parse|none)")
    llm = model_settings(values, temperature=0.0)
    if llm.backend == "rules":
        raise UserError("--evidence needs a model that writes it: add --llm gemini|openai")
    check_model("--llm", llm)
    return EvidenceSettings(
        llm=llm,
        database=database,
        database_settings={"timeout_s": values.timeout_s, "max_rows": values.max_rows,
                           "password_env": values.database_password_env},
        schema_patterns=tuple(split_patterns(values.schema)),
        schema_dialect=dialect,
    )
