"""``ExecuteQueries(grouped=False)``: one worker runs each query as its first record arrives.

The local runner with one worker has nobody to spread groups to, and a ``GroupByKey``
there only makes the database wait until every record is parsed. Without it, every
record must still get exactly what the grouped stage gives it, and each distinct
(database, SQL) must still run once.
"""

from __future__ import annotations

import collections

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from tests.fakes.beam_collect import collect
from tests.conftest import make_pipeline
from tests.stages.validate.test_hot_keys import CHINOOK, _group_keys_of, _hot_and_cold_records
from transforms.validate import execute
from transforms.validate.execute import ExecuteQueries

DATABASES = f"big=sqlite:///{CHINOOK},small=sqlite:///{CHINOOK}"


def _what_each_record_got(grouped: bool, records) -> tuple[list, list, collections.Counter]:
    """(record outputs, dead letters, counters) of the Execute stage, as comparable tuples."""
    p = make_pipeline()
    executed = p | beam.Create(records) | "ExecuteQueries" >> ExecuteQueries(
        DATABASES, max_connections=2, grouped=grouped)
    found = collect(
        p,
        outputs=executed.records | "Outputs" >> beam.Map(lambda r: (r.id, r.execution._replace(elapsed_ms=None))),
        dead=executed.dead | "Dead" >> beam.Map(lambda d: (d.record.id, d.stage, d.reason, d.detail)))
    counters = collections.Counter()
    for counter in found["_result"].metrics().query(MetricsFilter().with_namespace("sqlpairs"))["counters"]:
        counters[counter.key.metric.name] += counter.committed
    return sorted(found["outputs"]), sorted(found["dead"]), counters


def test_without_grouping_every_record_gets_what_the_grouped_stage_gives_it():
    records = _hot_and_cold_records()
    grouped = _what_each_record_got(True, records)
    streamed = _what_each_record_got(False, records)
    assert streamed[0] == grouped[0] and len(streamed[0]) == len(records) - 300
    assert streamed[1] == grouped[1] and {d[2] for d in streamed[1]} == {"no_database"}
    # each distinct runnable query ran once: the hot one, the failing one and 40 cold ones
    assert streamed[2]["execute.queries"] == grouped[2]["execute.queries"] == 42
    assert streamed[2]["execute.rejected.no_database"] == 300


def test_without_grouping_the_graph_holds_no_shuffle():
    with make_pipeline() as p:
        p | beam.Create(_hot_and_cold_records()[:10]) | "ExecuteQueries" >> ExecuteQueries(DATABASES, grouped=False)
        try:
            _group_keys_of(p, "ExecuteQueries/GroupByQuery")
        except AssertionError:
            return
    raise AssertionError("ExecuteQueries(grouped=False) grouped its records")


def test_a_query_forgotten_by_the_bounded_memory_runs_again_with_the_same_result(monkeypatch):
    monkeypatch.setattr(execute, "OUTCOMES_REMEMBERED", 1)
    records = _hot_and_cold_records()
    grouped = _what_each_record_got(True, records)
    streamed = _what_each_record_got(False, records)
    assert streamed[0] == grouped[0]
    assert streamed[2]["execute.queries"] >= 42
