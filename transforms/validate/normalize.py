"""NormalizeSql, the first validation stage: each record's SQL normalized (``transforms.sql.normalize``,
remembered per process), or the record as a dead letter of stage ``parse``, ``safety`` or ``normalize``."""

from __future__ import annotations

from typing import Iterator, Optional

import apache_beam as beam

from transforms.core.record import Record
from transforms.kit.stage import DEAD, count, reject
from transforms.sql.normalize import Rejection, normalize_cached


class _NormalizeFn(beam.DoFn):
    def __init__(self, source_dialect: Optional[str], target_dialect: str):
        self.source_dialect = source_dialect
        self.target_dialect = target_dialect

    def process(self, record: Record) -> Iterator:
        count("normalize.in")
        source = self.source_dialect or record.dialect or self.target_dialect
        try:
            result = normalize_cached(record.sql, source, self.target_dialect)
        except Exception as error:  # noqa: BLE001 - a parser bug must not kill the run
            yield reject("normalize", "internal_error", f"{type(error).__name__}: {str(error)[:300]}", record)
            return
        if isinstance(result, Rejection):
            yield reject(result.stage, result.reason, result.detail, record)
            return
        count("normalize.out")
        yield record._replace(
            dialect=self.target_dialect,
            normalized_sql=result.sql,
            sql_fingerprint=result.sql_fingerprint,
            template_fingerprint=result.template_fingerprint,
            tables=result.tables,
            parameters=result.parameters or record.parameters,
        )


class NormalizeSql(beam.PTransform):
    """Records → normalized records; unparseable / unsafe ones to the ``dead`` output.

    Stages of dead letters: ``parse`` (empty, unparseable, too deep), ``safety``
    (anything but a single read-only query), ``normalize`` (cannot be transpiled).
    """

    def __init__(self, target_dialect: str, source_dialect: Optional[str] = None):
        super().__init__()
        self.target_dialect = target_dialect
        self.source_dialect = source_dialect

    def expand(self, records):
        return records | "Normalize" >> beam.ParDo(
            _NormalizeFn(self.source_dialect, self.target_dialect)
        ).with_outputs(DEAD, main="records")
