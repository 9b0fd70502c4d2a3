"""Normalize: canonical SQL, fingerprints, tables, and the dead letters it produces."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from transforms.core.record import new_record
from tests.conftest import make_pipeline
import sqlglot

from transforms.sql.normalize import normalize_sql, referenced_tables, template_of
from transforms.validate.normalize import NormalizeSql


def test_whitespace_comments_and_keyword_case_are_normalized():
    result = normalize_sql("select  Name\n  from Artist -- all of them\n", "sqlite", "sqlite")
    assert result.sql == "SELECT name FROM artist"


def test_string_literals_keep_their_case():
    upper = normalize_sql("SELECT * FROM c WHERE country = 'Italy'", "postgres", "postgres")
    lower = normalize_sql("SELECT * FROM c WHERE country = 'italy'", "postgres", "postgres")
    assert "'Italy'" in upper.sql and "'italy'" in lower.sql
    assert upper.sql_fingerprint != lower.sql_fingerprint


def test_literal_variants_share_a_template_fingerprint():
    a = normalize_sql("SELECT * FROM c WHERE id = 1 AND n = 'x'", "postgres", "postgres")
    b = normalize_sql("SELECT * FROM c WHERE id = 2 AND n = 'y'", "postgres", "postgres")
    assert a.sql_fingerprint != b.sql_fingerprint
    assert a.template_fingerprint == b.template_fingerprint


def test_quoted_identifiers_keep_case_in_postgres():
    result = normalize_sql('SELECT "Name" FROM Artist', "postgres", "postgres")
    assert result.sql == 'SELECT "Name" FROM artist'


def test_transpiles_to_the_target_dialect():
    result = normalize_sql("SELECT TOP 5 name FROM users", "tsql", "postgres")
    assert result.sql == "SELECT name FROM users LIMIT 5"


def test_normalization_is_idempotent():
    once = normalize_sql("select a.X, count(*) from T a group by 1 order by 2 desc", "sqlite", "sqlite").sql
    assert normalize_sql(once, "sqlite", "sqlite").sql == once


def test_tables_exclude_cte_names():
    tree = sqlglot.parse_one("WITH s AS (SELECT * FROM invoice) SELECT * FROM s JOIN customer c ON TRUE")
    assert referenced_tables(tree) == ("customer", "invoice")


def test_template_masks_numbers_and_strings():
    assert template_of("SELECT a FROM t WHERE b = 'x' LIMIT 3", "postgres") == "SELECT a FROM t WHERE b = ? LIMIT ?"


def _stage_and_reason(sql):
    with make_pipeline() as p:
        out = p | beam.Create([new_record(sql)]) | NormalizeSql("sqlite")
        assert_that(out.records, equal_to([]), label="no records")
        assert_that(out.dead | beam.Map(lambda d: (d.stage, d.reason)), equal_to([EXPECTED[sql]]), label="dead")


EXPECTED = {
    "SELECT FROM WHERE": ("parse", "unparseable"),
    "DELETE FROM track": ("safety", "not_a_query"),
    "SELECT 1; DROP TABLE t": ("safety", "multiple_statements"),
    "   ": ("parse", "empty_sql"),
}


def test_unparseable_sql_is_a_parse_dead_letter():
    _stage_and_reason("SELECT FROM WHERE")


def test_dml_is_a_safety_dead_letter():
    _stage_and_reason("DELETE FROM track")


def test_several_statements_are_a_safety_dead_letter():
    _stage_and_reason("SELECT 1; DROP TABLE t")


def test_blank_sql_is_a_parse_dead_letter():
    _stage_and_reason("   ")


def test_normalized_record_carries_fingerprints_and_tables():
    with make_pipeline() as p:
        out = p | beam.Create([new_record("select Name from Artist")]) | NormalizeSql("sqlite")
        assert_that(
            out.records | beam.Map(lambda r: (r.normalized_sql, r.dialect, tuple(r.tables), len(r.sql_fingerprint))),
            equal_to([("SELECT name FROM artist", "sqlite", ("artist",), 16)]),
        )


# --- the tree handed to Classify and Describe (generated without a copy) ----------------------

_DOWNSTREAM_CASES = [
    ("postgres", "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b"),
    ("sqlite", "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b"),
    ("mysql", "SELECT a FROM t FULL OUTER JOIN u ON t.id = u.id"),
    ("duckdb", "SELECT a, ROW_NUMBER() OVER (PARTITION BY b ORDER BY c) AS r FROM t QUALIFY r = 1"),
    ("postgres", "SELECT a FROM t QUALIFY ROW_NUMBER() OVER (ORDER BY a) = 1"),
    ("tsql", "SELECT TOP 5 name FROM users WHERE 1 = 1 ORDER BY name"),
    ("tsql", "SELECT * FROM (SELECT TOP 3 id FROM posts ORDER BY score DESC) AS p"),
    ("postgres", "WITH c AS (SELECT a FROM t) SELECT COUNT(*) FROM c WHERE a IN (SELECT b FROM u)"),
    ("spark", "SELECT a FROM t LEFT SEMI JOIN u ON t.id = u.id"),
]


def _downstream_facts(tree):
    from transforms.sql.concepts import concept_tags
    from transforms.sql.hardness import spider_hardness
    from transforms.sql.question_rules import describe_sql

    return spider_hardness(tree), tuple(concept_tags(tree)), describe_sql(tree), referenced_tables(tree)


def _assert_tree_matches_printed_sql(sql: str, dialect: str) -> bool:
    from transforms.sql.normalize import SqlRejected

    try:
        result = normalize_sql(sql, dialect, dialect)
    except SqlRejected:
        return False
    reparsed = sqlglot.parse_one(result.sql, read=dialect)
    assert _downstream_facts(result.tree) == _downstream_facts(reparsed), (dialect, sql, result.sql)
    assert result.tree.sql(dialect=dialect, comments=False) == result.sql, (dialect, sql)
    return True


def test_the_tree_for_later_stages_is_the_tree_of_the_printed_sql():
    """Normalize prints the tree without copying it; Classify and Describe must still read exactly
    what a re-parse of the normalized SQL gives, also when a dialect transform rewrote it."""
    for dialect, sql in _DOWNSTREAM_CASES:
        _assert_tree_matches_printed_sql(sql, dialect)


def test_the_tree_for_later_stages_matches_a_reparse_on_real_queries():
    import csv

    from tests.conftest import require_shared_data

    checked = 0
    for name, dialect in (("questions_gen_postgres.csv", "postgres"), ("questions_gen_sqlite.csv", "sqlite")):
        with open(require_shared_data("defog", name), newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                sql = row["query"].replace("{", "").replace("}", "")  # sets of alternatives: any form parses
                checked += _assert_tree_matches_printed_sql(sql, dialect)
    assert checked >= 330  # 338 of Defog's queries parse once their {a, b} sets are flattened
