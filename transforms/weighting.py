"""Cap per template: keep at most N distinct pairs of one query shape, chosen by seeded weighted sampling.

A log dominated by one template (a dashboard polling ``WHERE id = <n>`` a million
times with a million ids) would otherwise dominate the training set too. After
Dedup has merged exact repeats (summing their ``frequency``), this stage groups the
pairs by ``(db_id, template_fingerprint)`` and keeps at most ``--max_per_template``
of each group. Which ones: a seeded weighted sample without replacement
(Efraimidis–Spirakis: each record draws ``u`` in (0, 1) from a hash of the seed and
its id, and the N largest ``u ** (1 / weight)`` are kept), with weight 1 for every
record (``--weight_by none``) or its ``frequency`` (``--weight_by frequency``), so
what users really run is more likely to stay. The choice depends only on the seed
and the records, never on their arrival order, and needs memory for N records per
group, not the group. Every record left out is a dead letter (stage ``sample``,
reason ``max_per_template``); the report's ``sample`` section counts the groups capped.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from typing import Iterable, Iterator

import apache_beam as beam

from pipeline.record import Record
from transforms.common import DEAD, count, reject

#: Tag of the notes side output (same meaning as ``transforms.instantiate.NOTES``).
NOTES = "notes"


def sampling_key(record: Record, seed: int, weight_by: str) -> float:
    """The record's Efraimidis–Spirakis key ``log(u) / weight``: the largest keys are kept.

    >>> r = Record(id="a", question=None, sql="", frequency=100)
    >>> sampling_key(r, 0, "frequency") > sampling_key(r._replace(frequency=1), 0, "frequency")
    True
    """
    digest = hashlib.sha256(f"{seed}\x1f{record.id}".encode("utf-8")).digest()
    u = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 2)  # strictly inside (0, 1)
    weight = max(record.frequency, 1) if weight_by == "frequency" else 1
    return math.log(u) / weight


class _CapFn(beam.DoFn):
    def __init__(self, limit: int, weight_by: str, seed: int):
        self.limit, self.weight_by, self.seed = limit, weight_by, seed

    def process(self, element: tuple[str, Iterable[Record]]) -> Iterator:
        _, records = element
        kept: list[tuple[float, str, int, Record]] = []
        dropped = 0
        for seen, record in enumerate(records):
            item = (sampling_key(record, self.seed, self.weight_by), record.id, seen, record)
            if len(kept) < self.limit:
                heapq.heappush(kept, item)
                continue
            out = heapq.heappushpop(kept, item)
            dropped += 1
            yield reject("sample", "max_per_template",
                         f"its template has more than {self.limit} pairs; kept {self.limit} "
                         f"(seed {self.seed}, weighted by {self.weight_by})", out[3])
        if dropped:
            count("sample.templates_capped")
            yield beam.pvalue.TaggedOutput(NOTES, "note:sample:templates_capped")
        for _, _, _, record in kept:
            count("sample.out")
            yield record


class CapPerTemplate(beam.PTransform):
    """Records → at most ``limit`` records per (db_id, template_fingerprint); the rest to ``dead``."""

    def __init__(self, limit: int, weight_by: str = "none", seed: int = 0):
        super().__init__()
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit, self.weight_by, self.seed = limit, weight_by, seed

    def expand(self, records):
        return (
            records
            | "KeyByTemplate" >> beam.Map(lambda r: (f"{r.db_id or ''}\x00{r.template_fingerprint}", r))
            | "GroupByTemplate" >> beam.GroupByKey()
            | "KeepSample" >> beam.ParDo(_CapFn(self.limit, self.weight_by, self.seed)).with_outputs(
                DEAD, NOTES, main="records"
            )
        )
