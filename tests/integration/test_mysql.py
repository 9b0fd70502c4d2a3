"""MariaDB/MySQL execution: read-only sessions as root, server-enforced time limits, row caps, reconnects.

Runs against the local MariaDB (127.0.0.1:3306, root — all privileges, on purpose).
The ``sqlpairs_test`` schema is created once and kept (``tests/fakes/db_fixtures.py``).
Tests that stop the server start it again, whatever happens.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from adapters.db import mysql as mysql_module
from adapters.db.base import DatabaseUnavailable
from pipeline.main import main
from tests.fakes import db_fixtures as fx
from transforms.kit.equivalence import result_hash, results_match

CLOSED_PORT_URL = "mysql://bob:hunter2-secret@127.0.0.1:1/nowhere"
OUTFILE = "/tmp/sqlpairs_mysql_outfile.txt"


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    return fx.create_mariadb_database()


@pytest.fixture
def server_restored():
    """Whatever a test does to the server, it is running again afterwards."""
    yield
    fx.ensure_mariadb_running()


def plain_rows(sql: str) -> list[tuple]:
    conn = fx.my_connect(fx.MY_DB)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        conn.close()


def test_results_match_what_a_plain_cursor_returns(mariadb_url, executor_factory):
    executor = executor_factory(mariadb_url)
    sql = "SELECT a.name, COUNT(*) AS tracks, SUM(t.price) AS total, MIN(t.released), MAX(t.length) " \
          "FROM track t JOIN artist a ON a.artist_id = t.artist_id GROUP BY a.name"
    result = executor.execute(sql)
    assert (result.status, result.row_count, len(result.columns)) == ("ok", 4, 5)
    assert result.result_hash == result_hash(5, plain_rows(sql), ordered=False)
    columns, rows, truncated = executor._run(sql)
    assert results_match(plain_rows(sql), rows, order_matters=False) and not truncated


def test_decimal_date_and_time_hash_the_same_as_on_postgres(mariadb_url, executor_factory):
    """DECIMAL/DATE/TIME from PyMySQL and numeric/date/interval from psycopg are the same answer."""
    mariadb = executor_factory(mariadb_url).execute(
        "SELECT track_id, price, released, length FROM track WHERE track_id <= 50")
    postgres = executor_factory(fx.create_hostile_database()).execute(
        "SELECT s, 0.99 + (s % 3), DATE '2000-01-01' + s, make_interval(secs => 120 + s % 300) "
        "FROM generate_series(1, 50) s")
    assert mariadb.status == postgres.status == "ok"
    assert mariadb.result_hash == postgres.result_hash


#: Statements that change data or schema: the read-only session refuses every one by itself.
TABLE_WRITES = (
    "INSERT INTO artist VALUES (99, 'mallory')",
    "UPDATE track SET price = 0",
    "DELETE FROM artist",
    "REPLACE INTO artist VALUES (1, 'pwned')",
    "TRUNCATE TABLE track",
    "DROP TABLE artist",
    "CREATE TABLE pwned (a INT)",
    "ALTER TABLE artist ADD COLUMN pwned INT",
    "CREATE USER mallory IDENTIFIED BY 'x'",
    "GRANT ALL ON *.* TO 'mallory'@'%'",
    "LOAD DATA INFILE '/etc/hostname' INTO TABLE artist",
    "SELECT * FROM artist FOR UPDATE",
    "SELECT sqlpairs_write()",
)
#: What a read-only transaction does NOT stop on MySQL: a server file, session settings, table locks.
SESSION_ESCAPES = (
    "SELECT * FROM artist INTO OUTFILE '/tmp/sqlpairs_mysql_outfile.txt'",
    "SELECT * FROM artist INTO /* hidden */ DUMPFILE '/tmp/sqlpairs_mysql_outfile.txt'",
    "SET SESSION max_statement_time = 0",
    "SET SESSION TRANSACTION READ WRITE",
    "/*!40101 SET SESSION max_statement_time = 0 */",
    "SELECT 1 /*!, SLEEP(100) */",
    "LOCK TABLES artist WRITE",
    "COMMIT",
    "SELECT 1; DELETE FROM artist",
)


@pytest.fixture
def untouched(mariadb_url):
    if os.path.exists(OUTFILE):
        os.remove(OUTFILE)
    before = fx.mariadb_fingerprint()
    yield
    assert fx.mariadb_fingerprint() == before
    assert not os.path.exists(OUTFILE)


def test_the_read_only_session_refuses_every_table_write_as_root(mariadb_url, executor_factory, untouched,
                                                                 monkeypatch):
    """With the executor's own text check switched off too, MariaDB itself must say no."""
    monkeypatch.setattr(mysql_module, "refusal", lambda sql: None)
    executor = executor_factory(mariadb_url, timeout_s=1, max_connections=1)
    outcomes = {sql: executor.execute(sql) for sql in TABLE_WRITES}
    assert {sql: r.status for sql, r in outcomes.items()} == {sql: "error" for sql in TABLE_WRITES}
    assert all("READ ONLY transaction" in r.error for r in outcomes.values())


