"""The job's graph: read → normalize → classify → describe → execute → filter → dedup → write.

Every stage is a PTransform from ``transforms/`` with a ``records`` main output and a
``dead`` side output; this module only wires them and collects the dead letters,
so the whole product's shape is readable in one function.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import apache_beam as beam

from pipeline.record import DeadLetter, Record, dead_letter_to_json, record_to_json, without_timings
from transforms.classify import ClassifyDifficulty
from transforms.dedup import DedupPairs
from transforms.describe import DescribeQuestions
from transforms.execute import ExecuteQueries
from transforms.filter import FilterPairs, FilterSettings
from transforms.normalize import NormalizeSql
from transforms.questions import QuestionSettings, WriteQuestions
from transforms.read import ReadInputs, ReadSettings
from transforms.report import WriteReport, dead_letter_sort_key
from transforms.write import WriteJsonShards


class JobConfig(NamedTuple):
    """Everything the graph needs, resolved and validated from the options by ``pipeline.main``."""

    inputs: tuple[tuple[str, tuple[str, ...]], ...]  # (kind, patterns)
    read: ReadSettings
    target_dialect: str
    source_dialect: Optional[str]
    database: Optional[str]  # None unless --validate execute
    skip_reason: str
    timeout_s: float
    max_rows: int
    max_connections: Optional[int]
    password_env: Optional[str]
    filter: FilterSettings
    dedup: str
    output: str
    num_shards: int
    record_timings: bool
    report_options: Mapping[str, Any]
    questions: Optional[QuestionSettings] = None  # None: questions from rules (DescribeQuestions)


def output_paths(prefix: str) -> dict[str, str]:
    """Where the pairs, dead letters and report go for an output prefix."""
    return {"pairs": prefix, "rejects": f"{prefix}-rejects", "report": f"{prefix}-report.json"}


def _pair_line_without_timings(record: Record) -> str:
    return record_to_json(without_timings(record))


def _dead_line_without_timings(dead: DeadLetter) -> str:
    if dead.record is not None:
        dead = dead._replace(record=without_timings(dead.record))
    return dead_letter_to_json(dead)


def build(p: beam.Pipeline, config: JobConfig) -> dict[str, beam.PCollection]:
    """Add the whole job to pipeline ``p``; returns the main PCollections by name."""
    dead_letters = []
    read_outputs = []
    for kind, patterns in config.inputs:
        read = p | f"Read_{kind}" >> ReadInputs(kind, patterns, config.read)
        read_outputs.append(read.records)
        dead_letters.append(read.dead)
    records = read_outputs | "AllInputs" >> beam.Flatten()

    normalized = records | "NormalizeSql" >> NormalizeSql(config.target_dialect, config.source_dialect)
    classified = normalized.records | "ClassifyDifficulty" >> ClassifyDifficulty()
    describe = WriteQuestions(config.questions) if config.questions is not None else DescribeQuestions()
    described = classified.records | "DescribeQuestions" >> describe
    executed = described.records | "ExecuteQueries" >> ExecuteQueries(
        config.database,
        timeout_s=config.timeout_s,
        max_rows=config.max_rows,
        max_connections=config.max_connections,
        password_env=config.password_env,
        skip_reason=config.skip_reason,
    )
    filtered = executed.records | "FilterPairs" >> FilterPairs(config.filter)
    pairs = filtered.records | "DedupPairs" >> DedupPairs(config.dedup)
    for stage in (normalized, classified, described, executed, filtered):
        dead_letters.append(stage.dead)
    dead = dead_letters | "AllDeadLetters" >> beam.Flatten()

    paths = output_paths(config.output)
    pair_line, dead_line = record_to_json, dead_letter_to_json
    if not config.record_timings:
        pair_line, dead_line = _pair_line_without_timings, _dead_line_without_timings
    pairs | "WritePairs" >> WriteJsonShards(paths["pairs"], config.num_shards, pair_line, lambda r: r.id)
    dead | "WriteDeadLetters" >> WriteJsonShards(paths["rejects"], config.num_shards, dead_line, dead_letter_sort_key)
    steps = {
        "read": records,
        "normalize": normalized.records,
        "classify": classified.records,
        "describe": described.records,
        "execute": executed.records,
        "filter": filtered.records,
        "dedup": pairs,
    }
    {"steps": steps, "dead": dead, "pairs": pairs} | "Report" >> WriteReport(paths["report"], config.report_options)
    return {"pairs": pairs, "dead": dead, **{f"step_{k}": v for k, v in steps.items()}}
