"""Instantiate: placeholders filled with real values that fit the operator; weighting and caps."""

from __future__ import annotations

import json
import sqlite3

import apache_beam as beam
import sqlglot
from apache_beam.testing.util import assert_that, equal_to

from pipeline.main import main
from transforms.core.record import Parameter, Record, new_record
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from transforms.validate.instantiate import (
    InstantiateParameters,
    InstantiateSettings,
    instances_wanted,
    like_fragment,
    plan_template,
    sample_query,
    to_literal,
    usage_of,
    validation_query,
)
from transforms.validate.normalize import NormalizeSql
from transforms.sql.placeholders import parameter_nodes
from transforms.select.weighting import CapPerTemplate

CHINOOK = REPO / "examples" / "chinook.sqlite"
CHINOOK_URL = f"sqlite:///{CHINOOK}"


def new_param(name):
    return Parameter(name=name, position=1)


def _ops(sql, dialect="postgres"):
    tree = sqlglot.parse_one(sql, read=dialect)
    return {n.name: usage_of(n).op for n in parameter_nodes(tree, [str(i) for i in range(1, 10)])}


def test_usage_follows_the_operator_and_which_side_the_placeholder_is_on():
    assert _ops("SELECT * FROM t WHERE a = $1 AND $2 < b AND c <> $3 AND d IN ($4, $5)") == {
        "1": "eq", "2": "gt", "3": "neq", "4": "in", "5": "in"}
    assert _ops("SELECT * FROM t WHERE a BETWEEN $1 AND $2 AND lower(n) LIKE lower($3) "
                "AND m LIKE '%' || $4 || '%' LIMIT $5 OFFSET $6") == {
        "1": "between_low", "2": "between_high", "3": "like", "4": "like_part", "5": "limit", "6": "offset"}
    assert _ops("SELECT * FROM t WHERE a > $1 + 1000") == {"1": "other"}


def test_sample_query_reads_distinct_sorted_values_of_the_compared_expression():
    tree = sqlglot.parse_one("SELECT * FROM track AS t WHERE lower(t.name) = $1", read="postgres")
    slot = plan_template(tree, [new_param("1")])[0]
    source, table = slot.candidates[0]
    assert sample_query(source, table, "postgres", 10) == (
        "SELECT DISTINCT LOWER(t.name) AS v FROM track AS t WHERE NOT LOWER(t.name) IS NULL "
        "ORDER BY v NULLS FIRST LIMIT 10")


def test_an_unqualified_column_in_a_join_has_every_table_as_candidate():
    tree = sqlglot.parse_one("SELECT * FROM album JOIN artist ON album.artistid = artist.artistid "
                             "WHERE title = $1", read="postgres")
    assert [t.name for _, t in plan_template(tree, [new_param("1")])[0].candidates] == ["album", "artist"]


def test_like_fragments_are_real_words_without_wildcards():
    assert like_fragment("Alanis Morissette", 0) == "Alanis"
    assert like_fragment("100% Hits_2", 3) in ("100", "Hits")
    assert like_fragment("%_", 0) is None


def test_literals_are_quoted_and_typed():
    assert [to_literal(v).sql() for v in (7, "it's", 1.5)] == ["7", "'it''s'", "1.5"]
    assert to_literal(b"\x00") is None


def test_validation_query_checks_the_template_with_nulls_and_no_rows():
    tree = sqlglot.parse_one("SELECT name FROM artist WHERE artistid = $1 LIMIT $2", read="postgres")
    slots = plan_template(tree, [new_param("1"), new_param("2")])
    assert validation_query(tree, slots, "postgres") == "SELECT name FROM artist WHERE artistid = NULL LIMIT 0"


def test_instances_wanted_is_k_capped_without_weighting():
    assert instances_wanted(1000, InstantiateSettings(instances_per_template=3), 1.0) == 3
    assert instances_wanted(1000, InstantiateSettings(instances_per_template=3, max_per_template=2), 1.0) == 2


# --- the stage on a real database (SQLite Chinook) -------------------------------------------

def _run(sqls, settings=InstantiateSettings(), database=CHINOOK_URL, dialect="sqlite", frequencies=None):
    """Normalize + Instantiate; returns (records, dead letters, notes) as lists."""
    frequencies = frequencies or [1] * len(sqls)
    records = [new_record(sql, frequency=f) for sql, f in zip(sqls, frequencies)]
    p = make_pipeline()
    normalized = p | beam.Create(records) | NormalizeSql(dialect, dialect)
    filled = normalized.records | InstantiateParameters(database, settings)
    out = collect(p, records=filled["records"], dead=filled["dead"], notes=filled["notes"])
    return out["records"], out["dead"], out["notes"]


