"""Spider hardness with Spider's double-quoted strings (``name = "Ben Jones"``).

Spider's SQLite queries write string values in double quotes. Its tokenizer
(``process_sql.tokenize`` in test-suite-sql-eval) turns ``'`` into ``"`` and keeps
every ``"..."`` as one string token, so ``parse_value`` reads it as a string. sqlglot's
SQLite reader makes ``"Ben Jones"`` a quoted column instead, and a column value makes
the Spider parser skip a following ``OR`` (see ``transforms.sql.hardness``). These tests pin
that double-quoted values count exactly like single-quoted ones.

Each expected level was computed by hand from ``count_component1``,
``count_component2``, ``count_others`` and ``eval_hardness`` of evaluation.py; the
comment on each case gives (component1, component2, others) and how they arise.
"""

from __future__ import annotations

import pytest
import sqlglot

from transforms.sql.hardness import SpiderCounts, is_spider_string, spider_counts, spider_hardness

CASES = [
    # WHERE 1 + OR 1; others: 2 WHERE conditions -> medium (was easy: the OR was swallowed)
    ('SELECT name FROM people WHERE name = "Ben Jones" OR name = "Brandon Vietti"',
     SpiderCounts(2, 0, 1), "medium"),
    # WHERE 1 + OR 1 + ORDER BY 1 = 3; others 1 (3 conditions) -> hard (was medium)
    ('SELECT name FROM people WHERE city = "Paris" AND job = "chef" OR age > 30 ORDER BY name',
     SpiderCounts(3, 0, 1), "hard"),
    # WHERE 1 + OR 1 + LIKE 1 = 3; others 1 -> hard (was medium)
    ('SELECT name FROM people WHERE name LIKE "%Jo%" OR city = "Rome"',
     SpiderCounts(3, 0, 1), "hard"),
    # BETWEEN's second value: WHERE 1 + OR 1; others 1 -> medium (was easy)
    ('SELECT name FROM people WHERE birth BETWEEN "1990-01-01" AND "1999-12-31" OR city = "Rome"',
     SpiderCounts(2, 0, 1), "medium"),
    # HAVING: GROUP BY 1 + OR 1 = 2; count_agg over HAVING counts the 'or' token: 1 agg -> medium
    ('SELECT city FROM people GROUP BY city HAVING max(job) = "chef" OR count(*) > 2',
     SpiderCounts(2, 0, 0), "medium"),
    # + count(*) selected: 2 aggregates (+1) and 2 select items (+1) -> others 2 -> extra
    ('SELECT city, count(*) FROM people GROUP BY city HAVING max(job) = "chef" OR count(*) > 2',
     SpiderCounts(2, 0, 2), "extra"),
    # AND only: nothing is swallowed either way; WHERE 1; others 1 -> medium
    ('SELECT count(*) FROM people WHERE name = "Ben" AND city = "Rome"',
     SpiderCounts(1, 0, 1), "medium"),
    # single and double quotes mixed: WHERE 1 + OR 2; others 1 -> hard
    ("SELECT name FROM people WHERE name = 'Ben' OR name = \"Jo\" OR city = \"Rome\"",
     SpiderCounts(3, 0, 1), "hard"),
    # JOIN 1 + WHERE 1 + OR 1 = 3; others 1 -> hard (was medium)
    ('SELECT T1.name FROM people AS T1 JOIN pets AS T2 ON T1.id = T2.owner_id'
     ' WHERE T2.kind = "dog" OR T2.kind = "cat"',
     SpiderCounts(3, 0, 1), "hard"),
]


@pytest.mark.parametrize("sql, expected_counts, level", CASES)
def test_double_quoted_values_count_as_strings(sql: str, expected_counts: SpiderCounts, level: str) -> None:
    tree = sqlglot.parse_one(sql, read="sqlite")
    assert spider_counts(tree) == expected_counts
    assert spider_hardness(tree) == level


@pytest.mark.parametrize("sql, expected_counts, level", CASES)
def test_double_quotes_label_like_single_quotes(sql: str, expected_counts: SpiderCounts, level: str) -> None:
    single = sql.replace('"', "'")
    assert spider_hardness(sqlglot.parse_one(single, read="sqlite")) == level


@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "mysql", "duckdb"])
def test_same_level_whichever_reader_made_the_tree(dialect: str) -> None:
    # MySQL's reader already makes "..." a string; the others make it a quoted identifier
    sql = 'SELECT name FROM people WHERE name = "Ben Jones" OR name = "Brandon Vietti"'
    assert spider_hardness(sqlglot.parse_one(sql, read=dialect)) == "medium"


def test_a_bare_column_value_still_swallows_the_or() -> None:
    # unchanged: Spider reads `b` as a column and skips `OR c = 1` (component1 1, one condition)
    tree = sqlglot.parse_one("SELECT a FROM t WHERE a = b OR c = 1", read="sqlite")
    assert spider_counts(tree) == SpiderCounts(1, 0, 0)


def test_qualified_quoted_column_is_not_a_string() -> None:
    column = sqlglot.parse_one('T1."name"', read="sqlite")
    assert not is_spider_string(column)
    assert is_spider_string(sqlglot.parse_one('"name"', read="sqlite"))


def test_classifying_leaves_the_tree_and_its_sql_unchanged() -> None:
    sql = 'SELECT name FROM people WHERE name = "Ben Jones" OR name = "Brandon Vietti"'
    tree = sqlglot.parse_one(sql, read="sqlite")
    before = tree.sql(dialect="sqlite")
    spider_hardness(tree)
    assert tree.sql(dialect="sqlite") == before
    assert isinstance(tree.find(sqlglot.exp.EQ).expression, sqlglot.exp.Column)
