"""Classify: Spider hardness (as test-suite-sql-eval's ``eval_hardness``) and concept tags."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam

from pipeline.record import Record
from transforms import trees
from transforms.common import DEAD, count, reject
from transforms.concepts import concept_tags
from transforms.hardness import spider_hardness


class _ClassifyFn(beam.DoFn):
    def process(self, record: Record) -> Iterator:
        try:
            tree = trees.tree_for(record.normalized_sql, record.dialect)
            difficulty = spider_hardness(tree)
            concepts = concept_tags(tree)
        except Exception as error:  # noqa: BLE001 - one odd tree must not kill the run
            yield reject("classify", "internal_error", f"{type(error).__name__}: {str(error)[:300]}", record)
            return
        count(f"classify.difficulty.{difficulty}")
        yield record._replace(difficulty=difficulty, concepts=tuple(concepts))


class ClassifyDifficulty(beam.PTransform):
    """Normalized records → records with ``difficulty`` and ``concepts``."""

    def expand(self, records):
        return records | "Classify" >> beam.ParDo(_ClassifyFn()).with_outputs(DEAD, main="records")
