"""Golden rules questions: SQL -> the expected question, one or more per construct.

``tests/data/question_golden.jsonl`` holds, per line, a construct name, the SQL's dialect,
the SQL and the question ``describe_sql`` must write for it after normalization (as the
Describe stage sees it). Each question was read by a person: it says what the SQL does,
names every literal value and every filtered column in words, and names what is counted
or aggregated. A change of wording shows here as a diff to review, not as a silent drift.

The coverage tests check the same property mechanically: on the golden SQL, and on every
Defog query in ``shared/data`` (the set ``bench/bench_questions.py`` reports on), each
literal used in a condition and each filtered column (as words) appears in the question.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import REPO, TEST_DATA, require_shared_data
from transforms.sql.normalize import normalize_sql
from transforms.sql.question_rules import MAX_QUESTION_CHARS, describe_sql

GOLDEN = TEST_DATA / "question_golden.jsonl"
BENCH = REPO / "bench" / "bench_questions.py"

CASES = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines() if line.strip()]

#: The constructs issue 16 asks the golden file to cover (each is at least one line's name prefix).
REQUIRED_CONSTRUCTS = (
    "join", "count", "sum", "avg", "min_max", "group_by", "having", "order_limit",
    "nested_having", "in_", "not_in", "like", "between", "is_null", "union", "intersect",
    "except", "window", "cte", "case", "boolean_flag", "date",
    # the classes that kept SEDE under 100 %: a question cut at the old 400-character cap, an
    # IN list past 13 values, a pattern built by concatenation, a CASE holding a filtered query,
    # and a CTE column computed by a filtered query
    "long_question_is_not_cut", "in_list_long_names_every_value", "like_concatenated_pattern",
    "case_with_filtered_subquery", "cte_column_from_filtered_subquery",
    "union_as_table_one_branch_filtered",
)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_questions", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _question(case: dict) -> str:
    return describe_sql(normalize_sql(case["sql"], case["dialect"], case["dialect"]).tree)


@pytest.mark.parametrize("case", CASES, ids=[case["construct"] for case in CASES])
def test_golden_question(case: dict) -> None:
    assert _question(case) == case["question"]


def test_golden_file_covers_every_construct() -> None:
    names = [case["construct"] for case in CASES]
    missing = [c for c in REQUIRED_CONSTRUCTS if not any(name.startswith(c) for name in names)]
    assert not missing
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[case["construct"] for case in CASES])
def test_golden_question_mentions_every_value_and_filtered_column(case: dict) -> None:
    bench = _bench()
    query = bench.Query("golden", case["sql"], case["dialect"])
    tree = normalize_sql(case["sql"], case["dialect"], case["dialect"]).tree
    outcome = bench.check(query, tree, describe_sql)
    assert outcome.literals_missing == [] and outcome.columns_missing == []


def test_every_defog_question_mentions_its_values_and_filtered_columns() -> None:
    data_dir = require_shared_data("defog").parent
    bench = _bench()
    pairs = bench.parsed_trees(bench.defog_queries(data_dir))
    assert len(pairs) > 600
    uncovered = [
        (outcome.query.sql, outcome.literals_missing, outcome.columns_missing)
        for outcome in (bench.check(query, tree, describe_sql) for query, tree in pairs)
        if not outcome.covered
    ]
    assert uncovered == []


def test_every_sede_question_mentions_its_values_and_filtered_columns() -> None:
    data_dir = require_shared_data("sede", "val.jsonl").parent.parent
    bench = _bench()
    pairs = bench.parsed_trees(bench.sede_queries(data_dir))
    assert len(pairs) > 800
    uncovered = [
        (outcome.query.sql, outcome.literals_missing, outcome.columns_missing)
        for outcome in (bench.check(query, tree, describe_sql) for query, tree in pairs)
        if not outcome.covered
    ]
    assert uncovered == []


def test_a_long_question_keeps_its_last_condition() -> None:
    case = next(c for c in CASES if c["construct"] == "long_question_is_not_cut")
    text = _question(case)
    assert 400 < len(text) <= MAX_QUESTION_CHARS and '"9"' in text


def test_an_in_list_past_thirty_values_counts_the_rest() -> None:
    values = ", ".join(str(1000 + i) for i in range(40))
    text = _question({"dialect": "sqlite", "sql": f"SELECT name FROM track WHERE trackid IN ({values})"})
    assert "1029" in text and "1030" not in text and text.endswith("or 10 other values.")


def test_a_line_break_in_a_value_is_said_in_words() -> None:
    sql = "SELECT id FROM posts WHERE body LIKE '%a' + CHAR(13) + CHAR(10) + 'b%'"
    text = _question({"dialect": "tsql", "sql": sql})
    assert text == 'List the id of every post with body containing "a" then a line break then "b".'


def test_questions_are_deterministic() -> None:
    for case in CASES[:10]:
        assert _question(case) == _question(case)
