"""``--cot`` / ``--cot_min_valid`` / ``--cot_temperature`` / ``--cot_llm*`` / ``--cot_dpo_limit`` /
``--sft_target`` → settings.

The solutions' model is resolved the way the round-trip model is (``--consistency_llm*``):
its own backend, model, endpoint and key where given, else the ``--llm`` ones — all but the
backend only when the backend is the same, since they belong to one provider. Its
temperature is ``--cot_temperature`` (OmniSQL samples at 0.8, so the N solutions differ);
the request machinery (in flight, rpm, retries, cache) is the ``--llm_*`` one.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from adapters.llm import LlmSettings
from pipeline.settings.llm import check_model, model_settings
from transforms.core.errors import UserError
from transforms.publish.cot import COT_MAX_OUTPUT_TOKENS, CotSettings
from transforms.kit.executors import default_max_connections
from transforms.publish.exports import EXAMPLE_FORMATS, SchemaSource
from transforms.core.vocab import split_patterns
from transforms.publish.reasoning_dpo import FORMAT as REASONING_DPO
from transforms.publish.sft_target import SFT_TARGETS
from transforms.publish.training import parse_formats


def cot_llm_settings(values: argparse.Namespace, llm: LlmSettings) -> LlmSettings:
    """The solutions' model: ``--cot_llm*`` where given, else ``--llm*``; ``--cot_temperature``.

    >>> llm = LlmSettings(backend="openai", model="big", endpoint="http://a/v1", temperature=0.7)
    >>> def values(**given):
    ...     return argparse.Namespace(**{"cot_llm": None, "cot_llm_model": None, "cot_llm_endpoint": None,
    ...                                  "cot_llm_api_key_env": None, "cot_temperature": 0.8, **given})
    >>> same = cot_llm_settings(values(), llm)
    >>> same.backend, same.model, same.endpoint, same.temperature, same.max_output_tokens
    ('openai', 'big', 'http://a/v1', 0.8, 1024)
    >>> other = cot_llm_settings(values(cot_llm="gemini"), llm)
    >>> other.backend, other.model, other.endpoint
    ('gemini', None, None)
    """
    backend = values.cot_llm or llm.backend
    same = backend == llm.backend

    def own(name: str, inherited: Optional[str]) -> Optional[str]:
        return getattr(values, f"cot_llm_{name}") or (inherited if same else None)

    return llm._replace(backend=backend, model=own("model", llm.model), endpoint=own("endpoint", llm.endpoint),
                        api_key_env=own("api_key_env", llm.api_key_env), temperature=values.cot_temperature,
                        max_output_tokens=COT_MAX_OUTPUT_TOKENS)


def cot_settings(values: argparse.Namespace, *, database: Optional[str],
                 dialect: Optional[str]) -> Optional[CotSettings]:
    """The ``--cot`` stage's settings, or None without it; raises ``UserError``.

    ``database`` is the ``--database`` spec when queries are executed (``--validate
    execute``), else None: every solution is executed there, and the schema prompt is
    read from it (or from ``--schema`` DDL files).
    """
    try:
        reasoning_dpo = REASONING_DPO in parse_formats(values.format)[0]
    except ValueError:  # --format's own error is reported with the training settings
        reasoning_dpo = False
    if not values.cot:
        if reasoning_dpo:
            raise UserError("--format dpo-reasoning pairs the traces of the --cot votes (ExCoT): add --cot N")
        if values.stage_by == "exec_difficulty" and not values.preference:
            raise UserError("--stage_by exec_difficulty stages pairs by how often a model's samples solved them: "
                            "add --cot N (its solutions) or --preference (the weak model's samples)")
        return None
    if database is None:
        raise UserError("--cot executes every solution's SQL: give --database (and do not set --validate parse|none)")
    if values.cot_min_valid > values.cot:
        raise UserError(f"--cot_min_valid {values.cot_min_valid} is more than the --cot {values.cot} solutions "
                        "written per pair: no pair could be kept")
    llm = cot_llm_settings(values, model_settings(values))
    if llm.backend == "rules":
        raise UserError("--cot needs a model that reasons and writes SQL: add --cot_llm gemini|openai "
                        "(or --llm gemini|openai)")
    check_model("--cot_llm", llm, project_flag="--llm_project")
    database_settings = {"timeout_s": values.timeout_s, "max_rows": values.max_rows,
                         "password_env": values.database_password_env}
    schema = SchemaSource(patterns=tuple(split_patterns(values.schema)), dialect=dialect, database=database,
                          database_settings=dict(database_settings, max_rows=100),
                          sample_rows=values.sft_sample_rows)
    return CotSettings(llm=llm, database=database, samples=values.cot, min_valid=values.cot_min_valid,
                       database_settings=database_settings,
                       max_connections=values.max_connections or default_max_connections(), schema=schema,
                       dpo_limit=values.cot_dpo_limit if reasoning_dpo else 0)


def with_sft_target(values: argparse.Namespace, training: Any) -> Any:
    """``training`` (``TrainingSettings`` or None) with ``--sft_target``; raises ``UserError`` when it cannot apply.

    ``reasoning`` needs ``--cot`` (only its pairs carry a trace) and an export with a completion
    (``--format sft-chat``, ``prompt-completion`` or ``prompt-completion-chat``).
    """
    target = values.sft_target
    if target not in SFT_TARGETS:
        raise UserError(f"--sft_target {target!r}: expected {', '.join(SFT_TARGETS)}")
    if target == "sql":
        return training
    if not values.cot:
        raise UserError("--sft_target reasoning trains on the --cot traces: add --cot N")
    formats = training.exports.formats if training is not None else ()
    if not any(f in EXAMPLE_FORMATS for f in formats):
        raise UserError(f"--sft_target reasoning shapes the completions of --format {', '.join(EXAMPLE_FORMATS)}: "
                        "add one of them")
    return training._replace(exports=training.exports._replace(sft_target=target))
