"""Describe: give a question to records that have SQL but none (plain logs), without an LLM.

Questions are written after execute → filter → dedup, for each distinct representative
only (``transforms.select.dedup.DedupBeforeQuestions``): a SQL logged a thousand times, or one that fails to
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
