"""No hot keys: a query repeated 200,000 times and a database holding 99 % of the records.

Dedup is a ``CombinePerKey``: runners lift it (pre-combine on every worker before
the shuffle), so a key repeated N times reaches the shuffle as one small
accumulator per bundle, never as N records, and the accumulator's size does not
grow with N. Execution groups by (database, SQL fingerprint): a database that
holds 99 % of the records is spread over as many keys as it has distinct queries;
and on several workers a query with many records is not grouped at all: it runs
once, and its result reaches its records as a side input. The cap per template
never groups records either: a template with 20,000 pairs costs a lifted top-N.
"""

from __future__ import annotations

import collections
import itertools

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.portability import common_urns
from apache_beam.runners.portability.fn_api_runner import translations
from apache_beam.testing.util import assert_that, equal_to

from adapters.db import open_executor
from transforms.core.record import Execution, Record
from tests.conftest import REPO, make_pipeline
from transforms.select.dedup import ChooseRepresentative, DedupPairs
from transforms.validate.execute import ExecuteQueries
from transforms.kit.executors import run_query
from transforms.select.weighting import CapPerTemplate, sampling_key

HOT_REPEATS = 200_000
CHINOOK = REPO / "examples" / "chinook.sqlite"


def _hot_records(chunk: int, per_chunk: int):
    """Chunk ``chunk`` of the log: ``per_chunk`` copies of the hot query on the big database,
    plus one record for each of a few other (database, query) pairs."""
    for i in range(per_chunk):
        number = chunk * per_chunk + i
        yield Record(id=f"hot{number:07d}", question="How many tracks?", sql="SELECT COUNT(*) FROM track",
                     db_id="big", sql_fingerprint="hot", template_fingerprint="t-hot", question_source="given",
                     execution=Execution("ok"))
    yield Record(id=f"cold{chunk:03d}", question="q", sql="SELECT 1", db_id=f"small{chunk % 3}",
                 sql_fingerprint=f"cold{chunk}", template_fingerprint="t-cold", question_source="given",
                 execution=Execution("ok"))


def test_a_query_repeated_200k_times_dedups_to_one_correct_representative():
    chunks, per_chunk = 100, HOT_REPEATS // 100
    with make_pipeline() as p:
        records = p | beam.Create(range(chunks)) | beam.FlatMap(_hot_records, per_chunk)
        pairs = records | DedupPairs("sql-only")
        summary = pairs | beam.Map(lambda r: (r.db_id, r.id, r.duplicates, r.frequency))
        expected = [("big", "hot0000000", HOT_REPEATS - 1, HOT_REPEATS)]
        expected += [(f"small{c % 3}", f"cold{c:03d}", 0, 1) for c in range(chunks)]
        assert_that(summary, equal_to(expected))


def test_the_accumulator_of_a_hot_key_stays_one_record_whatever_its_repeats():
    fn = ChooseRepresentative()
    coder = fn.get_accumulator_coder()
    sizes = {}
    accumulator = fn.create_accumulator()
    for count, record in enumerate(itertools.islice(_hot_records(0, HOT_REPEATS), HOT_REPEATS), start=1):
        accumulator = fn.add_input(accumulator, record)
        if count in (10, 1_000, HOT_REPEATS):
            sizes[count] = len(coder.encode(accumulator))
    # one record and two varint counters: only the counters' digits grow (log N), never a list
    assert sizes[HOT_REPEATS] - sizes[10] <= 2 * 4, f"accumulator bytes by repeats: {sizes}"
    assert fn.extract_output(accumulator).duplicates == HOT_REPEATS - 1


def test_dedup_is_lifted_into_a_precombine_before_the_shuffle():
    p = beam.Pipeline(runner="FnApiRunner")
    p | beam.Create([Record(id="a", question=None, sql="s", sql_fingerprint="f")]) | "DedupPairs" >> DedupPairs()
    proto = p.to_runner_api()
    context_stages = translations.create_and_optimize_stages(
        proto,
        phases=[translations.annotate_downstream_side_inputs, translations.fix_side_input_pcoll_coders,
                translations.lift_combiners],
        known_runner_urns=frozenset([common_urns.primitives.FLATTEN.urn, common_urns.primitives.GROUP_BY_KEY.urn]),
    )
    stages = context_stages[1]
    urns = {t.unique_name: t.spec.urn for stage in stages for t in stage.transforms}
    combine = "DedupPairs/ChooseRepresentative"
    assert urns.get(f"{combine}/Precombine") == common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn
    assert urns.get(f"{combine}/Group") == common_urns.primitives.GROUP_BY_KEY.urn
    assert urns.get(f"{combine}/Merge") == common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn
    shuffles = [name for name, urn in urns.items()
                if urn == common_urns.primitives.GROUP_BY_KEY.urn and name.startswith("DedupPairs")]
    assert shuffles == [f"{combine}/Group"], "records must not be grouped anywhere else in DedupPairs"


