"""Tests for transforms.sql.hardness: Spider's eval_hardness on sqlglot trees.

The level examples are Spider-style queries (concert_singer / pets_1 schemas);
their expected levels were checked by hand against the thresholds and against
the original test-suite-sql-eval code (see bench/bench_hardness.py).
"""

from __future__ import annotations


import pytest
import sqlglot

from transforms.sql.hardness import (
    HARDNESS_LEVELS,
    SpiderCounts,
    hardness_level,
    spider_counts,
    spider_hardness,
)
from tests.conftest import SHARED_DATA
from tests.fakes import defog_sqlite

DEFOG_SQLITE = SHARED_DATA / "defog" / "questions_gen_sqlite.csv"


def hardness(sql: str, dialect: str = "sqlite") -> str:
    return spider_hardness(sqlglot.parse_one(sql, read=dialect))


def counts(sql: str, dialect: str = "sqlite") -> SpiderCounts:
    return spider_counts(sqlglot.parse_one(sql, read=dialect))


EASY = [
    "SELECT count(*) FROM singer",
    "SELECT DISTINCT country FROM singer WHERE age > 20",
    "SELECT name FROM stadium ORDER BY capacity",
    "SELECT count(*) FROM pets WHERE weight > 10",
    "SELECT max(weight) FROM pets",
    "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
]

MEDIUM = [
    "SELECT name, country, age FROM singer ORDER BY age DESC",
    "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'",
    "SELECT song_name, song_release_year FROM singer ORDER BY age LIMIT 1",
    "SELECT country, count(*) FROM singer GROUP BY country",
    "SELECT location, name FROM stadium WHERE capacity BETWEEN 5000 AND 10000",
    "SELECT count(*) FROM concert WHERE year = 2014 OR year = 2015",
    "SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2"
    " ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id",
    "SELECT name, country FROM singer WHERE song_name LIKE '%Hey%'",
]

HARD = [
    "SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer)",
    "SELECT year FROM concert GROUP BY year ORDER BY count(*) DESC LIMIT 1",
    "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)",
    "SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30",
    "SELECT name FROM stadium EXCEPT SELECT T2.name FROM concert AS T1 JOIN stadium AS T2"
    " ON T1.stadium_id = T2.stadium_id WHERE T1.year = 2014",
    "SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id"
    " JOIN concert AS T3 ON T1.concert_id = T3.concert_id WHERE T3.year = 2014",
    "SELECT count(*) FROM concert WHERE stadium_id ="
    " (SELECT stadium_id FROM stadium ORDER BY capacity DESC LIMIT 1)",
]

EXTRA = [
    "SELECT T2.name, T2.capacity FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"
    " WHERE T1.year >= 2014 GROUP BY T2.stadium_id ORDER BY count(*) DESC LIMIT 1",
    "SELECT T2.name, T2.location FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"
    " WHERE T1.year = 2014 INTERSECT SELECT T2.name, T2.location FROM concert AS T1 JOIN stadium AS T2"
    " ON T1.stadium_id = T2.stadium_id WHERE T1.year = 2015",
    "SELECT count(DISTINCT T1.fname) FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid"
    " JOIN pets AS T3 ON T2.petid = T3.petid WHERE T3.pettype = 'cat' OR T3.pettype = 'dog'",
    "SELECT major, age FROM student WHERE stuid NOT IN (SELECT T1.stuid FROM student AS T1"
    " JOIN has_pet AS T2 ON T1.stuid = T2.stuid JOIN pets AS T3 ON T3.petid = T2.petid"
    " WHERE T3.pettype = 'cat')",
    "SELECT fname FROM student WHERE stuid IN (SELECT stuid FROM has_pet) AND age > 20 ORDER BY age LIMIT 3",
    "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)"
    " UNION SELECT name FROM singer WHERE country = 'France'",
]


@pytest.mark.parametrize("sql", EASY)
def test_easy_spider_queries(sql: str) -> None:
    assert hardness(sql) == "easy"


