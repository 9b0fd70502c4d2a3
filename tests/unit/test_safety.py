"""Tests for the read-only guard (transforms/sql/safety.py): a hostile corpus and allowed queries."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from transforms.sql.safety import (
    DENYLISTED_FUNCTION_PREFIXES,
    DENYLISTED_FUNCTIONS,
    is_read_only_query,
    refusal_reason,
)

# (dialect, sql, expected reason) — every one must be refused with exactly that reason.
HOSTILE = [
    # several statements, including ones hidden behind comments
    ("postgres", "SELECT 1; DROP TABLE t", "multiple_statements"),
    ("postgres", "SELECT 1 --\n; DELETE FROM t", "multiple_statements"),
    ("postgres", "SELECT 1 /* x */; DELETE FROM t", "multiple_statements"),
    ("mysql", "SELECT 1 # x\n; DELETE FROM t", "multiple_statements"),
    ("sqlite", "SELECT 1; SELECT 2", "multiple_statements"),
    # nothing to run
    ("postgres", "", "empty"),
    ("postgres", ";", "empty"),
    ("postgres", "-- only a comment", "empty"),
    # data-modifying statements
    ("postgres", "INSERT INTO t VALUES (1)", "not_a_query:Insert"),
    ("postgres", "UPDATE t SET a = 1", "not_a_query:Update"),
    ("postgres", "DELETE FROM t", "not_a_query:Delete"),
    ("postgres", "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "not_a_query:Merge"),
    ("postgres", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "not_a_query:Insert"),
    ("postgres", "TRUNCATE t", "not_a_query:TruncateTable"),
    ("postgres", "CREATE TABLE x AS SELECT 1", "not_a_query:Create"),
    ("postgres", "DROP TABLE t", "not_a_query:Drop"),
    ("postgres", "ALTER TABLE t ADD COLUMN c INT", "not_a_query:Alter"),
    ("postgres", "GRANT ALL ON t TO u", "not_a_query:Grant"),
    ("postgres", "COPY t TO PROGRAM 'rm -rf /'", "not_a_query:Copy"),
    ("postgres", "COPY (SELECT 1) TO '/tmp/x'", "not_a_query:Copy"),
    ("postgres", "SET search_path = evil", "not_a_query:Set"),
    ("postgres", "VALUES (1), (2)", "not_a_query:Values"),
    # data-modifying CTEs, SELECT INTO, locking reads
    ("postgres", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "data_modifying_cte"),
    ("postgres", "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i", "data_modifying_cte"),
    ("postgres", "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", "data_modifying_cte"),
    ("postgres", "SELECT * INTO new_table FROM t", "select_into"),
    ("postgres", "SELECT 1 UNION SELECT * INTO x FROM t", "select_into"),
    ("tsql", "SELECT * INTO #tmp FROM t", "select_into"),
    ("mysql", "SELECT 1 INTO @x", "select_into"),
    ("postgres", "SELECT * FROM t FOR UPDATE", "locking_clause"),
    ("postgres", "SELECT * FROM t FOR SHARE", "locking_clause"),
    ("postgres", "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", "locking_clause"),
    ("postgres", "SELECT COUNT(*) FROM (SELECT * FROM t FOR UPDATE) AS s", "locking_clause"),
    ("mysql", "SELECT * FROM t LOCK IN SHARE MODE", "locking_clause"),
    # opaque commands
    ("postgres", "SET ROLE postgres", "command:SET"),
    ("postgres", "RESET ALL", "command:RESET"),
    ("postgres", "CALL p()", "command:CALL"),
    ("postgres", "DO $$ BEGIN PERFORM 1; END $$", "command:DO"),
    ("postgres", "EXPLAIN ANALYZE DELETE FROM t", "command:EXPLAIN"),
    ("postgres", "EXPLAIN SELECT 1", "command:EXPLAIN"),
    ("postgres", "VACUUM", "command:VACUUM"),
    ("postgres", "LOCK TABLE t", "command:LOCK"),
    ("postgres", "PREPARE p AS SELECT 1", "command:PREPARE"),
    ("postgres", "EXECUTE p", "command:EXECUTE"),
    ("postgres", "DECLARE c CURSOR FOR SELECT 1", "command:DECLARE"),
    ("postgres", "REFRESH MATERIALIZED VIEW v", "command:REFRESH"),
    ("mysql", "LOCK TABLES t READ", "command:LOCK"),
    ("tsql", "EXEC sp_x", "not_a_query:Execute"),
    # transactions
    ("postgres", "BEGIN", "transaction_control"),
    ("postgres", "COMMIT", "transaction_control"),
    ("postgres", "ROLLBACK", "transaction_control"),
    ("postgres", "END", "transaction_control"),
    ("postgres", "ROLLBACK TO SAVEPOINT a", "transaction_control"),
    ("mysql", "START TRANSACTION", "transaction_control"),
    # DuckDB / SQLite statements
    ("duckdb", "ATTACH 'other.db'", "not_a_query:Attach"),
    ("duckdb", "DETACH other", "not_a_query:Detach"),
    ("duckdb", "INSTALL httpfs", "not_a_query:Install"),
    ("duckdb", "LOAD httpfs", "command:LOAD"),
    ("duckdb", "PRAGMA version", "not_a_query:Pragma"),
    ("duckdb", "USE other", "not_a_query:Use"),
    ("sqlite", "PRAGMA writable_schema = 1", "not_a_query:Pragma"),
    ("sqlite", "ATTACH DATABASE '/tmp/x.db' AS x", "not_a_query:Attach"),
    # denylisted functions: any case, quoted, schema-qualified, nested anywhere
    ("postgres", "SELECT pg_sleep(60)", "side_effect_function:pg_sleep"),
    ("postgres", "SELECT pg_sleep_for('5 minutes')", "side_effect_function:pg_sleep_for"),
    ("postgres", "SELECT pg_catalog.PG_SLEEP(1)", "side_effect_function:pg_sleep"),
    ("postgres", 'SELECT "pg_sleep"(1)', "side_effect_function:pg_sleep"),
    ("postgres", "select PG_READ_FILE('/etc/passwd')", "side_effect_function:pg_read_file"),
    ("postgres", "SELECT pg_read_binary_file('/etc/passwd')", "side_effect_function:pg_read_binary_file"),
    ("postgres", "SELECT * FROM pg_ls_dir('.')", "side_effect_function:pg_ls_dir"),
    ("postgres", "SELECT public.nextval('s')", "side_effect_function:nextval"),
    ("postgres", "SELECT setval('s', 1)", "side_effect_function:setval"),
    ("postgres", "SELECT currval('s')", "side_effect_function:currval"),
    ("postgres", "SELECT set_config('role', 'postgres', false)", "side_effect_function:set_config"),
    ("postgres", "SELECT dblink_exec('host=x', 'DROP TABLE t')", "side_effect_function:dblink_exec"),
    ("postgres", "SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a INT)", "side_effect_function:dblink"),
    ("postgres", "SELECT lo_import('/etc/passwd')", "side_effect_function:lo_import"),
    ("postgres", "SELECT lo_export(1, '/tmp/x')", "side_effect_function:lo_export"),
    ("postgres", "SELECT pg_terminate_backend(1)", "side_effect_function:pg_terminate_backend"),
    ("postgres", "SELECT pg_cancel_backend(1)", "side_effect_function:pg_cancel_backend"),
    ("postgres", "SELECT pg_reload_conf()", "side_effect_function:pg_reload_conf"),
    ("postgres", "SELECT pg_advisory_lock(1)", "side_effect_function:pg_advisory_lock"),
    ("postgres", "SELECT txid_current()", "side_effect_function:txid_current"),
    ("postgres", "SELECT pg_switch_wal()", "side_effect_function:pg_switch_wal"),
    ("postgres", "SELECT query_to_xml('DELETE FROM t', true, true, '')", "side_effect_function:query_to_xml"),
    ("postgres", "SELECT * FROM t WHERE a IN (SELECT pg_sleep(1))", "side_effect_function:pg_sleep"),
    ("postgres", "WITH x AS (SELECT pg_sleep(1)) SELECT * FROM x", "side_effect_function:pg_sleep"),
    ("postgres", "SELECT CASE WHEN a THEN pg_sleep(1) END FROM t", "side_effect_function:pg_sleep"),
    ("postgres", "SELECT CAST(pg_sleep(1) AS TEXT)", "side_effect_function:pg_sleep"),
    ("postgres", "SELECT * FROM t CROSS JOIN LATERAL (SELECT pg_sleep(1)) AS y", "side_effect_function:pg_sleep"),
    ("postgres", "SELECT 1 UNION SELECT length(pg_read_file('x'))", "side_effect_function:pg_read_file"),
    ("mysql", "SELECT SLEEP(5)", "side_effect_function:sleep"),
    ("mysql", "SELECT BENCHMARK(1000000, MD5('a'))", "side_effect_function:benchmark"),
    ("mysql", "SELECT LOAD_FILE('/etc/passwd')", "side_effect_function:load_file"),
    ("mysql", "SELECT GET_LOCK('a', 10)", "side_effect_function:get_lock"),
    ("mysql", "SELECT sys_exec('id')", "side_effect_function:sys_exec"),
    ("mysql", "SELECT 1 /*! , SLEEP(10) */", "executable_comment"),
    ("sqlite", "SELECT load_extension('evil.so')", "side_effect_function:load_extension"),
    ("sqlite", "SELECT writefile('/tmp/x', 'y')", "side_effect_function:writefile"),
    ("sqlite", "SELECT readfile('/etc/passwd')", "side_effect_function:readfile"),
    ("sqlite", "SELECT edit('x', 'vi')", "side_effect_function:edit"),
    ("duckdb", "SELECT * FROM read_csv('x.csv')", "side_effect_function:read_csv"),
    ("duckdb", "SELECT * FROM read_csv_auto('x.csv')", "side_effect_function:read_csv_auto"),
    ("duckdb", "SELECT * FROM read_parquet('x.parquet')", "side_effect_function:read_parquet"),
    ("duckdb", "SELECT * FROM read_json('x.json')", "side_effect_function:read_json"),
    ("duckdb", "SELECT * FROM read_text('/etc/passwd')", "side_effect_function:read_text"),
    ("duckdb", "SELECT * FROM glob('/*')", "side_effect_function:glob"),
    ("duckdb", "SELECT * FROM query('DELETE FROM t')", "side_effect_function:query"),
    ("duckdb", "SELECT getenv('AWS_SECRET_ACCESS_KEY')", "side_effect_function:getenv"),
    ("duckdb", "SELECT * FROM 'data.csv'", "file_table_reference"),
    ("duckdb", "SELECT * FROM 's3://bucket/x.parquet'", "file_table_reference"),
    ("tsql", "SELECT NEXT VALUE FOR s", "side_effect_function:next_value_for"),
    ("snowflake", "SELECT s.nextval", "side_effect_function:nextval"),
    ("snowflake", "SELECT SYSTEM$WAIT(10)", "side_effect_function:system$wait"),
    ("oracle", "SELECT utl_http.request('http://x') FROM dual", "side_effect_function:utl_http.request"),
    ("bigquery", "SELECT * FROM EXTERNAL_QUERY('c', 'DELETE FROM t')", "side_effect_function:external_query"),
]

# Texts sqlglot cannot parse are refused by is_read_only_query.
UNPARSEABLE = [
    ("mysql", "LOAD DATA INFILE '/etc/passwd' INTO TABLE t"),
    ("mysql", "SELECT * FROM t INTO OUTFILE '/tmp/x'"),
    ("mysql", "SELECT * INTO DUMPFILE '/tmp/x' FROM t"),
    ("tsql", "WAITFOR DELAY '00:00:05'"),
    ("postgres", "SELECT FROM WHERE"),
]

ALLOWED = [
    ("postgres", "SELECT a, b FROM t WHERE a > 1"),
    ("postgres", "SELECT 1;"),
    ("postgres", "SELECT 1;;"),
    ("postgres", "(SELECT 1)"),
    ("postgres", "TABLE t"),
    ("postgres", "WITH x AS (SELECT a FROM t) SELECT * FROM x"),
    ("postgres", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r"),
    ("postgres", "SELECT a FROM t UNION ALL SELECT b FROM u ORDER BY 1"),
    ("postgres", "SELECT a FROM t INTERSECT SELECT a FROM u EXCEPT SELECT a FROM v"),
    ("postgres", "SELECT a, ROW_NUMBER() OVER (PARTITION BY b ORDER BY c) FROM t"),
    ("postgres", "SELECT * FROM t WHERE a IN (SELECT a FROM u) AND EXISTS (SELECT 1 FROM v WHERE v.a = t.a)"),
    ("postgres", "SELECT * FROM (VALUES (1), (2)) AS v(a)"),
    ("postgres", "SELECT * FROM generate_series(1, 3)"),
    ("postgres", "SELECT COUNT(*) FILTER (WHERE a > 1), STRING_AGG(b, ',') FROM t GROUP BY c HAVING COUNT(*) > 1"),
    ("postgres", "SELECT a::DATE, NOW(), RANDOM() FROM t"),
    ("postgres", "SELECT 1 /* ; DROP TABLE t */"),
    ("postgres", "SELECT 'pg_sleep(1)' AS s"),
    ("postgres", "SELECT sleep FROM t"),
    ("postgres", 'SELECT "My Table".a FROM "My Table"'),
    ("postgres", 'SELECT * FROM "public"."orders"'),
    ("mysql", "SELECT * FROM `t` WHERE `a` = 'x' LIMIT 5"),
    ("mysql", "SELECT * FROM t -- ; DELETE FROM t"),
    ("sqlite", "SELECT name FROM t WHERE name GLOB 'a*'"),
    ("sqlite", "SELECT * FROM t LIMIT 10 OFFSET 5"),
    ("tsql", "SELECT TOP 5 * FROM t"),
    ("duckdb", "FROM t"),
    ("duckdb", "SELECT * FROM t USING SAMPLE 10"),
]


def _parse(sql: str, dialect: str) -> list[exp.Expr | None]:
    return sqlglot.parse(sql, read=dialect)


@pytest.mark.parametrize(("dialect", "sql", "reason"), HOSTILE, ids=[f"{d}:{s}" for d, s, _ in HOSTILE])
def test_hostile_text_is_refused_with_its_reason(dialect: str, sql: str, reason: str) -> None:
    assert refusal_reason(_parse(sql, dialect)) == reason


@pytest.mark.parametrize(("dialect", "sql"), ALLOWED, ids=[f"{d}:{s}" for d, s in ALLOWED])
def test_read_only_query_is_allowed(dialect: str, sql: str) -> None:
    assert refusal_reason(_parse(sql, dialect)) is None


@pytest.mark.parametrize(("dialect", "sql"), UNPARSEABLE, ids=[f"{d}:{s}" for d, s in UNPARSEABLE])
def test_unparseable_text_is_refused(dialect: str, sql: str) -> None:
    ok, reason = is_read_only_query(sql, dialect)
    assert not ok and reason is not None and reason.startswith("unparseable:")


def test_is_read_only_query_accepts_a_select() -> None:
    assert is_read_only_query("SELECT a FROM t", "postgres") == (True, None)


def test_is_read_only_query_reports_the_guard_reason() -> None:
    assert is_read_only_query("SELECT 1; DROP TABLE t", "postgres") == (False, "multiple_statements")


def test_is_read_only_query_accepts_no_dialect() -> None:
    assert is_read_only_query("SELECT 1", None) == (True, None)


def test_is_read_only_query_refuses_too_deep_nesting_without_raising() -> None:
    sql = "SELECT 1 WHERE " + "(" * 5000 + "1" + ")" * 5000
    ok, reason = is_read_only_query(sql, "postgres")
    assert not ok and reason is not None and reason.startswith("unparseable:")


def test_is_read_only_query_raises_on_unknown_dialect() -> None:
    with pytest.raises(ValueError):
        is_read_only_query("SELECT 1", "no-such-dialect")


def test_empty_statement_list_is_refused() -> None:
    assert refusal_reason([]) == "empty"


def test_none_entries_are_ignored() -> None:
    assert refusal_reason([None, sqlglot.parse_one("SELECT 1"), None]) is None


def test_two_queries_are_refused_even_when_both_read_only() -> None:
    assert refusal_reason([sqlglot.parse_one("SELECT 1"), sqlglot.parse_one("SELECT 2")]) == "multiple_statements"


def test_parenthesized_values_is_not_a_query() -> None:
    assert refusal_reason(_parse("(VALUES (1))", "postgres")) == "not_a_query:Values"


def test_statement_nested_outside_a_cte_is_refused() -> None:
    tree = sqlglot.parse_one("SELECT * FROM t WHERE a IN (SELECT 1)")
    tree.find(exp.Subquery).set("this", sqlglot.parse_one("DELETE FROM t"))
    assert refusal_reason([tree]) == "nested_statement:Delete"


def test_guard_generates_no_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = sqlglot.parse_one("WITH x AS (SELECT a FROM t) SELECT * FROM x WHERE a IN (SELECT b FROM u)")

    def forbidden(*args: object, **kwargs: object) -> str:
        raise AssertionError("the guard must not generate SQL")

    monkeypatch.setattr(exp.Expression, "sql", forbidden)
    assert refusal_reason([tree]) is None


def test_guard_does_not_reparse(monkeypatch: pytest.MonkeyPatch) -> None:
    statements = _parse("SELECT pg_sleep(1)", "postgres")

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("the guard must not parse")

    monkeypatch.setattr(sqlglot, "parse", forbidden)
    monkeypatch.setattr(sqlglot, "parse_one", forbidden)
    assert refusal_reason(statements) == "side_effect_function:pg_sleep"


def test_denylist_is_lower_case() -> None:
    assert all(name == name.lower() for name in DENYLISTED_FUNCTIONS)
    assert all(prefix == prefix.lower() for prefix in DENYLISTED_FUNCTION_PREFIXES)


@pytest.mark.parametrize("name", sorted(DENYLISTED_FUNCTIONS - {"next_value_for"}))
def test_every_denylisted_function_is_refused_when_called(name: str) -> None:
    reason = refusal_reason(_parse(f"SELECT x.{name}('a') FROM t AS x", "postgres"))
    assert reason is not None and reason.startswith("side_effect_function:")


def test_column_named_like_a_denylisted_function_is_allowed() -> None:
    assert refusal_reason(_parse("SELECT sleep, pg_sleep FROM t", "postgres")) is None


def test_quoted_table_name_without_a_path_is_allowed() -> None:
    assert refusal_reason(_parse('SELECT * FROM "Order Details"', "duckdb")) is None


@pytest.mark.parametrize("name", sorted(DENYLISTED_FUNCTIONS))
def test_every_denylisted_function_is_refused_unqualified(name: str) -> None:
    ok, reason = is_read_only_query(f"SELECT {name.upper()}('a')", "duckdb")
    assert not ok and reason is not None
