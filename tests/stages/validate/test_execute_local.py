"""Execute on SQLite and DuckDB: read-only sessions, real timeouts, row caps, one run per distinct query."""

import sqlite3
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from adapters.db import DatabaseMap, open_executor
from adapters.db.base import DatabaseUnavailable
from transforms.core.record import new_record
from tests.conftest import REPO, make_pipeline
from transforms.validate.execute import ExecuteQueries
from transforms.validate.normalize import NormalizeSql

CHINOOK = REPO / "examples" / "chinook.sqlite"


@pytest.fixture
def small_sqlite(tmp_path):
    path = tmp_path / "small.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (id INTEGER, name TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(200)])
    con.commit()
    con.close()
    return path


@pytest.fixture
def small_duckdb(tmp_path):
    import duckdb

    path = tmp_path / "small.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT range AS id, 'n' || range AS name FROM range(200)")
    con.close()
    return path


def test_sqlite_rows_columns_and_hash(small_sqlite):
    ex = open_executor(f"sqlite:///{small_sqlite}")
    a = ex.execute("SELECT id, name FROM t WHERE id < 3")
    b = ex.execute("SELECT id, name FROM t WHERE id < 3 ORDER BY id DESC")
    assert (a.status, a.row_count, tuple(a.columns)) == ("ok", 3, ("id", "name"))
    assert a.result_hash == b.result_hash  # unordered comparison: same multiset


def test_sqlite_connection_refuses_writes_even_without_the_guard(small_sqlite):
    ex = open_executor(f"sqlite:///{small_sqlite}")
    result = ex.execute("DELETE FROM t")
    assert result.status == "error" and "readonly" in result.error.replace(" ", "").lower()
    assert sqlite3.connect(small_sqlite).execute("SELECT count(*) FROM t").fetchone()[0] == 200


def test_sqlite_timeout_interrupts_the_query(small_sqlite):
    ex = open_executor(f"sqlite:///{small_sqlite}", timeout_s=0.5)
    started = time.monotonic()
    result = ex.execute("SELECT count(*) FROM t a, t b, t c, t d")
    assert result.status == "timeout"
    assert time.monotonic() - started < 5


def test_sqlite_row_cap_truncates(small_sqlite):
    result = open_executor(f"sqlite:///{small_sqlite}", max_rows=10).execute("SELECT * FROM t")
    assert (result.row_count, result.truncated) == (10, True)


def test_missing_sqlite_file_is_unavailable(tmp_path):
    with pytest.raises(DatabaseUnavailable):
        open_executor(f"sqlite:///{tmp_path / 'nope.db'}").check()


def test_duckdb_is_read_only_and_times_out(small_duckdb):
    ex = open_executor(f"duckdb:///{small_duckdb}", timeout_s=0.5)
    assert ex.execute("SELECT count(*) FROM t").row_count == 1
    assert ex.execute("CREATE TABLE x (a INT)").status == "error"
    started = time.monotonic()
    result = ex.execute("SELECT count(*) FROM range(100000000000) a")
    assert result.status == "timeout" and time.monotonic() - started < 5
    ex.close()


def test_same_result_hashes_equal_across_databases(small_sqlite, small_duckdb):
    a = open_executor(f"sqlite:///{small_sqlite}").execute("SELECT id FROM t WHERE id < 5")
    b = open_executor(f"duckdb:///{small_duckdb}").execute("SELECT id FROM t WHERE id < 5")
    assert a.result_hash == b.result_hash


def test_database_map_resolves_ids():
    m = DatabaseMap.parse("a=sqlite:///a.db, b=duckdb:///b.duckdb")
    assert (m.url_for("a"), m.url_for("b"), m.url_for("c")) == ("sqlite:///a.db", "duckdb:///b.duckdb", None)
    assert m.dialect() is None




def test_every_record_of_a_repeated_query_gets_the_result():
    records = [new_record("SELECT count(*) FROM Artist", f"q{i}") for i in range(3)]
    with make_pipeline() as p:
        normalized = p | beam.Create(records) | NormalizeSql("sqlite")
        out = normalized.records | ExecuteQueries(f"sqlite:///{CHINOOK}")
        assert_that(out.records | beam.Map(lambda r: (r.question, r.execution.status, r.execution.row_count)),
                    equal_to([(f"q{i}", "ok", 1) for i in range(3)]))


def test_unknown_db_id_is_a_dead_letter():
    with make_pipeline() as p:
        normalized = p | beam.Create([new_record("SELECT 1", db_id="nope")]) | NormalizeSql("sqlite")
        out = normalized.records | ExecuteQueries(f"chinook=sqlite:///{CHINOOK}")
        assert_that(out.records, equal_to([]), label="records")
        assert_that(out.dead | beam.Map(lambda d: (d.stage, d.reason)), equal_to([("execute", "no_database")]),
                    label="dead")


def test_without_database_everything_is_skipped():
    with make_pipeline() as p:
        normalized = p | beam.Create([new_record("SELECT 1")]) | NormalizeSql("sqlite")
        out = normalized.records | ExecuteQueries(None, skip_reason="not executed (--validate parse)")
        assert_that(out.records | beam.Map(lambda r: (r.execution.status, r.execution.error)),
                    equal_to([("skipped", "not executed (--validate parse)")]))


def test_each_distinct_query_runs_once(monkeypatch):
    """Records of one (database, SQL) share one run and its result."""
    import threading

    import transforms.validate.execute as execute

    runs: list[str] = []
    lock = threading.Lock()
    real_run_query = execute.run_query

    def counting_run_query(executor, sql, dialect):
        with lock:
            runs.append(sql)
        return real_run_query(executor, sql, dialect)

    monkeypatch.setattr(execute, "run_query", counting_run_query)
    sqls = ["SELECT count(*) FROM Artist", "SELECT Name FROM Genre ORDER BY Name LIMIT 3", "SELECT 1 AS one"]
    records = [new_record(sql, f"q{i}-{n}") for i, sql in enumerate(sqls) for n in range(4)]
    with make_pipeline() as p:
        normalized = p | beam.Create(records) | NormalizeSql("sqlite")
        out = normalized.records | ExecuteQueries(f"sqlite:///{CHINOOK}")
        assert_that(out.records | beam.Map(lambda r: (r.question, r.execution.status, r.execution.row_count)),
                    equal_to([(f"q{i}-{n}", "ok", (1, 3, 1)[i]) for i in range(3) for n in range(4)]))
    assert sorted(runs) == sorted(normalize_one(sql) for sql in sqls)


def normalize_one(sql: str) -> str:
    from transforms.sql.normalize import normalize_sql

    return normalize_sql(sql, "sqlite", "sqlite").sql