def _skewed_records():
    """99 % of the records on database ``big`` (50 distinct queries, each repeated), 1 % elsewhere."""
    records = []
    for i in range(9_900):
        query = i % 50
        records.append(Record(id=f"b{i:05d}", question="q", sql=f"SELECT {query}", normalized_sql=f"SELECT {query}",
                              dialect="sqlite", db_id="big", sql_fingerprint=f"fp{query}"))
    for i in range(100):
        records.append(Record(id=f"s{i:03d}", question="q", sql="SELECT 7", normalized_sql="SELECT 7",
                              dialect="sqlite", db_id=f"small{i % 4}", sql_fingerprint="fp7"))
    return records


def _group_keys_of(pipeline: beam.Pipeline, label: str) -> beam.PCollection:
    """The keyed input of the GroupByKey with ``label``."""
    found = []

    class _Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if node.full_label == label:
                found.extend(node.inputs)

    pipeline.visit(_Visitor())
    assert len(found) == 1, f"no GroupByKey {label!r} in the graph"
    return found[0]


def test_execution_groups_by_database_and_query_never_by_database_alone():
    records = _skewed_records()
    databases = ",".join(f"{db}=sqlite:///{CHINOOK}" for db in ("big", "small0", "small1", "small2", "small3"))
    with make_pipeline() as p:
        executed = p | beam.Create(records) | "ExecuteQueries" >> ExecuteQueries(databases, max_connections=2)
        keyed = _group_keys_of(p, "ExecuteQueries/GroupByQuery")
        keys = keyed | "Keys" >> beam.Map(lambda kv: kv[0]) | beam.Distinct()
        expected = [("big", f"fp{q}") for q in range(50)] + [(f"small{d}", "fp7") for d in range(4)]
        assert_that(keys, equal_to(expected), label="keys")
        statuses = executed.records | beam.Map(lambda r: r.execution.status) | beam.combiners.Count.PerElement()
        assert_that(statuses, equal_to([("ok", len(records))]), label="every record executed")
        assert_that(executed.dead, equal_to([]), label="no dead letters")


def _hot_and_cold_records():
    """One query 1,500 times on ``big``, one failing query 300 times, one on an unknown database
    300 times, 40 cold queries twice each, and 200 records that already carry an execution."""
    def record(rid, sql, db_id, fingerprint):
        return Record(id=rid, question="q", sql=sql, normalized_sql=sql, dialect="sqlite", db_id=db_id,
                      sql_fingerprint=fingerprint)

    records = [record(f"h{i:05d}", "SELECT COUNT(*) FROM track", "big", "hot") for i in range(1_500)]
    records += [record(f"e{i:05d}", "SELECT nope FROM track", "big", "hot-error") for i in range(300)]
    records += [record(f"u{i:05d}", "SELECT 1", "unknown", "hot-unknown") for i in range(300)]
    records += [record(f"c{i:05d}", f"SELECT {i % 40}", "small", f"cold{i % 40}") for i in range(80)]
    # settled before Execute (a template Instantiate could not fill): 200 of one query, never run again
    records += [record(f"s{i:05d}", "SELECT $1", "big", "settled")._replace(execution=Execution("error"))
                for i in range(200)]
    return records


def _expected_executions() -> dict[str, tuple]:
    """(status, row_count, result_hash) of the two runnable queries, run here directly."""
    executor = open_executor(f"sqlite:///{CHINOOK}", timeout_s=5.0, max_rows=10000)
    try:
        ok, error = (run_query(executor, sql, "sqlite") for sql in ("SELECT COUNT(*) FROM track",
                                                                    "SELECT nope FROM track"))
        return {"h": (ok.status, ok.row_count, ok.result_hash), "e": (error.status, None, None)}
    finally:
        executor.close()


def _run_skewed(hot_threshold):
    """Execute the skewed records; assert what every record got; return the job's counters."""
    records = _hot_and_cold_records()
    expected = _expected_executions()
    databases = f"big=sqlite:///{CHINOOK},small=sqlite:///{CHINOOK}"
    p = make_pipeline()
    executed = p | beam.Create(records) | "ExecuteQueries" >> ExecuteQueries(
        databases, max_connections=2, hot_threshold=hot_threshold)
    grouped = _group_keys_of(p, "ExecuteQueries/GroupByQuery") | "Keys" >> beam.Map(lambda kv: kv[0]) | beam.Distinct()
    cold = [("small", f"cold{q}") for q in range(40)]
    hot = [("big", "hot"), ("big", "hot-error"), ("unknown", "hot-unknown")]
    settled = [("\x00settled", f"s{i:05d}") for i in range(200)]  # keyed apart, passed through unchanged
    assert_that(grouped, equal_to(cold + settled if hot_threshold else cold + hot + settled), label="grouped keys")
    outcomes = (executed.records
                | "Outcomes" >> beam.Map(lambda r: (r.id[0], r.execution.status,
                                                    r.execution.row_count if r.id[0] == "h" else None,
                                                    r.execution.result_hash if r.id[0] == "h" else None))
                | "CountOutcomes" >> beam.combiners.Count.PerElement())
    assert_that(outcomes, equal_to([((prefix, *expected[prefix]), n) for prefix, n in (("h", 1_500), ("e", 300))]
                                   + [(("c", "ok", None, None), 80), (("s", "error", None, None), 200)]),
                label="every record's execution")
    dead = executed.dead | "DeadRows" >> beam.Map(lambda d: (d.record.id[0], d.stage, d.reason))
    assert_that(dead | "CountDead" >> beam.combiners.Count.PerElement(),
                equal_to([(("u", "execute", "no_database"), 300)]), label="dead letters")
    result = p.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace("sqlpairs"))
    counters = collections.Counter()  # summed over the steps that count them
    for counter in metrics["counters"]:
        counters[counter.key.metric.name] += counter.committed
    for distribution in metrics["distributions"]:  # as a counter: the largest value over the steps
        name = f"{distribution.key.metric.name}.max"
        counters[name] = max(counters[name], distribution.committed.max)
    return counters