def test_the_executor_refuses_what_a_read_only_transaction_would_let_through(mariadb_url, executor_factory,
                                                                            untouched):
    executor = executor_factory(mariadb_url, timeout_s=1, max_connections=1)
    outcomes = {sql: executor.execute(sql) for sql in SESSION_ESCAPES}
    assert {sql: r.status for sql, r in outcomes.items()} == {sql: "error" for sql in SESSION_ESCAPES}
    # The one pooled connection kept its limits: nothing above changed the session.
    assert executor.execute("SELECT SLEEP(3)").status == "timeout"
    assert executor.execute("SELECT @@tx_read_only").result_hash == result_hash(1, [(1,)], ordered=False)


def test_the_server_stops_a_slow_query_at_the_time_limit(mariadb_url, executor_factory):
    executor = executor_factory(mariadb_url, timeout_s=0.5)
    result = executor.execute("SELECT COUNT(*) FROM track a, track b, track c")
    assert result.status == "timeout" and "max_statement_time" in result.error
    conn = fx.my_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%track a, track b%' "
                           "AND ID <> CONNECTION_ID()")
            assert cursor.fetchone()[0] == 0
    finally:
        conn.close()


def test_a_capped_result_is_not_drained_and_the_pool_keeps_working(mariadb_url, executor_factory):
    executor = executor_factory(mariadb_url, max_rows=10, max_connections=1)
    capped = executor.execute("SELECT * FROM track a, track b")  # 9 million rows if it were read
    assert (capped.status, capped.row_count, capped.truncated) == ("ok", 10, True)
    assert executor.execute("SELECT COUNT(*) FROM artist").status == "ok"


def test_a_restart_is_survived_by_reconnecting(mariadb_url, executor_factory, server_restored):
    executor = executor_factory(mariadb_url, max_connections=2)
    assert executor.execute("SELECT COUNT(*) FROM artist").status == "ok"  # a pooled connection now exists
    fx.stop_mariadb()
    fx.ensure_mariadb_running()
    result = executor.execute("SELECT COUNT(*) FROM artist")
    assert (result.status, result.row_count) == ("ok", 1)


def test_a_stopped_server_gives_database_unavailable_then_fails_fast(mariadb_url, executor_factory, server_restored):
    executor = executor_factory(mariadb_url.replace("root@", "root:hunter2-secret@"), password="")
    assert executor.execute("SELECT 1").status == "ok"
    fx.stop_mariadb()
    with pytest.raises(DatabaseUnavailable) as first:
        executor.execute("SELECT 2")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        executor.execute("SELECT 3")
    assert time.monotonic() - started < 0.5
    assert "hunter2" not in str(first.value) and "root:***@127.0.0.1" in str(first.value)


def test_the_pipeline_validates_against_mariadb_and_changes_nothing(mariadb_url, tmp_path):
    before = fx.mariadb_fingerprint()
    logs = tmp_path / "logs.jsonl"
    rows = [{"sql": "SELECT name FROM artist WHERE artist_id < 3"},
            {"sql": "SELECT COUNT(*) FROM track a, track b, track c"},
            {"sql": "SELECT * FROM nope"},
            {"sql": "DELETE FROM artist"},
            {"sql": "SELECT SLEEP(60)"},
            {"sql": "SELECT * FROM artist INTO OUTFILE '/tmp/sqlpairs_mysql_outfile.txt'"}]
    logs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--sql_logs", str(logs), "--database", mariadb_url, "--timeout_s", "1",
                 "--keep_failures", "--output", str(out)]) == 0
    pairs = [json.loads(line) for line in open(f"{out}-00000-of-00001.jsonl", encoding="utf-8")]
    dead = [json.loads(line) for line in open(f"{out}-rejects-00000-of-00001.jsonl", encoding="utf-8")]
    status = {p["sql"]: p["execution"]["status"] for p in pairs}
    assert status == {"SELECT name FROM artist WHERE artist_id < 3": "ok",
                      "SELECT COUNT(*) FROM track a, track b, track c": "timeout",
                      "SELECT * FROM nope": "error"}
    assert {d["record"]["sql"] for d in dead} == {r["sql"] for r in rows[3:]}
    assert fx.mariadb_fingerprint() == before and not os.path.exists(OUTFILE)


def test_an_unreachable_server_at_start_is_one_redacted_line_and_exit_2(tmp_path, capsys):
    logs = tmp_path / "logs.jsonl"
    logs.write_text('{"sql": "SELECT 1"}\n', encoding="utf-8")
    status = main(["run", "--sql_logs", str(logs), "--database", CLOSED_PORT_URL, "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqlpairs: error: database unavailable")
    assert "bob:***@127.0.0.1:1" in lines[0] and "hunter2" not in err


def test_mariadb_and_mysql_get_their_own_time_limit_setting(monkeypatch):
    executor = mysql_module.MySqlExecutor("mysql://u@h/db", timeout_s=2.5)

    class Server:
        def __init__(self, version):
            self.version = version

        def get_server_info(self):
            return self.version

    mariadb = executor._session_setup(Server("10.11.19-MariaDB-0+deb12u1"))
    mysql = executor._session_setup(Server("8.0.36"))
    assert "max_statement_time = 2.500" in mariadb[1] and "max_execution_time = 2500" in mysql[1]
    assert mariadb[0] == mysql[0] == "SET SESSION TRANSACTION READ ONLY"
