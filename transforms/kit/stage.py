"""What every stage shares: the dead-letter side output and per-stage counters."""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.core.record import DeadLetter, Record

#: Tag of every stage's dead-letter side output.
DEAD = "dead"
#: Beam metrics namespace of the job's counters.
NAMESPACE = "sqlpairs"

_counters: dict[str, object] = {}


def count(name: str, value: int = 1) -> None:
    """Increment counter ``name`` (e.g. ``normalize.out``) in the job's namespace."""
    counter = _counters.get(name)
    if counter is None:
        counter = _counters[name] = Metrics.counter(NAMESPACE, name)
    counter.inc(value)


def reject(
    stage: str,
    reason: str,
    detail: str = "",
    record: Optional[Record] = None,
    origin: Optional[str] = None,
) -> beam.pvalue.TaggedOutput:
    """A dead letter for the ``DEAD`` side output, counted as ``<stage>.rejected.<reason>``."""
    count(f"{stage}.rejected.{reason}")
    if origin is None and record is not None:
        origin = record.origin
    return beam.pvalue.TaggedOutput(DEAD, DeadLetter(stage, reason, detail[:2000], origin, record))
