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
and the records, never on their arrival order, and needs memory for N + 1 sampling
keys per template while combining and one cut-off per *capped* template on every
worker (a float and an id), never a template's records. Every record left out is a dead letter (stage
``sample``, reason ``max_per_template``); the report's ``sample`` section counts the
templates capped.

No template is a hot key, however many pairs it has: the records are never grouped.
A lifted combine (``Top.LargestPerKey``) finds each template's N + 1 largest
sampling keys, pre-combined on every worker, so only N + 1 keys per template and
bundle cross the shuffle; a template with more than N pairs gets a cut-off (its
N-th largest key) in a side input, and each record is kept or dropped where it is,
by comparing its own key with its template's cut-off.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterator, NamedTuple

import apache_beam as beam

from transforms.core.record import Record
from transforms.kit.stage import DEAD, count, reject


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


def _template_key(record: Record) -> str:
    return f"{record.db_id or ''}\x00{record.template_fingerprint}"


class CapOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class CapPerTemplate(beam.PTransform):
    """Records → at most ``limit`` records per (db_id, template_fingerprint); the rest to ``dead``.

    ``notes`` holds one ``note:sample:templates_capped`` per template that lost records.
    """

    def __init__(self, limit: int, weight_by: str = "none", seed: int = 0):
        super().__init__()
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit, self.weight_by, self.seed = limit, weight_by, seed

    def expand(self, records):  # -> CapOutputs (a return annotation that is no PCollection makes Beam warn)
        limit, weight_by, seed = self.limit, self.weight_by, self.seed
        # (sampling key, id): ids break ties, so the order is total and the choice independent of arrival
        cutoffs = (
            records
            | "SamplingKeys" >> beam.Map(lambda r: (_template_key(r), (sampling_key(r, seed, weight_by), r.id)))
            | "LargestPerTemplate" >> beam.combiners.Top.LargestPerKey(limit + 1)
            | "CappedOnly" >> beam.Filter(lambda kv: len(kv[1]) > limit)
            | "Cutoff" >> beam.MapTuple(lambda template, largest: (template, largest[limit - 1]))
        )
        sampled = records | "KeepSample" >> beam.ParDo(
            _KeepSampleFn(limit, weight_by, seed), beam.pvalue.AsDict(cutoffs)).with_outputs(DEAD, main="records")
        notes = cutoffs | "CappedNotes" >> beam.Map(_capped_note)
        return CapOutputs(sampled.records, sampled[DEAD], notes)


def _capped_note(_: tuple) -> str:
    count("sample.templates_capped")
    return "note:sample:templates_capped"


class _KeepSampleFn(beam.DoFn):
    """Keeps a record whose (sampling key, id) reaches its template's cut-off; no cut-off keeps all."""

    def __init__(self, limit: int, weight_by: str, seed: int):
        self.limit, self.weight_by, self.seed = limit, weight_by, seed

    def process(self, record: Record, cutoffs: dict) -> Iterator:
        cutoff = cutoffs.get(_template_key(record))
        if cutoff is None or (sampling_key(record, self.seed, self.weight_by), record.id) >= cutoff:
            count("sample.out")
            yield record
            return
        yield reject("sample", "max_per_template",
                     f"its template has more than {self.limit} pairs; kept {self.limit} "
                     f"(seed {self.seed}, weighted by {self.weight_by})", record)