@pytest.mark.parametrize("sql", MEDIUM)
def test_medium_spider_queries(sql: str) -> None:
    assert hardness(sql) == "medium"


@pytest.mark.parametrize("sql", HARD)
def test_hard_spider_queries(sql: str) -> None:
    assert hardness(sql) == "hard"


@pytest.mark.parametrize("sql", EXTRA)
def test_extra_spider_queries(sql: str) -> None:
    assert hardness(sql) == "extra"


@pytest.mark.parametrize(
    ("component1", "component2", "others", "level"),
    [
        (0, 0, 0, "easy"),
        (1, 0, 0, "easy"),
        (1, 0, 2, "medium"),
        (2, 0, 1, "medium"),
        (2, 0, 2, "extra"),  # no medium or hard rule holds
        (0, 0, 3, "hard"),
        (3, 0, 2, "hard"),
        (1, 1, 0, "hard"),
        (4, 0, 0, "extra"),
        (2, 1, 0, "extra"),
        (0, 2, 0, "extra"),
        (1, 1, 1, "extra"),
    ],
)
def test_thresholds_match_eval_hardness(component1: int, component2: int, others: int, level: str) -> None:
    assert hardness_level(component1, component2, others) == level


def test_each_extra_table_in_from_counts_as_a_join() -> None:
    sql = "SELECT a FROM t1 JOIN t2 ON t1.id = t2.id JOIN t3 ON t2.id = t3.id, t4"
    assert counts(sql).component1 == 3


def test_where_group_order_limit_count_once_each() -> None:
    sql = "SELECT a FROM t WHERE b = 1 AND c = 2 GROUP BY a, d ORDER BY a, d LIMIT 5"
    assert counts(sql).component1 == 4


def test_each_or_and_like_counts_in_component1() -> None:
    sql = "SELECT a FROM t WHERE b LIKE 'x%' OR c = 1 OR d NOT LIKE '%y'"
    assert counts(sql).component1 == 1 + 2 + 2


def test_or_and_like_in_join_condition_and_having_count() -> None:
    sql = ("SELECT a FROM t JOIN u ON t.id = 1 OR u.name LIKE 'x%'"
           " GROUP BY a HAVING count(*) > 1 OR max(b) LIKE 'z%'")
    assert counts(sql).component1 == 1 + 1 + 2 + 2  # join, group, 2 ORs, 2 LIKEs


def test_more_than_one_aggregate_select_item_and_where_condition_and_group_key() -> None:
    sql = "SELECT a, count(*), max(b) FROM t WHERE c = 1 AND d = 2 GROUP BY a, e"
    assert counts(sql).others == 4


def test_aggregates_in_order_by_count_toward_others() -> None:
    sql = "SELECT a FROM t GROUP BY a ORDER BY sum(b) - sum(c)"
    assert counts(sql).others == 1


def test_aggregates_inside_having_do_not_count() -> None:
    assert counts("SELECT a FROM t GROUP BY a HAVING sum(b) > 1 ").others == 0


def test_negated_where_condition_counts_as_an_aggregate() -> None:
    # eval_hardness's count_agg reads a condition's not_op slot
    sql = "SELECT count(*) FROM t WHERE a NOT IN (SELECT a FROM u)"
    assert counts(sql) == SpiderCounts(component1=1, component2=1, others=1)


def test_having_connectors_count_as_aggregates() -> None:
    # count_agg(sql['having']) is handed the 'and'/'or' tokens too
    sql = "SELECT a FROM t GROUP BY a HAVING count(*) > 1 AND max(b) > 3 AND min(b) > 0"
    assert counts(sql).others == 1


def test_or_after_a_column_valued_condition_is_not_seen() -> None:
    # Spider's parse_value skips from a column value up to the next AND
    sql = "SELECT a FROM t JOIN u ON t.id = u.id OR t.k = u.k WHERE t.x = u.y OR t.z = 1 AND t.w = 2"
    assert counts(sql) == SpiderCounts(component1=2, component2=0, others=1)


