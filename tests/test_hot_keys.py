"""No hot keys: a query repeated 200,000 times and a database holding 99 % of the records.

Dedup is a ``CombinePerKey``: runners lift it (pre-combine on every worker before
the shuffle), so a key repeated N times reaches the shuffle as one small
accumulator per bundle, never as N records, and the accumulator's size does not
grow with N. Execution groups by (database, SQL fingerprint): a database that
holds 99 % of the records is spread over as many keys as it has distinct queries.
"""

from __future__ import annotations

import itertools

import apache_beam as beam
from apache_beam.portability import common_urns
from apache_beam.runners.portability.fn_api_runner import translations
from apache_beam.testing.util import assert_that, equal_to

from pipeline.record import Execution, Record
from tests.conftest import REPO, make_pipeline
from transforms.dedup import ChooseRepresentative, DedupPairs
from transforms.execute import ExecuteQueries

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
