"""Dedup: merge duplicates by the chosen key as a Beam combine (no global in-memory set).

The representative of a group is chosen deterministically — a record that
succeeded beats one that failed, a given question beats a generated one, then
the smallest id wins, then the smallest origin, and when all of those tie, the
smallest JSON form of the whole record — and it carries ``duplicates`` (how many
records were merged into it) and the summed ``frequency``. The last key makes the
order total: two records that differ anywhere are never equal, so the choice does
not depend on the order in which a runner (or a number of workers) delivers them.
Because this is a ``CombinePerKey``, Beam lifts the combiner before the shuffle: a
query repeated a million times is pre-merged on every worker and never becomes a
hot key.
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam import coders

from transforms.core.record import Record, record_to_json
from transforms.kit.stage import count


def _question_key(question: Optional[str]) -> str:
    return " ".join((question or "").lower().split())


def dedup_key(record: Record, strategy: str) -> str:
    """The merge key of ``record`` under ``strategy`` (sql-only, exact, question-only, template).

    >>> r = Record(id="1", question="How  many?", sql="", db_id="a", sql_fingerprint="f")
    >>> dedup_key(r, "sql-only"), dedup_key(r, "question-only")
    ('a\\x00f', 'a\\x00how many?')
    """
    db = record.db_id or ""
    if strategy == "sql-only":
        return f"{db}\x00{record.sql_fingerprint}"
    if strategy == "exact":
        return f"{db}\x00{record.sql_fingerprint}\x00{' '.join((record.question or '').split())}"
    if strategy == "question-only":
        return f"{db}\x00{_question_key(record.question)}"
    if strategy == "template":
        return f"{db}\x00{record.template_fingerprint}"
    raise ValueError(f"unknown dedup strategy {strategy!r}")


def preference(record: Record) -> tuple:
    """Sort key of a candidate representative: smaller is better (ties: see :func:`better`)."""
    execution = record.execution
    ran_ok = record.success and (execution is None or execution.status in ("ok", "skipped"))
    # origin after the id: the same text read from two places has one id, and the choice must
    # not depend on which copy arrived first
    return (0 if ran_ok else 1, 0 if record.question_source == "given" else 1, record.id, record.origin or "")


def better(candidate: Record, best: Optional[Record]) -> bool:
    """Whether ``candidate`` should replace ``best``: a total order over records.

    :func:`preference` decides almost always; records it cannot tell apart (one id, one
    origin, other fields different, as two expansions of one input row can be) are ordered
    by their whole JSON form, which only the computation of it costs, and only then.

    >>> a = Record(id="1", question="q", sql="s", extra={"alternative": "0"})
    >>> b = a._replace(extra={"alternative": "1"})
    >>> better(a, b), better(b, a), better(a, a), better(a, None)
    (True, False, False, True)
    """
    if best is None:
        return True
    mine, theirs = preference(candidate), preference(best)
    if mine != theirs:
        return mine < theirs
    return record_to_json(candidate) < record_to_json(best)


_ACCUMULATOR_CODER = coders.TupleCoder(
    [coders.NullableCoder(coders.registry.get_coder(Record)), coders.VarIntCoder(), coders.VarIntCoder()]
)


class ChooseRepresentative(beam.CombineFn):
    """Keeps the preferred record of a group, the group's size and its summed frequency."""

    def create_accumulator(self):
        return (None, 0, 0)

    def add_input(self, accumulator, record: Record):
        best, size, frequency = accumulator
        if better(record, best):
            best = record
        return (best, size + 1 + record.duplicates, frequency + record.frequency)

    def merge_accumulators(self, accumulators):
        best, size, frequency = None, 0, 0
        for candidate, candidate_size, candidate_frequency in accumulators:
            if candidate is not None and better(candidate, best):
                best = candidate
            size += candidate_size
            frequency += candidate_frequency
        return (best, size, frequency)

    def extract_output(self, accumulator) -> Record:
        best, size, frequency = accumulator
        return best._replace(duplicates=size - 1, frequency=frequency)

    def get_accumulator_coder(self):
        return _ACCUMULATOR_CODER


def _count_out(record: Record) -> Record:
    count("dedup.out")
    return record


class DedupPairs(beam.PTransform):
    """Records → one representative per key (``strategy``: sql-only, exact, question-only, template, none)."""

    def __init__(self, strategy: str = "sql-only"):
        super().__init__()
        self.strategy = strategy

    def expand(self, records):
        if self.strategy == "none":
            return records
        strategy = self.strategy
        return (
            records
            | "KeyByDuplicateKey" >> beam.Map(lambda r: (dedup_key(r, strategy), r)).with_output_types(tuple[str, Record])
            | "ChooseRepresentative" >> beam.CombinePerKey(ChooseRepresentative())
            | "DropKey" >> beam.Map(lambda kv: _count_out(kv[1])).with_output_types(Record)
        )


def merges_after_questions(strategy: str) -> bool:
    """Whether ``strategy``'s key holds the question, so pairs are merged again once the job wrote theirs.

    >>> [s for s in ("sql-only", "exact", "question-only", "template", "none") if merges_after_questions(s)]
    ['exact', 'question-only']
    """
    return strategy in ("exact", "question-only")


def _has_question(record: Record, _partitions: int) -> int:
    return 0 if record.question else 1


class DedupBeforeQuestions(beam.PTransform):
    """Dedup by ``strategy`` before any question is written, so each distinct SQL gets one.

    ``sql-only``, ``exact`` (records without a question share one key per SQL),
    ``template`` and ``none`` are ``DedupPairs`` itself. ``question-only`` would merge
    every question-less record of a database into one: those are merged by their SQL
    instead, and merged by their question after it is written (see
    :func:`merges_after_questions`).
    """

    def __init__(self, strategy: str = "sql-only"):
        super().__init__()
        self.strategy = strategy

    def expand(self, records):
        if self.strategy != "question-only":  # inlined: the same step names as DedupPairs (a liftable combine)
            return DedupPairs(self.strategy).expand(records)
        asked, unasked = records | "HasQuestion" >> beam.Partition(_has_question, 2)
        return ((asked | "ByQuestion" >> DedupPairs("question-only"), unasked | "BySql" >> DedupPairs("sql-only"))
                | "Together" >> beam.Flatten())