@pytest.mark.parametrize("hot_threshold", [None, 100], ids=["grouped", "hot-apart"])
def test_a_hot_query_runs_once_and_gives_every_record_its_result(hot_threshold):
    counters = _run_skewed(hot_threshold)
    # each distinct runnable query ran once (the unknown database's never runs)
    assert counters["execute.queries"] == 2 + 40
    assert counters["execute.rejected.no_database"] == 300
    # what the grouping's largest key held: the hot query's 1,500 records, or a cold query's 2
    assert counters["execute.group_records.max"] == (2 if hot_threshold else 1_500)


def test_hot_records_cross_no_shuffle_but_lifted_combines():
    p = beam.Pipeline(runner="FnApiRunner")
    record = Record(id="a", question=None, sql="s", sql_fingerprint="f", db_id="d")
    p | beam.Create([record]) | "ExecuteQueries" >> ExecuteQueries(f"sqlite:///{CHINOOK}", hot_threshold=10)
    lifted, unlifted = _lifted_and_unlifted_shuffles(p)
    # the one shuffle of whole records is the cold queries' grouping; the hot path only combines
    assert unlifted == ["ExecuteQueries/GroupByQuery"], (lifted, unlifted)
    assert any(name.startswith("ExecuteQueries/RunHotQueries/CountPerQuery") for name in lifted)


def _lifted_and_unlifted_shuffles(pipeline: beam.Pipeline) -> tuple[list[str], list[str]]:
    """The GroupByKeys of the optimized graph: (under a lifted combine, whole-element shuffles)."""
    context_stages = translations.create_and_optimize_stages(
        pipeline.to_runner_api(),
        phases=[translations.annotate_downstream_side_inputs, translations.fix_side_input_pcoll_coders,
                translations.lift_combiners],
        known_runner_urns=frozenset([common_urns.primitives.FLATTEN.urn, common_urns.primitives.GROUP_BY_KEY.urn]),
    )
    urns = {t.unique_name: t.spec.urn for stage in context_stages[1] for t in stage.transforms}
    precombine = common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn
    lifted, unlifted = [], []
    for name, urn in sorted(urns.items()):
        if urn == common_urns.primitives.GROUP_BY_KEY.urn:
            is_lifted = name.endswith("/Group") and urns.get(name[: -len("Group")] + "Precombine") == precombine
            (lifted if is_lifted else unlifted).append(name)
    return lifted, unlifted


def test_a_template_with_20k_pairs_is_capped_to_the_largest_sampling_keys_without_grouping():
    limit, seed = 7, 11
    records = [Record(id=f"hot{i:05d}", question=None, sql="", db_id="big", template_fingerprint="t-hot",
                      frequency=1 + i % 13) for i in range(20_000)]
    records += [Record(id=f"mid{i:02d}", question=None, sql="", db_id="big", template_fingerprint="t-mid",
                       frequency=1) for i in range(30)]
    records += [Record(id=f"few{i}", question=None, sql="", db_id="small", template_fingerprint="t-hot")
                for i in range(limit)]  # the same template on another database: its own group, not capped
    expected = []
    for prefix in ("hot", "mid"):
        group = [r for r in records if r.id.startswith(prefix)]
        expected += sorted(group, key=lambda r: (sampling_key(r, seed, "frequency"), r.id))[-limit:]
    expected_ids = sorted(r.id for r in expected) + [f"few{i}" for i in range(limit)]
    with make_pipeline() as p:
        capped = p | beam.Create(records) | "CapPerTemplate" >> CapPerTemplate(limit, "frequency", seed)
        assert_that(capped.records | beam.Map(lambda r: r.id), equal_to(expected_ids), label="kept")
        assert_that(capped.dead | "DeadCount" >> beam.combiners.Count.Globally(),
                    equal_to([len(records) - len(expected_ids)]), label="every other record is a dead letter")
        assert_that(capped.notes, equal_to(["note:sample:templates_capped"] * 2), label="two templates capped")
    lifted, unlifted = _lifted_and_unlifted_shuffles(p)
    assert [name for name in unlifted if name.startswith("CapPerTemplate")] == []
    assert any(name.startswith("CapPerTemplate/LargestPerTemplate") for name in lifted)
