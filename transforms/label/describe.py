"""Describe: give a question to records that have SQL but none (plain logs), without an LLM.

Questions are written after execute → filter → dedup, for each distinct representative
only (:class:`DedupBeforeQuestions`): a SQL logged a thousand times, or one that fails to
run, costs no question at all beyond the one its representative gets. The rules writer is
cheap, but a model (``transforms.label.questions``) is paid per request: 9,412 requests for
1,150 written pairs when questions came first.
"""

from __future__ import annotations

import functools
from typing import Iterator

import apache_beam as beam

from transforms.core.record import Record
from transforms.sql import trees
from transforms.kit.stage import DEAD, count, reject
from transforms.select.dedup import DedupPairs
from transforms.sql.normalize import CACHE_ENTRIES
from transforms.sql.question_rules import describe_sql


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def describe_cached(normalized_sql: str, dialect: str) -> str:
    """The rules question of a normalized query, written once per distinct query and worker."""
    return describe_sql(trees.tree_for(normalized_sql, dialect))


class _DescribeFn(beam.DoFn):
    def process(self, record: Record) -> Iterator:
        if record.question:
            yield record
            return
        try:
            question = describe_cached(record.normalized_sql, record.dialect or "")
        except Exception as error:  # noqa: BLE001
            yield reject("describe", "internal_error", f"{type(error).__name__}: {str(error)[:300]}", record)
            return
        if not question:
            yield reject("describe", "no_question", "the rules writer produced no question", record)
            return
        count("describe.rules")
        yield record._replace(question=question, question_source="rules")


class DescribeQuestions(beam.PTransform):
    """Records without a question get one rendered from their SQL (``question_source: rules``)."""

    def expand(self, records):
        return records | "Describe" >> beam.ParDo(_DescribeFn()).with_outputs(DEAD, main="records")


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
