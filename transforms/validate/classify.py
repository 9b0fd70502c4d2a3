"""Classify: Spider hardness (as test-suite-sql-eval's ``eval_hardness``) and concept tags."""

from __future__ import annotations

import functools
from typing import Iterator

import apache_beam as beam

from transforms.core.record import Record
from transforms.sql import trees
from transforms.kit.stage import DEAD, count, reject
from transforms.sql.concepts import concept_tags
from transforms.sql.hardness import spider_hardness
from transforms.sql.normalize import CACHE_ENTRIES


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def classify_sql(normalized_sql: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    """Difficulty and concept tags of a normalized query, remembered for repeats.

    Both depend on the normalized SQL alone, and logs repeat queries, so each
    distinct query is classified once per worker.
    """
    tree = trees.tree_for(normalized_sql, dialect)
    return spider_hardness(tree), tuple(concept_tags(tree))


class _ClassifyFn(beam.DoFn):
    def process(self, record: Record) -> Iterator:
        try:
            difficulty, concepts = classify_sql(record.normalized_sql, record.dialect or "")
        except Exception as error:  # noqa: BLE001 - one odd tree must not kill the run
            yield reject("classify", "internal_error", f"{type(error).__name__}: {str(error)[:300]}", record)
            return
        count(f"classify.difficulty.{difficulty}")
        yield record._replace(difficulty=difficulty, concepts=tuple(concepts))


class ClassifyDifficulty(beam.PTransform):
    """Normalized records → records with ``difficulty`` and ``concepts``."""

    def expand(self, records):
        return records | "Classify" >> beam.ParDo(_ClassifyFn()).with_outputs(DEAD, main="records")
