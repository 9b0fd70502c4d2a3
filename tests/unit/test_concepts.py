"""Tests for transforms.sql.concepts: concept tags of a parsed query."""

from __future__ import annotations


import pytest
import sqlglot

from transforms.sql.concepts import CONCEPTS, concept_tags
from tests.conftest import SHARED_DATA
from tests.fakes import defog_sqlite

DEFOG_SQLITE = SHARED_DATA / "defog" / "questions_gen_sqlite.csv"


def tags(sql: str, dialect: str = "sqlite") -> tuple[str, ...]:
    return concept_tags(sqlglot.parse_one(sql, read=dialect))


# (tag, query that uses it, dialect)
POSITIVE = [
    ("join", "SELECT a.x FROM a JOIN b ON a.id = b.id", "sqlite"),
    ("join", "SELECT a.x FROM a, b WHERE a.id = b.id", "sqlite"),
    ("aggregation", "SELECT count(*) FROM t", "sqlite"),
    ("group_by", "SELECT a FROM t GROUP BY a", "sqlite"),
    ("having", "SELECT a FROM t GROUP BY a HAVING count(*) > 1", "sqlite"),
    ("subquery", "SELECT a FROM t WHERE b IN (SELECT b FROM u)", "sqlite"),
    ("subquery", "SELECT s.a FROM (SELECT a FROM t) AS s", "sqlite"),
    ("subquery", "SELECT a, (SELECT max(b) FROM u) FROM t", "sqlite"),
    ("cte", "WITH c AS (SELECT a FROM t) SELECT a FROM c", "sqlite"),
    ("recursive_cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r", "sqlite"),
    ("window", "SELECT a, row_number() OVER (PARTITION BY b ORDER BY c) FROM t", "sqlite"),
    ("set_op", "SELECT a FROM t EXCEPT SELECT a FROM u", "sqlite"),
    ("case", "SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END FROM t", "sqlite"),
    ("case", "SELECT IIF(a > 1, 'x', 'y') FROM t", "tsql"),
    ("date_fn", "SELECT strftime('%Y', d) FROM t", "sqlite"),
    ("date_fn", "SELECT julianday(a) FROM t", "sqlite"),
    ("date_fn", "SELECT DATE_TRUNC('month', d) FROM t", "postgres"),
    ("date_fn", "SELECT d FROM t WHERE d > CURRENT_DATE - INTERVAL '7 days'", "postgres"),
    ("date_fn", "SELECT DATEDIFF(day, a, b) FROM t", "tsql"),
    ("string_fn", "SELECT upper(name) FROM t", "sqlite"),
    ("string_fn", "SELECT first || ' ' || last FROM t", "sqlite"),
    ("string_fn", "SELECT LEN(name) FROM t", "tsql"),
    ("order_limit", "SELECT a FROM t ORDER BY a", "sqlite"),
    ("order_limit", "SELECT a FROM t LIMIT 3", "sqlite"),
    ("order_limit", "SELECT TOP 3 a FROM t", "tsql"),
    ("distinct", "SELECT DISTINCT a FROM t", "sqlite"),
    ("distinct", "SELECT count(DISTINCT a) FROM t", "sqlite"),
    ("null_handling", "SELECT a FROM t WHERE b IS NULL", "sqlite"),
    ("null_handling", "SELECT a FROM t WHERE b IS NOT NULL", "sqlite"),
    ("null_handling", "SELECT coalesce(a, 0) FROM t", "sqlite"),
    ("null_handling", "SELECT ifnull(a, 0) FROM t", "sqlite"),
    ("null_handling", "SELECT nullif(a, 0) FROM t", "sqlite"),
    ("null_handling", "SELECT ISNULL(a, 0) FROM t", "tsql"),
    ("like", "SELECT a FROM t WHERE b LIKE 'x%'", "sqlite"),
    ("like", "SELECT a FROM t WHERE b NOT ILIKE 'x%'", "postgres"),
    ("in_list", "SELECT a FROM t WHERE b IN (1, 2)", "sqlite"),
    ("in_list", "SELECT a FROM t WHERE b NOT IN ('x', 'y')", "sqlite"),
    ("between", "SELECT a FROM t WHERE b BETWEEN 1 AND 2", "sqlite"),
    ("cast", "SELECT CAST(a AS REAL) FROM t", "sqlite"),
    ("cast", "SELECT a::int FROM t", "postgres"),
    ("cast", "SELECT CONVERT(INT, a) FROM t", "tsql"),
    ("math", "SELECT a * 2 FROM t", "sqlite"),
    ("math", "SELECT round(a, 2) FROM t", "sqlite"),
    ("math", "SELECT abs(a) FROM t", "sqlite"),
    ("math", "SELECT -a FROM t", "sqlite"),
    ("ratio", "SELECT sum(a) / sum(b) FROM t", "sqlite"),
    ("ratio", "SELECT CAST(sum(a) AS REAL) / count(*) FROM t", "sqlite"),
    ("ratio", "SELECT (SELECT count(*) FROM u) * 1.0 / (SELECT count(*) FROM t)", "sqlite"),
    ("ratio", "SELECT sum(a) / NULLIF(count(b), 0) FROM t", "sqlite"),
    ("self_join", "SELECT e.name FROM employee AS e JOIN employee AS m ON e.boss = m.id", "sqlite"),
    ("self_join", "SELECT e.name FROM employee e, employee m WHERE e.boss = m.id", "sqlite"),
    ("exists", "SELECT a FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", "sqlite"),
]

