"""``--judge`` / ``--judge_min`` / ``--judge_llm*`` → ``JudgeSettings``, checked before the run.

The judge's model is resolved the way the round-trip model is (``--consistency_llm*``):
its own backend, model, endpoint and key where given, else the ``--llm`` ones — all but
the backend only when the backend is the same, since they belong to one provider — and
always temperature 0, so a re-run scores alike. The request machinery (in flight, rpm,
retries, cache) is the ``--llm_*`` one.
"""

from __future__ import annotations

import argparse
from typing import Optional

from adapters.llm import LlmSettings
from transforms.core.errors import UserError
from transforms.validate.judge import JudgeSettings
from pipeline.settings.llm import check_model, model_settings
from transforms.core.vocab import split_patterns


def role_llm_settings(values: argparse.Namespace, prefix: str, llm: LlmSettings) -> LlmSettings:
    """The model of the role whose options start with ``--<prefix>`` (``judge_llm``), falling back to ``llm``.

    >>> from types import SimpleNamespace
    >>> llm = LlmSettings(backend="openai", model="big", endpoint="http://a/v1", temperature=0.7)
    >>> same = role_llm_settings(SimpleNamespace(judge_llm=None, judge_llm_model=None, judge_llm_endpoint=None,
    ...                                          judge_llm_api_key_env=None), "judge_llm", llm)
    >>> same.backend, same.model, same.endpoint, same.temperature
    ('openai', 'big', 'http://a/v1', 0.0)
    >>> other = role_llm_settings(SimpleNamespace(judge_llm="gemini", judge_llm_model=None, judge_llm_endpoint=None,
    ...                                           judge_llm_api_key_env=None), "judge_llm", llm)
    >>> other.backend, other.model, other.endpoint
    ('gemini', None, None)
    """
    backend = getattr(values, prefix) or llm.backend
    same = backend == llm.backend

    def own(name: str, inherited: Optional[str]) -> Optional[str]:
        return getattr(values, f"{prefix}_{name}") or (inherited if same else None)

    return llm._replace(backend=backend, model=own("model", llm.model), endpoint=own("endpoint", llm.endpoint),
                        api_key_env=own("api_key_env", llm.api_key_env), temperature=0.0)


def judge_settings(values: argparse.Namespace, *, database: Optional[str],
                   dialect: Optional[str]) -> Optional[JudgeSettings]:
    """The judge stage's settings, or None without ``--judge``; raises ``UserError``.

    ``database`` is the ``--database`` spec when queries are executed (``--validate
    execute``), else None: the judge is shown each pair's tables from it.
    """
    if not values.judge:
        if values.judge_min is not None:
            raise UserError("--judge_min needs --judge (it drops pairs by the judge's scores)")
        return None
    if database is None:
        raise UserError("--judge shows the judge each pair's tables: give --database "
                        "(and do not set --validate parse|none)")
    llm = role_llm_settings(values, "judge_llm", model_settings(values))
    if llm.backend == "rules":
        raise UserError("--judge needs a model that reads: add --judge_llm gemini|openai (or --llm gemini|openai)")
    check_model("--judge_llm", llm, project_flag="--llm_project")
    return JudgeSettings(
        llm=llm,
        database=database,
        database_settings={"timeout_s": values.timeout_s, "max_rows": values.max_rows,
                           "password_env": values.database_password_env},
        schema_patterns=tuple(split_patterns(values.schema)),
        schema_dialect=dialect,
        min_score=int(values.judge_min) if values.judge_min is not None else None,
    )
