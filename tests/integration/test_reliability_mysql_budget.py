"""Issue 19, point 7 on MariaDB/MySQL: ``--max_connections`` bounds a worker's connections over
every database a ``{db_id}`` URL reaches, PostgreSQL's included, not a pool per database.

The server's own list of sessions (``information_schema.PROCESSLIST``) is the judge, sampled
while the job runs: the sessions counted are those on the databases the tests create here.
Servers: the local MariaDB (127.0.0.1:3306, root) and PostgreSQL (127.0.0.1:5432, trust auth).
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from adapters.db import mysql as mysql_module
from tests.fakes import db_fixtures as fx
from tests.integration.test_postgres import run_job, write_jsonl
from transforms.kit.executors import ExecutorSet

BUDGET_DBS = [f"zz_sqlpairs_mybudget_{i:02d}" for i in range(9)]


@pytest.fixture(scope="module")
def many_databases() -> Iterator[str]:
    """Nine small MariaDB databases (dropped afterwards); the ``{db_id}`` URL over them."""
    fx.require_mariadb()
    conn = fx.my_connect()
    try:
        with conn.cursor() as cursor:
            for number, name in enumerate(BUDGET_DBS):
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cursor.execute(f"CREATE DATABASE `{name}`")
                cursor.execute(f"CREATE TABLE `{name}`.t (n INT PRIMARY KEY)")
                cursor.execute(f"INSERT INTO `{name}`.t VALUES " + ", ".join(f"({n})" for n in range(number + 1)))
        yield f"mysql://{fx.MY_USER}@{fx.MY_HOST}:{fx.MY_PORT}/{{db_id}}"
    finally:
        with conn.cursor() as cursor:
            for name in BUDGET_DBS:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def _session_list(cursor) -> list[tuple[int, str, str]]:
    """Our sessions on the test's databases, as the server sees them (the watcher's own has no database)."""
    marks = ", ".join(["%s"] * len(BUDGET_DBS))
    cursor.execute(f"SELECT ID, COMMAND, COALESCE(STATE, '') FROM information_schema.PROCESSLIST "
                   f"WHERE USER = %s AND DB IN ({marks}) AND ID <> CONNECTION_ID()", (fx.MY_USER, *BUDGET_DBS))
    return [tuple(row) for row in cursor.fetchall()]


def _sessions(cursor) -> int:
    return len(_session_list(cursor))


class SessionWatcher:
    """Counts the server's sessions on the test's databases every few milliseconds, in a thread."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.crowded: list[list[tuple[int, str, str]]] = []  # the sessions, whenever there were more than 3
        self._done = threading.Event()
        self._conn = fx.my_connect()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "SessionWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        self._conn.close()

    def _watch(self) -> None:
        with self._conn.cursor() as cursor:
            while not self._done.is_set():
                sessions = _session_list(cursor)
                self.seen.append(len(sessions))
                if len(sessions) > 3:
                    self.crowded.append(sessions)
                time.sleep(0.002)


def test_a_job_over_nine_mariadb_databases_holds_at_most_max_connections(many_databases, tmp_path):
    rows = [{"sql": f"SELECT COUNT(*) + {i} AS c, SUM(t.n) FROM t, seq_1_to_{20000 + i}", "db_id": name}
            for i in range(8) for name in BUDGET_DBS]  # 72 records, 8 distinct queries per database
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    with SessionWatcher() as watcher:
        pairs, dead, _ = run_job(tmp_path / "o", "--seed_pairs", seeds, "--db_id_field", "db_id",
                                 "--database", many_databases, "--max_connections", "3", "--dedup", "none")
    assert dead == []
    assert len(pairs) == len(rows) and {p["execution"]["status"] for p in pairs} == {"ok"}
    assert {p["db_id"] for p in pairs} == set(BUDGET_DBS)
    assert len(watcher.seen) > 10 and 1 <= max(watcher.seen) <= 3, watcher.crowded  # was a pool per database: 9
    conn = fx.my_connect()
    try:
        with conn.cursor() as cursor:
            assert _sessions(cursor) == 0  # the job closed what it opened
    finally:
        conn.close()


def test_mariadb_and_postgresql_databases_of_one_worker_share_one_budget(many_databases):
    """One slot: each database in turn takes it, and the previous holder's session is gone first."""
    pg_url = fx.create_hostile_database()
    first_url, second_url = (many_databases.format(db_id=name) for name in BUDGET_DBS[:2])
    executors = ExecutorSet({"timeout_s": 2, "max_rows": 100, "max_connections": 1})
    watcher_conn = fx.my_connect()
    try:
        with watcher_conn.cursor() as cursor:
            assert executors.get(first_url).execute("SELECT COUNT(*) FROM t").status == "ok"
            assert _sessions(cursor) == 1 and executors.budget.open == 1  # kept idle for reuse
            assert executors.get(pg_url).execute("SELECT 1").status == "ok"
            assert _sessions(cursor) == 0 and executors.budget.open == 1  # MariaDB's slot went to PostgreSQL
            assert executors.get(second_url).execute("SELECT SUM(n) FROM t").row_count == 1
            assert _sessions(cursor) == 1 and executors.budget.open == 1
    finally:
        executors.close()
        watcher_conn.close()


def test_an_executor_alone_bounds_its_connections_and_keeps_them_for_reuse(many_databases):
    url = many_databases.format(db_id=BUDGET_DBS[0])
    executor = mysql_module.MySqlExecutor(url, timeout_s=2, max_connections=2)
    conn = fx.my_connect()
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(executor.execute("SELECT SLEEP(0.2)").status))
                   for _ in range(6)]
        with conn.cursor() as cursor:
            for thread in threads:
                thread.start()
            busy = []
            while any(thread.is_alive() for thread in threads):
                busy.append(_sessions(cursor))
            assert results == ["ok"] * 6 and max(busy) == 2
            assert _sessions(cursor) == 2  # idle, for the next query
            executor.close()
            assert _sessions(cursor) == 0
    finally:
        executor.close()
        conn.close()


def test_idle_connections_are_closed_after_the_idle_limit(many_databases, monkeypatch):
    monkeypatch.setattr(mysql_module, "POOL_MAX_IDLE_S", 0.2)
    first, second = (mysql_module.MySqlExecutor(many_databases.format(db_id=name), timeout_s=2, max_connections=4)
                     for name in BUDGET_DBS[:2])
    first.use_budget(second._get_budget())  # two databases, one budget with room for both
    conn = fx.my_connect()
    try:
        with conn.cursor() as cursor:
            assert first.execute("SELECT 1").status == "ok" and _sessions(cursor) == 1
            time.sleep(1.2)  # idle past the limit; the budget looks at most once a second
            assert second.execute("SELECT 2").status == "ok"
            assert [row[0] for row in _session_list(cursor)] == [_thread_of(second)]  # the first one's is gone
    finally:
        first.close()
        second.close()
        conn.close()


def _thread_of(executor: mysql_module.MySqlExecutor) -> int:
    """The server's session id of the executor's one idle connection."""
    (idle,) = executor._budget._idle[executor]
    return idle[0].server_thread_id[0]