def test_parenthesis_in_skipped_text_ends_the_query_for_spider() -> None:
    # the skip after a column value stops at SELECT; Spider reads nothing after it
    sql = ("SELECT name FROM singer WHERE singer.age = singer.singer_id"
           " OR singer.country IN (SELECT country FROM singer) AND age > 1 ORDER BY name LIMIT 1")
    assert counts(sql) == SpiderCounts(component1=1, component2=0, others=0)


def test_parenthesis_in_skipped_join_condition_drops_later_joins_and_set_operation() -> None:
    sql = ("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.sid OR T1.age IN (SELECT age FROM u)"
           " JOIN stadium AS T3 ON T2.sid = T3.id WHERE T3.year = 2014 UNION SELECT name FROM singer")
    assert counts(sql) == SpiderCounts(component1=1, component2=0, others=0)


def test_subqueries_in_conditions_count_as_nested() -> None:
    sql = "SELECT a FROM t WHERE b BETWEEN (SELECT min(b) FROM u) AND (SELECT max(b) FROM u)"
    assert counts(sql).component2 == 2


def test_derived_table_is_one_table_unit_and_its_inside_is_not_counted() -> None:
    sql = "SELECT count(*) FROM (SELECT a FROM t WHERE b = 1 GROUP BY a HAVING count(*) > 1)"
    assert counts(sql) == SpiderCounts(component1=0, component2=0, others=0)


def test_cte_reference_is_a_table_unit_and_its_body_is_not_counted() -> None:
    sql = "WITH c AS (SELECT a FROM t WHERE b IN (SELECT b FROM u)) SELECT count(*) FROM c JOIN t ON c.a = t.a"
    assert counts(sql) == SpiderCounts(component1=1, component2=0, others=0)


def test_set_operation_chain_adds_one_nested_query() -> None:
    sql = "SELECT a FROM t UNION SELECT a FROM u UNION SELECT a FROM v EXCEPT SELECT a FROM w"
    assert counts(sql).component2 == 1


def test_set_operation_counts_the_leftmost_select_clauses_only() -> None:
    sql = "SELECT a FROM t WHERE b = 1 UNION SELECT a FROM u WHERE c = 2 AND d = 3 ORDER BY a LIMIT 1"
    assert counts(sql) == SpiderCounts(component1=1, component2=1, others=0)


def test_scalar_subquery_in_select_counts_as_nested() -> None:
    sql = "SELECT (SELECT count(*) FROM u) FROM t"
    assert counts(sql).component2 == 1


def test_aggregate_arithmetic_in_a_select_item_counts_each_aggregate() -> None:
    assert counts("SELECT sum(a) / count(b) FROM t").others == 1


def test_tsql_top_counts_as_limit() -> None:
    assert counts("SELECT TOP 5 name FROM singer ORDER BY age", "tsql").component1 == 2


def test_fetch_first_counts_as_limit() -> None:
    sql = "SELECT name FROM singer ORDER BY age FETCH FIRST 5 ROWS ONLY"
    assert counts(sql, "postgres").component1 == 2


def test_insert_select_is_classified_by_its_query() -> None:
    assert hardness("INSERT INTO x SELECT name FROM singer ORDER BY age LIMIT 1") == "medium"


def test_statement_without_query_classifies() -> None:
    assert hardness("DELETE FROM singer WHERE age > 3") == "easy"


def test_same_tree_gives_same_label_every_time() -> None:
    tree = sqlglot.parse_one(EXTRA[0])
    assert {spider_hardness(tree) for _ in range(3)} == {"extra"}


def _defog_sqlite_queries() -> list[str]:
    return defog_sqlite.question_queries(DEFOG_SQLITE)


def test_every_defog_sqlite_query_classifies() -> None:
    queries = _defog_sqlite_queries()
    labels, unparsed = [], []
    for sql in queries:
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.ParseError:
            unparsed.append(sql)  # sqlglot's limit, not ours
            continue
        labels.append(spider_hardness(tree))
    assert len(unparsed) <= len(queries) // 100, unparsed
    assert set(labels) <= set(HARDNESS_LEVELS)
    assert len(labels) + len(unparsed) == len(queries)
