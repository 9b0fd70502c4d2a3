"""Decontaminate: final pairs that copy a benchmark item become dead letters (``--decontaminate``).

What counts as a copy (the same normalized SQL, or a benchmark question contained in the
pair's question, word 8-gram containment at least ``--decontaminate_threshold``) is defined
in ``transforms.sql.benchmark_index``, which holds the pure parsing and matching; this module
reads the benchmark files inside the pipeline and checks every final pair against them.

The benchmark is read once, on one worker, from the files the launcher already checked:
its entries (normalized SQL and question, never the job's records) become a side input
of the size of the benchmark, and each worker builds its ``BenchmarkIndex`` from it once.
The stage runs on the pairs that would be written (after dedup and near-duplicate merging,
before the round-trip check and the cap), so a contaminated pair costs no model call and
takes no place under ``--max_per_template``, and the funnel still adds up.

Dead letters: stage ``decontaminate``, reasons ``benchmark_sql`` and ``benchmark_question``,
the detail naming the benchmark item (``file#key``) and the score. Notes for the report
(``note:decontaminate:<key>``): ``benchmark_items``, ``benchmark_sql`` (acceptable queries
indexed), ``benchmark_sql_unparseable`` (queries that could not be normalized: their
question is still checked), ``benchmark_questions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam

from transforms.sql.benchmark_index import (DEFAULT_THRESHOLD, BenchmarkEntry, BenchmarkIndex, entry_of,
                                        read_benchmark)
from transforms.kit.stage import DEAD, count, reject
from transforms.core.record import Record
from transforms.kit.inputs import MatchFiles, Unmatchable, open_input

#: Dead-letter stage (and report step) of decontamination.
STAGE = "decontaminate"
#: Tag of the notes output.
NOTES = "notes"


@dataclass(frozen=True)
class DecontaminateSettings:
    """What ``--decontaminate`` and ``--decontaminate_threshold`` resolved to.

    ``patterns`` are the benchmark file patterns (checked by the launcher to match readable
    files); ``target_dialect`` is the job's, into which benchmark SQL is normalized;
    ``default_dialect`` is the dialect of JSONL pairs that name none (the job's source dialect).
    """

    patterns: tuple[str, ...]
    target_dialect: str
    default_dialect: str
    threshold: float = DEFAULT_THRESHOLD


class DecontaminateOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class _ReadBenchmarkFn(beam.DoFn):
    """A benchmark file → its entries (SQL normalized), and report notes on the ``notes`` output.

    A file that cannot be read fails the job: it was readable when the launcher checked it,
    and a job that silently skipped part of its benchmark would write contaminated pairs.
    """

    def __init__(self, settings: DecontaminateSettings):
        self.settings = settings

    def process(self, found) -> Iterator:
        if isinstance(found, Unmatchable):
            raise RuntimeError(f"--decontaminate: cannot read {found.path}: {found.detail}")
        with open_input(found.path) as stream:
            items = read_benchmark(stream.read(), found.path, self.settings.default_dialect)
        for item in items:
            entry = entry_of(item, self.settings.target_dialect)
            yield beam.pvalue.TaggedOutput(NOTES, "note:decontaminate:benchmark_items")
            for key, n in (("benchmark_sql", len(entry.normalized_sql)),
                           ("benchmark_sql_unparseable", entry.unparseable),
                           ("benchmark_questions", int(bool(entry.question)))):
                for _ in range(n):
                    yield beam.pvalue.TaggedOutput(NOTES, f"note:decontaminate:{key}")
            yield entry


class _DecontaminateFn(beam.DoFn):
    """Pairs → the clean ones, and a dead letter for each that copies a benchmark item."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._index: Optional[BenchmarkIndex] = None
        self._built_from: Optional[int] = None

    def _index_of(self, entries: Sequence[BenchmarkEntry]) -> BenchmarkIndex:
        if self._index is None or self._built_from != id(entries):  # once per worker, not per record
            self._index, self._built_from = BenchmarkIndex(entries), id(entries)
        return self._index

    def process(self, record: Record, entries: Sequence[BenchmarkEntry]) -> Iterator:
        count(f"{STAGE}.in")
        found = self._index_of(entries).match(record.question, record.normalized_sql, self.threshold)
        if found is not None:
            yield reject(STAGE, found.reason, found.detail, record)
            return
        count(f"{STAGE}.out")
        yield record


class Decontaminate(beam.PTransform):
    """Final pairs → those that copy no benchmark item; copies to ``dead`` (see the module docstring)."""

    def __init__(self, settings: DecontaminateSettings):
        super().__init__()
        self.settings = settings

    def expand(self, pairs):  # -> DecontaminateOutputs
        read = (pairs.pipeline
                | "BenchmarkPatterns" >> beam.Create(list(self.settings.patterns))
                | "MatchBenchmark" >> MatchFiles()
                | "ReadBenchmark" >> beam.ParDo(_ReadBenchmarkFn(self.settings)).with_outputs(NOTES, main="entries"))
        entries = read.entries | "BenchmarkIndex" >> beam.combiners.ToList()
        checked = pairs | "CheckPairs" >> beam.ParDo(
            _DecontaminateFn(self.settings.threshold), beam.pvalue.AsSingleton(entries)).with_outputs(
            DEAD, main="records")
        return DecontaminateOutputs(checked.records, checked[DEAD], read[NOTES])
