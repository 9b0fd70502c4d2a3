"""Options → ``TrainingSettings``: preference pairs from a weak model, and the training exports."""

from __future__ import annotations

import argparse
from typing import Optional

from pipeline.settings.llm import check_model, model_settings
from transforms.core.errors import UserError
from transforms.kit.executors import default_max_connections
from transforms.publish.exports import EXAMPLE_FORMATS, FORMATS, PREFERENCE_FORMATS, STAGE_BY, ExportSettings, SchemaSource
from transforms.publish.preference import WEAK_MAX_OUTPUT_TOKENS, PairKnobs, PreferenceSettings
from transforms.core.vocab import split_patterns
from transforms.publish.training import TrainingSettings, parse_formats


def preference_settings(values: argparse.Namespace, *, database: Optional[str],
                        schema: SchemaSource) -> Optional[PreferenceSettings]:
    """``PreferenceSettings`` from the parsed options, or None without ``--preference``.

    Raises ``UserError`` for combinations that cannot work.
    """
    if not values.preference:
        return None
    if not database:
        raise UserError("--preference executes the weak model's SQL: give --database (and --validate execute)")
    if not values.weak_llm:
        raise UserError("--preference needs a weak model: --weak_llm openai (with --weak_llm_endpoint for a local "
                        "server) or --weak_llm gemini")
    llm = model_settings(values, "weak_llm", temperature=values.weak_temperature,
                         max_output_tokens=WEAK_MAX_OUTPUT_TOKENS)
    check_model("--weak_llm", llm)
    return PreferenceSettings(
        llm=llm,
        database=database,
        samples=values.samples,
        knobs=PairKnobs(neg_filter=values.dpo_neg_filter, neg_limit=values.dpo_neg_limit,
                        keep_gold=bool(values.dpo_keep_gold), dedup=bool(values.dpo_dedup)),
        database_settings={"timeout_s": values.timeout_s, "max_rows": values.max_rows,
                           "password_env": values.database_password_env},
        max_connections=values.max_connections or default_max_connections(),
        schema=schema,
    )


def training_settings(values: argparse.Namespace, *, dialect: Optional[str], database: Optional[str],
                      output: str) -> Optional[TrainingSettings]:
    """``TrainingSettings`` from the options, or None when only the plain pairs are wanted.

    ``database`` is the ``--database`` spec when queries are executed (``--validate execute``).
    Raises ``UserError`` for combinations that cannot work.
    """
    try:
        formats, parquet = parse_formats(values.format)
    except ValueError as error:
        raise UserError(f"--format: {error}") from None
    if values.stage_by and values.stage_by not in STAGE_BY:
        raise UserError(f"--stage_by {values.stage_by!r}: expected {', '.join(STAGE_BY)}")
    if values.preference and "dpo" not in formats:
        formats = tuple(f for f in FORMATS if f in formats or f == "dpo")
    wants_preference = [f for f in formats if f in PREFERENCE_FORMATS]
    if wants_preference and not values.preference:
        raise UserError(f"--format {'/'.join(wants_preference)} needs --preference (DPO pairs come from the weak "
                        "model's samples)")
    schema = SchemaSource(
        patterns=tuple(split_patterns(values.schema)),
        dialect=dialect,
        database=database,
        database_settings={"timeout_s": values.timeout_s, "max_rows": 100, "password_env": values.database_password_env},
        sample_rows=values.sft_sample_rows,
    )
    if values.sft_sample_rows and not database:
        raise UserError("--sft_sample_rows reads rows from --database: give one (with --validate execute)")
    with_ddl = [f for f in formats if f in (*EXAMPLE_FORMATS, "dpo-chat")]
    if with_ddl and not schema.available:
        raise UserError(f"--format {'/'.join(with_ddl)} put the tables' DDL in the prompt: give --schema DDL "
                        "files or --database")
    preference = preference_settings(values, database=database, schema=schema)
    if formats == ("pairs",) and not parquet and not values.stage_by and preference is None:
        return None
    exports = ExportSettings(
        output=output,
        num_shards=values.num_shards,
        formats=formats,
        parquet=parquet,
        stage_by=values.stage_by,
        schema=schema,
        record_timings=values.record_timings,
    )
    return TrainingSettings(exports=exports, preference=preference)
