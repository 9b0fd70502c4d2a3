"""Describe: give a question to records that have SQL but none (plain logs), without an LLM."""

from __future__ import annotations

import functools
from typing import Iterator

import apache_beam as beam

from pipeline.record import Record
from transforms import trees
from transforms.common import DEAD, count, reject
from transforms.normalize import CACHE_ENTRIES
from transforms.question_rules import describe_sql


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