def _rows(sql):
    with sqlite3.connect(f"file:{CHINOOK}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def test_equality_placeholders_get_values_that_exist():
    records, dead, _ = _run(["SELECT name FROM artist WHERE artistid = ?"], InstantiateSettings(instances_per_template=3))
    assert not dead and len(records) == 3
    template_id = new_record("SELECT name FROM artist WHERE artistid = ?").id
    assert {r.parent_id for r in records} == {template_id} and {r.evolution for r in records} == {"instantiate"}
    assert len({r.id for r in records}) == 3 and len({r.template_fingerprint for r in records}) == 1
    for record in records:
        assert "?" not in record.normalized_sql and record.sql == record.normalized_sql
        assert record.parameters[0].value is not None and record.parameters[0].type == "int"
        assert len(_rows(record.normalized_sql)) == 1


def test_the_same_seed_gives_the_same_instances_and_another_seed_others():
    sql = ["SELECT * FROM customer WHERE country = $1"]
    first = sorted(r.normalized_sql for r in _run(sql, InstantiateSettings(seed=1, instances_per_template=2))[0])
    again = sorted(r.normalized_sql for r in _run(sql, InstantiateSettings(seed=1, instances_per_template=2))[0])
    other = sorted(r.normalized_sql for r in _run(sql, InstantiateSettings(seed=2, instances_per_template=2))[0])
    assert first == again and first != other


def test_ranges_likes_and_limits_return_rows():
    records, dead, _ = _run([
        "SELECT name FROM track WHERE milliseconds BETWEEN :lo AND :hi",
        "SELECT title FROM album WHERE title LIKE ?",
        "SELECT title FROM album WHERE title LIKE '%' || ? || '%'",
        "SELECT total FROM invoice WHERE total > ? ORDER BY total LIMIT ?",
    ], InstantiateSettings(instances_per_template=2, seed=3))
    assert not dead and len(records) == 8
    for record in records:
        assert _rows(record.normalized_sql), record.normalized_sql
    between = [r for r in records if "BETWEEN" in r.normalized_sql]
    assert all(float(r.parameters[0].value) <= float(r.parameters[1].value) for r in between)


def test_a_placeholder_with_no_column_keeps_the_template_checked_and_skipped():
    records, dead, notes = _run(["SELECT name FROM track WHERE milliseconds > ? + 1000"])
    assert not dead and len(records) == 1
    (record,) = records
    assert record.execution.status == "skipped" and "not_compared_with_a_column" in record.execution.error
    assert record.execution.columns == ("Name",)
    assert "note:instantiate:validated_without_values" in notes


def test_a_broken_template_is_marked_as_an_error_not_dropped():
    (record,), _, _ = _run(["SELECT name FROM artist WHERE nosuchcolumn = ?"])
    assert record.execution.status == "error" and "nosuchcolumn" in record.execution.error


def test_without_a_database_defaults_fill_templates_and_others_go_on_unfilled():
    records, _, _ = _run(["SELECT TOP ##n:int?5## Name FROM Artist WHERE Name LIKE '%##q?Black##%'",
                          "SELECT Name FROM Artist WHERE ArtistId = ##Id##"],
                         InstantiateSettings(instances_per_template=3), database=None, dialect="tsql")
    filled = sorted(r.normalized_sql for r in records if r.evolution == "instantiate")
    # the written defaults fill the first instance; a LIMIT/TOP needs no database for more
    assert len(filled) == 3 and "SELECT TOP 5 name FROM artist WHERE name LIKE '%Black%'" in filled
    assert all(sql.endswith("WHERE name LIKE '%Black%'") for sql in filled)
    unfilled = [r for r in records if r.evolution is None]
    assert len(unfilled) == 1 and unfilled[0].execution is None and unfilled[0].parameters[0].name == "Id"


def test_records_without_placeholders_pass_through_untouched():
    records, dead, notes = _run(["SELECT name FROM artist WHERE artistid = 1"])
    assert [r.evolution for r in records] == [None] and not dead and notes == []


def test_frequent_templates_get_more_instances_when_weighting_by_frequency():
    records, _, notes = _run(
        ["SELECT name FROM artist WHERE artistid = ?", "SELECT title FROM album WHERE albumid = ?"],
        InstantiateSettings(instances_per_template=2, weight_by="frequency"), frequencies=[90, 10])
    by_table = {}
    for record in records:
        by_table.setdefault(record.tables[0], []).append(record)
    assert len(by_table["artist"]) == 4 and len(by_table["album"]) == 1  # 2 × 90/50 and max(1, 2 × 10/50)
    assert all(r.frequency == 90 for r in by_table["artist"])
    assert notes.count("added:instantiate") == 3


def test_cap_per_template_keeps_the_frequent_pairs():
    records = [Record(id=f"r{i}", question=None, sql="", template_fingerprint="t", frequency=1000 if i < 2 else 1)
               for i in range(10)] + [Record(id="other", question=None, sql="", template_fingerprint="u")]
    with make_pipeline() as p:
        capped = p | beam.Create(records) | CapPerTemplate(2, weight_by="frequency", seed=5)
        assert_that(capped.records | beam.Map(lambda r: r.id), equal_to(["r0", "r1", "other"]), label="kept")
        assert_that(capped.dead | beam.Map(lambda d: (d.stage, d.reason)),
                    equal_to([("sample", "max_per_template")] * 8), label="dead")


def test_the_cli_reports_instances_as_added_and_balances(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(row) for row in [
        {"sql": "SELECT name FROM artist WHERE artistid = ?", "frequency": 40},
        {"sql": "SELECT name FROM artist WHERE artistid = 3"},
        {"sql": "SELECT name FROM track WHERE milliseconds > ? + 1"},
    ]) + "\n")
    out = tmp_path / "pairs"
    assert main(["run", "--sql_logs", str(log), "--database", CHINOOK_URL, "--output", str(out),
                 "--instances_per_template", "3", "--max_per_template", "2", "--weight_by", "frequency"]) == 0
    report = json.loads((tmp_path / "pairs-report.json").read_text())
    assert report["ok"], report["accounting"]
    # the frequent template gets min(2, 3 × 40 / 20.5) = 2 instances (1 added); the other one cannot be filled
    assert report["accounting"]["records_added"] == 1
    assert report["instantiate"]["templates"] == 2 and report["instantiate"]["instances"] == 2
    # artistid = 3 shares the frequent template: the cap keeps the two instances run 40 times
    assert report["rejections"]["sample"] == {"max_per_template": 1}
    pairs = [json.loads(line) for line in (tmp_path / "pairs-00000-of-00001.jsonl").read_text().splitlines()]
    assert sorted(p["frequency"] for p in pairs) == [1, 40, 40]
    assert report["frequency"] == {"1": 1, "10-99": 2}
