"""Dedup: one deterministic representative per key, merged counts, as a combine."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from transforms.core.record import Execution, Record
from tests.conftest import make_pipeline
from transforms.select.dedup import ChooseRepresentative, DedupPairs, dedup_key


def rec(id, fp="f1", question="q", db="d", qsource="given", success=True, status="ok", tfp="t1", dup=0):
    return Record(id=id, question=question, sql="s", db_id=db, sql_fingerprint=fp, template_fingerprint=tfp,
                  question_source=qsource, success=success, execution=Execution(status), duplicates=dup)


def run(records, strategy, expected):
    with make_pipeline() as p:
        out = p | beam.Create(records) | DedupPairs(strategy)
        assert_that(out | beam.Map(lambda r: (r.id, r.duplicates)), equal_to(expected), label="pairs")


def test_sql_only_merges_same_sql_and_keeps_the_smallest_id():
    run([rec("c"), rec("a"), rec("b"), rec("z", fp="f2")], "sql-only", [("a", 2), ("z", 0)])


def test_successful_execution_beats_a_failed_one():
    run([rec("a", status="error"), rec("b")], "sql-only", [("b", 1)])


def test_different_databases_are_not_merged():
    run([rec("a", db="x"), rec("b", db="y")], "sql-only", [("a", 0), ("b", 0)])


def test_exact_keeps_different_questions_apart():
    run([rec("a", question="one"), rec("b", question="two"), rec("c", question="two")], "exact", [("a", 0), ("b", 1)])


def test_question_only_ignores_case_and_spacing():
    run([rec("a", question="How many?", fp="1"), rec("b", question="how  many?", fp="2")], "question-only", [("a", 1)])


def test_template_merges_literal_variants():
    run([rec("a", fp="1", tfp="t"), rec("b", fp="2", tfp="t")], "template", [("a", 1)])


def test_none_keeps_everything():
    run([rec("a"), rec("b")], "none", [("a", 0), ("b", 0)])


def test_earlier_merges_are_added_up():
    fn = ChooseRepresentative()
    acc = fn.create_accumulator()
    for r in (rec("a", dup=3), rec("b", dup=1)):
        acc = fn.add_input(acc, r)
    merged = fn.merge_accumulators([acc, fn.add_input(fn.create_accumulator(), rec("0", status="error"))])
    best = fn.extract_output(merged)
    assert (best.id, best.duplicates) == ("a", 6)


def test_key_depends_on_strategy():
    r = rec("a", question="Q  x")
    assert dedup_key(r, "exact") == "d\x00f1\x00Q x"
    assert dedup_key(r, "question-only") == "d\x00q x"