# (tag, query that must not get it, dialect)
NEGATIVE = [
    ("join", "SELECT a FROM t WHERE b IN (SELECT b FROM u)", "sqlite"),
    ("aggregation", "SELECT sum(a) OVER (ORDER BY b) FROM t", "sqlite"),
    ("order_limit", "SELECT row_number() OVER (ORDER BY b) FROM t", "sqlite"),
    ("order_limit", "SELECT group_concat(a ORDER BY b) FROM t", "sqlite"),
    ("order_limit", "SELECT a FROM t OFFSET 5", "postgres"),
    ("subquery", "WITH c AS (SELECT a FROM t) SELECT a FROM c", "sqlite"),
    ("subquery", "SELECT a FROM t UNION SELECT a FROM u", "sqlite"),
    ("subquery", "(SELECT a FROM t) UNION (SELECT a FROM u)", "sqlite"),
    ("subquery", "INSERT INTO x SELECT a FROM t", "sqlite"),
    ("recursive_cte", "WITH c AS (SELECT a FROM t) SELECT a FROM c", "sqlite"),
    ("in_list", "SELECT a FROM t WHERE b IN (SELECT b FROM u)", "sqlite"),
    ("null_handling", "SELECT a FROM t WHERE b IS TRUE", "postgres"),
    ("math", "SELECT a FROM t WHERE b > -1", "sqlite"),
    ("math", "SELECT count(*) FROM t", "sqlite"),
    ("ratio", "SELECT avg(a) / 60 FROM t", "sqlite"),
    ("ratio", "SELECT a / b FROM t", "sqlite"),
    ("cast", "SELECT LEN(name), LEFT(name, 2) FROM t", "tsql"),
    ("self_join", "SELECT a.x FROM t AS a JOIN u AS b ON a.id = b.id", "sqlite"),
    ("self_join", "SELECT a FROM t WHERE b IN (SELECT b FROM t)", "sqlite"),
    ("distinct", "SELECT a FROM t UNION SELECT a FROM u", "sqlite"),
    ("exists", "SELECT a FROM t WHERE b IN (SELECT b FROM u)", "sqlite"),
    ("like", "SELECT a FROM t WHERE b = 'x%'", "sqlite"),
]


@pytest.mark.parametrize(("tag", "sql", "dialect"), POSITIVE)
def test_query_using_a_concept_gets_its_tag(tag: str, sql: str, dialect: str) -> None:
    assert tag in tags(sql, dialect)


@pytest.mark.parametrize(("tag", "sql", "dialect"), NEGATIVE)
def test_query_not_using_a_concept_lacks_its_tag(tag: str, sql: str, dialect: str) -> None:
    assert tag not in tags(sql, dialect)


def test_every_concept_has_a_positive_example() -> None:
    assert {tag for tag, _, _ in POSITIVE} == set(CONCEPTS)


def test_concepts_vocabulary_has_a_meaning_for_each_tag() -> None:
    assert len(CONCEPTS) == 23
    assert all(isinstance(meaning, str) and meaning for meaning in CONCEPTS.values())


def test_tags_are_sorted_and_unique() -> None:
    result = tags(
        "SELECT DISTINCT upper(g.name), count(*) FROM track AS t JOIN genre AS g ON t.g = g.id"
        " WHERE t.name LIKE '%a%' OR t.ms BETWEEN 1 AND 2 GROUP BY g.name HAVING count(*) > 1"
        " ORDER BY 2 DESC LIMIT 3"
    )
    assert result == tuple(sorted(set(result)))
    assert result == (
        "aggregation", "between", "distinct", "group_by", "having", "join", "like",
        "order_limit", "string_fn",
    )


def test_plain_select_has_no_tags() -> None:
    assert tags("SELECT name FROM artist WHERE id = 1") == ()


def test_tags_from_inside_cte_bodies_and_subqueries_are_found() -> None:
    sql = "WITH c AS (SELECT a FROM t WHERE b LIKE 'x%') SELECT a FROM c WHERE a IN (SELECT max(a) FROM u)"
    assert {"cte", "like", "subquery", "aggregation"} <= set(tags(sql))


def _defog_sqlite_queries() -> list[str]:
    return defog_sqlite.question_queries(DEFOG_SQLITE)


def test_every_defog_sqlite_query_gets_tags_from_the_vocabulary() -> None:
    queries = _defog_sqlite_queries()
    tagged, unparsed = [], []
    for sql in queries:
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.ParseError:
            unparsed.append(sql)  # sqlglot's limit, not ours
            continue
        tagged.append(concept_tags(tree))
    assert len(unparsed) <= len(queries) // 100, unparsed
    assert {tag for result in tagged for tag in result} <= set(CONCEPTS)
    assert len(tagged) + len(unparsed) == len(queries)
