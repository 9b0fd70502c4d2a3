"""Tests for transforms.formats.defog: sql-eval CSVs with expanded alternatives."""

from __future__ import annotations

import io
import os

import pytest
from pathlib import Path

from transforms.formats import RawPair, ReadReject
from transforms.formats.defog import expand_alternatives, parse_defog_csv
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA


def shared(*parts: str) -> Path:
    """A file of the shared data set; skipped when absent (failed when CI=true)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data file {path} is missing (CI=true)")
        pytest.skip(f"shared data file {path} is not present on this machine")
    return path


def parse(data: bytes, path: str = "questions.csv") -> list:
    return list(parse_defog_csv(io.BytesIO(data), path))


# -- expand_alternatives ------------------------------------------------------------


def test_alternatives_are_split_on_top_level_semicolons():
    assert expand_alternatives("SELECT 1;SELECT 'a;b' ; SELECT 3;") == ["SELECT 1", "SELECT 'a;b'", "SELECT 3"]


def test_query_without_alternatives_is_itself():
    assert expand_alternatives("SELECT a FROM t") == ["SELECT a FROM t"]


def test_column_set_expands_to_every_non_empty_subset_in_order():
    assert expand_alternatives("SELECT {a, b, c} FROM t") == [
        "SELECT a FROM t", "SELECT b FROM t", "SELECT c FROM t",
        "SELECT a, b FROM t", "SELECT a, c FROM t", "SELECT b, c FROM t",
        "SELECT a, b, c FROM t",
    ]


def test_group_by_placeholder_takes_the_same_subset():
    assert expand_alternatives("SELECT {t.x,t.y}, SUM(v) FROM t GROUP BY {}, t.z") == [
        "SELECT t.x, SUM(v) FROM t GROUP BY t.x, t.z",
        "SELECT t.y, SUM(v) FROM t GROUP BY t.y, t.z",
        "SELECT t.x, t.y, SUM(v) FROM t GROUP BY t.x, t.y, t.z",
    ]


def test_each_alternative_is_expanded_on_its_own():
    assert expand_alternatives("SELECT {a, b} FROM t;SELECT c FROM u") == [
        "SELECT a FROM t", "SELECT b FROM t", "SELECT a, b FROM t", "SELECT c FROM u"]


def test_two_column_sets_multiply():
    assert len(expand_alternatives("SELECT {a, b}, {c, d, e} FROM t")) == 3 * 7


def test_commas_inside_parentheses_do_not_split_a_column_set():
    assert expand_alternatives("SELECT {COALESCE(a, b), c} FROM t") == [
        "SELECT COALESCE(a, b) FROM t", "SELECT c FROM t", "SELECT COALESCE(a, b), c FROM t"]


def test_braces_inside_strings_are_text():
    assert expand_alternatives("SELECT '{a, b}' FROM t") == ["SELECT '{a, b}' FROM t"]


def test_empty_alternatives_are_dropped():
    assert expand_alternatives(" ; SELECT 1 ;; ") == ["SELECT 1"]


def test_unclosed_column_set_is_a_value_error():
    with pytest.raises(ValueError):
        expand_alternatives("SELECT {a, b FROM t")


def test_untokenizable_query_is_a_value_error():
    with pytest.raises(ValueError):
        expand_alternatives("SELECT 'open")


# -- parse_defog_csv --------------------------------------------------------------

CSV = (
    b"question,query,db_name,query_category,instructions\n"
    b'"How many authors, by name?","SELECT {a.name, a.aid}, COUNT(*) FROM author a GROUP BY {};",'
    b"academic,group_by,\n"
    b"Total?,SELECT SUM(x) FROM t;SELECT SUM(t.x) FROM t,shop,aggregate,Use t.x\n"
    b"One?,SELECT 1,shop,basic,\n"
)


def test_row_yields_one_seed_pair_per_alternative():
    items = parse(CSV)
    assert [(p.sql, p.origin) for p in items[:3]] == [
        ("SELECT a.name, COUNT(*) FROM author a GROUP BY a.name", "questions.csv:2"),
        ("SELECT a.aid, COUNT(*) FROM author a GROUP BY a.aid", "questions.csv:2"),
        ("SELECT a.name, a.aid, COUNT(*) FROM author a GROUP BY a.name, a.aid", "questions.csv:2"),
    ]
    assert {(p.question, p.db_id, p.source, p.success) for p in items[:3]} == {
        ("How many authors, by name?", "academic", "seed", True)}


def test_extra_holds_category_instructions_and_alternative_index():
    items = parse(CSV)
    assert items[4].extra == {
        "query_category": "aggregate", "instructions": "Use t.x", "db_type": "postgres",
        "alternatives": "2", "query_template": "SELECT SUM(x) FROM t;SELECT SUM(t.x) FROM t", "alternative": "1"}
    assert items[5].extra == {"query_category": "basic", "db_type": "postgres", "alternatives": "1",
                              "alternative": "0"}


def test_missing_required_column_is_one_reject_for_the_file():
    items = parse(b"question,sql,db_name\nQ,SELECT 1,x\n")
    assert items == [ReadReject("questions.csv", "missing_column:query", "header has ['question', 'sql', 'db_name']")]


def test_query_that_cannot_be_expanded_is_malformed_query():
    items = parse(b"question,query,db_name\nQ,SELECT 'open,x\nR,SELECT 2,x\n")
    assert [(i.origin, getattr(i, "reason", "ok")) for i in items] == [
        ("questions.csv:2", "malformed_query"), ("questions.csv:3", "ok")]


def test_row_with_bytes_that_are_not_utf8_is_rejected():
    items = parse(b"question,query,db_name\nQ\xff,SELECT 1,x\n")
    assert [(i.origin, i.reason) for i in items] == [("questions.csv:2", "not_utf8")]


def test_db_type_column_picks_the_dialect_and_is_kept():
    (pair,) = parse(b"db_name,db_type,query,question\nacademic,sqlite,SELECT 1,Q\n")
    assert pair.extra["db_type"] == "sqlite" and pair.db_id == "academic"


# -- the real sql-eval files ----------------------------------------------------------

EXPECTED = {  # file: (rows, pairs after expansion)
    "questions_gen_postgres.csv": (210, 364),  # line 3 repeats one alternative: its 3 queries count once
    "instruct_basic_postgres.csv": (40, 41),
    "instruct_advanced_postgres.csv": (64, 79),
    "questions_gen_sqlite.csv": (210, 351),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_sql_eval_files_expand_to_known_counts(name):
    path = shared("defog", name)
    items = list(parse_defog_csv(path.open("rb"), name))
    assert all(isinstance(i, RawPair) for i in items)
    rows = {p.origin for p in items}
    assert (len(rows), len(items)) == EXPECTED[name]
    assert not any("{" in p.sql for p in items)


def test_the_three_postgres_files_hold_314_questions():
    names = ["questions_gen_postgres.csv", "instruct_basic_postgres.csv", "instruct_advanced_postgres.csv"]
    rows = set()
    for name in names:
        rows |= {p.origin for p in parse_defog_csv(shared("defog", name).open("rb"), name)}
    assert len(rows) == 314
