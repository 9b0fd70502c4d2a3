"""Issue 19, the PostgreSQL side: data never steers a connection, every client wait ends,
results are bounded in bytes, connections are bounded over many databases, churn is no outage.

Servers are the local PostgreSQL (127.0.0.1:5432, trust auth) and small TCP servers of the
tests' own on 127.0.0.1: a fake database that records whatever reaches it, and a proxy in
front of PostgreSQL that goes silent once a query was sent.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest

from adapters.db import DatabaseMap, InvalidDbId
from adapters.db import postgres as pg_module
from adapters.db.retry import ConnectionBudget, ConnectionLost, Reconnector
from pipeline.main import main
from tests.fakes import db_fixtures as fx
from tests.conftest import REPO
from tests.integration.test_postgres import run_job, write_jsonl
from transforms.kit.equivalence import result_hash


@pytest.fixture(scope="module")
def hostile_url() -> str:
    return fx.create_hostile_database()


# --- small TCP servers on 127.0.0.1 ---------------------------------------------------------------

class Recorder:
    """A fake server: accepts connections and records every byte sent to it (it answers nothing)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            client.settimeout(0.5)
            with contextlib.suppress(OSError), client:
                while chunk := client.recv(65536):
                    self.received += chunk

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.listener.close()


class SilentProxy:
    """Forwards to PostgreSQL until a client sends a ``DECLARE``; from then on, that connection
    hears nothing back (the query reached the server; its answer never comes)."""

    def __init__(self, upstream: tuple[str, int] = (fx.PG_HOST, fx.PG_PORT)) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.silenced = 0
        self._sockets: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            silent = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, silent, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, silent, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, silent: threading.Event, upward: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if upward:
                    # silenced before the query is passed on: set after, a fast answer could slip
                    # back through in between (seen once on a loaded CI host: one pair came back "ok")
                    if b"DECLARE" in chunk and not silent.is_set():
                        silent.set()
                        self.silenced += 1
                    target.sendall(chunk)
                elif not silent.is_set():
                    target.sendall(chunk)

    def close(self) -> None:
        self._stop = True
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.listener.close()


@contextlib.contextmanager
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    try:
        yield server
    finally:
        server.close()


# --- 1. a db_id selects a database, never adds to its URL ---------------------------------------------

def hostile_db_ids(port: int) -> list[str]:
    return [
        f"rel_pg?host=127.0.0.1&port={port}",
        f"x host=127.0.0.1 port={port}",
        f"x@127.0.0.1:{port}/y",
        f"%2F@127.0.0.1:{port}",
        f"../127.0.0.1:{port}",
        f"db#?port={port}",
        f"db'options=-c port={port}",
        "",  # no id at all: no database, not an invalid one
    ]


def test_a_db_id_that_is_not_a_plain_name_reaches_no_server_and_is_a_dead_letter(hostile_url, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("SQLPAIRS_TEST_PW", "pw-that-must-stay-home")
    with recorder() as fake:
        bad = hostile_db_ids(fake.port)[:-1]
        rows = [{"sql": f"SELECT {i}", "db_id": db_id} for i, db_id in enumerate(bad)]
        rows.append({"sql": "SELECT count(*) FROM accounts", "db_id": fx.HOSTILE_DB})
        seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
        template = f"postgresql://{fx.PG_USER}@{fx.PG_HOST}:{fx.PG_PORT}/{{db_id}}"
        pairs, dead, _ = run_job(tmp_path / "o", "--seed_pairs", seeds, "--db_id_field", "db_id",
                                 "--database", template, "--database_password_env", "SQLPAIRS_TEST_PW")
        time.sleep(0.2)
        assert (fake.connections, fake.received) == (0, b"")
    assert [(p["db_id"], p["execution"]["status"]) for p in pairs] == [(fx.HOSTILE_DB, "ok")]
    assert sorted(d["record"]["db_id"] for d in dead) == sorted(bad)
    assert {(d["stage"], d["reason"]) for d in dead} == {("execute", "invalid_db_id")}


@pytest.mark.parametrize("template", ["postgresql://u:pw@127.0.0.1:5432/{db_id}",
                                      "mysql://root:pw@127.0.0.1:3306/{db_id}",
                                      "mariadb://root@127.0.0.1/{db_id}?charset=utf8mb4"])
def test_every_url_template_takes_plain_names_only(template):
    databases = DatabaseMap.parse(template)
    for db_id in hostile_db_ids(18901)[:-1]:
        with pytest.raises(InvalidDbId):
            databases.url_for(db_id)
    assert databases.url_for("car_dealership-2.v1") == template.replace("{db_id}", "car_dealership-2.v1")
    assert databases.url_for("") is None


def test_a_db_id_map_selects_only_the_ids_it_names():
    databases = DatabaseMap.parse("a=postgresql://u@127.0.0.1/a,b=mysql://u@127.0.0.1/b")
    assert databases.url_for("a") == "postgresql://u@127.0.0.1/a"
    assert databases.url_for("a?host=127.0.0.1&port=1") is None  # a no_database dead letter in Execute
    assert databases.url_for("c") is None


# --- 10. a malformed password never reaches a message -------------------------------------------------

@pytest.mark.parametrize("database", [
    "postgresql://bob:se%zzcret-tail@127.0.0.1:1/x",
    "postgresql://bob:se@cret-tail@127.0.0.1:1/x",
    "postgresql://bob:se@cret-tail@127.0.0.1:1/{db_id}",
    "mysql://bob:se%zzcret-tail@127.0.0.1:1/x",
    "a=postgresql://bob:se@cret-tail@127.0.0.1:1/x",
])
def test_a_malformed_password_in_the_url_never_reaches_stderr(database, tmp_path, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"sql": "SELECT 1"}])
    status = main(["run", "--seed_pairs", seeds, "--database", database, "--output", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert status == 2
    assert "percent-encode" in captured.err
    for fragment in ("cret", "se%zz", "tail"):
        assert fragment not in captured.err + captured.out


# --- 2. a server that stops answering -------------------------------------------------------------------

def test_a_server_silent_after_the_query_is_a_timeout_within_the_client_deadline(hostile_url, executor_factory):
    proxy = SilentProxy()
    try:
        url = f"postgresql://{fx.PG_USER}@127.0.0.1:{proxy.port}/{fx.HOSTILE_DB}"
        executor = executor_factory(url, timeout_s=1, max_connections=2)
        started = time.monotonic()
        result = executor.execute("SELECT count(*) FROM accounts")
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert proxy.silenced == 1
    assert result.status == "timeout" and "deadline" in result.error
    assert 1 + pg_module.CLIENT_GRACE_S - 0.5 < elapsed < 1 + pg_module.CLIENT_GRACE_S + 2


def test_a_job_on_a_silent_server_ends_within_a_few_timeouts(hostile_url, tmp_path):
    proxy = SilentProxy()
    try:
        url = f"postgresql://{fx.PG_USER}@127.0.0.1:{proxy.port}/{fx.HOSTILE_DB}"
        corpus = write_jsonl(tmp_path / "q.jsonl", [{"sql": f"SELECT count(*) FROM accounts WHERE id > {i}"}
                                                    for i in range(4)])
        started = time.monotonic()
        pairs, dead, report = run_job(tmp_path / "o", "--sql_logs", corpus, "--database", url,
                                      "--timeout_s", "1", "--max_connections", "4", "--keep_failures")
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert len(pairs) + len(dead) == 4
    assert {p["execution"]["status"] for p in pairs} <= {"timeout"}
    assert {(d["stage"], d["reason"]) for d in dead} <= {("execute", "database_unavailable")}
    assert elapsed < 25  # four queries at once, each cut at 1 s + the grace: the rest is the job's start-up


# --- 5. results bounded in bytes --------------------------------------------------------------------------

def test_wide_rows_stop_at_the_byte_cap(hostile_url, executor_factory):
    executor = executor_factory(hostile_url, max_result_bytes=3_500_000, timeout_s=10)
    result = executor.execute("SELECT g, repeat('x', 1000000) FROM generate_series(1, 1000) AS g")
    assert (result.status, result.row_count, result.truncated) == ("ok", 3, True)


def test_a_result_under_the_byte_cap_is_whole_however_many_batches_it_takes(hostile_url, executor_factory):
    executor = executor_factory(hostile_url, max_rows=5000, max_result_bytes=300_000)
    result = executor.execute("SELECT g, repeat('y', 50) FROM generate_series(1, 4000) AS g")
    expected = [(g, "y" * 50) for g in range(1, 4001)]
    assert (result.status, result.row_count, result.truncated) == ("ok", 4000, False)
    assert result.result_hash == result_hash(2, expected, ordered=False)
    capped = executor.execute("SELECT g, repeat('y', 50) FROM generate_series(1, 20000) AS g")
    assert (capped.row_count, capped.truncated) == (5000, True)  # 5000 rows of ~56 bytes: the row cap first


_SKEWED_PEAK = """
import resource, sys
from adapters.db import open_executor
executor = open_executor(sys.argv[1], max_result_bytes=2_000_000, timeout_s=30)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = executor.execute(
    "SELECT g, CASE WHEN g <= 150 THEN 'x' ELSE repeat('y', 100000) END FROM generate_series(1, 5000) AS g")
executor.close()
print(result.status, result.row_count, result.truncated,
      (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_rows_wider_than_the_first_ones_do_not_overrun_the_byte_cap(hostile_url):
    """150 one-byte rows, then 4,850 of 100 kB (485 MB in all): sized from the first rows' mean, one
    FETCH would bring the whole result into memory before it is measured; batches of at most
    MAX_FETCH_ROWS keep the peak near one batch (100 MB) whatever the rows after the first are."""
    done = subprocess.run([sys.executable, "-c", _SKEWED_PEAK, hostile_url], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    status, rows, truncated, peak_mb = done.stdout.split()
    assert (status, truncated) == ("ok", "True") and 150 <= int(rows) < 170, done.stderr
    assert int(peak_mb) < 250, f"peak grew by {peak_mb} MB for a 2 MB cap"


# --- 7. connections bounded over many databases -------------------------------------------------------

BUDGET_DBS = [f"zz_sqlpairs_budget_{i:02d}" for i in range(10)]
BUDGET_APP = "sqlpairs_budget_test"


@pytest.fixture(scope="module")
def many_databases(hostile_url) -> Iterator[str]:
    from psycopg import sql

    with fx.pg_connect() as conn:
        for name in BUDGET_DBS:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://{fx.PG_USER}@{fx.PG_HOST}:{fx.PG_PORT}/{{db_id}}?application_name={BUDGET_APP}"
    finally:
        with fx.pg_connect() as conn:
            for name in BUDGET_DBS:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _watch_backends(application: str, done: threading.Event, seen: list[int]) -> None:
    with fx.pg_connect() as conn:
        while not done.is_set():
            seen.append(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                     (application,)).fetchone()[0])
            time.sleep(0.01)


def test_connections_over_a_dozen_databases_stay_within_max_connections(many_databases, tmp_path):
    rows = [{"sql": f"SELECT count(*) FROM generate_series(1, {20000 + i})", "db_id": name}
            for i in range(8) for name in BUDGET_DBS]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    done, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch_backends, args=(BUDGET_APP, done, seen), daemon=True)
    watcher.start()
    try:
        pairs, dead, _ = run_job(tmp_path / "o", "--seed_pairs", seeds, "--db_id_field", "db_id",
                                 "--database", many_databases, "--max_connections", "4", "--dedup", "none")
    finally:
        done.set()
        watcher.join(timeout=10)
    assert dead == []
    assert len(pairs) == len(rows) and {p["execution"]["status"] for p in pairs} == {"ok"}
    assert {p["db_id"] for p in pairs} == set(BUDGET_DBS)
    assert len(seen) > 10 and 1 <= max(seen) <= 4


def test_the_budget_closes_idle_connections_of_other_databases_for_a_new_one():
    closed: list[str] = []
    budget = ConnectionBudget(2, close=closed.append)
    a = budget.take("a", lambda: "a1")
    b = budget.take("b", lambda: "b1")
    budget.give("a", a)
    assert budget.take("c", lambda: "c1") == "c1" and closed == ["a1"]  # a's idle slot went to c
    started = time.monotonic()
    with pytest.raises(Exception, match="stayed busy"):
        budget.take("d", lambda: "d1", timeout=0.2)  # b and c are in use: wait, then give up
    assert time.monotonic() - started < 1
    budget.give("b", b, reusable=False)
    assert closed == ["a1", "b1"] and budget.open == 1


# --- churn: lost connections are retried, never an outage or a query error --------------------------

def _kill_backends(application: str, done: threading.Event, kills: list[int]) -> None:
    with fx.pg_connect() as conn:
        while not done.is_set():
            kills.append(conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE application_name = %s", (application,)).fetchone()[0])
            time.sleep(0.15)


def test_backends_killed_again_and_again_while_the_database_stays_up_lose_no_record(hostile_url, tmp_path):
    application = "sqlpairs_churn_test"
    url = f"{hostile_url}?application_name={application}"
    queries = [{"sql": f"SELECT count(*), min(payload) FROM big WHERE id % {k} = 0"} for k in range(2, 402)]
    corpus = write_jsonl(tmp_path / "q.jsonl", queries)
    done, kills = threading.Event(), []
    killer = threading.Thread(target=_kill_backends, args=(application, done, kills), daemon=True)
    killer.start()
    try:
        pairs, dead, _ = run_job(tmp_path / "o", "--sql_logs", corpus, "--database", url,
                                 "--max_connections", "4", "--dedup", "none", "--keep_failures")
    finally:
        done.set()
        killer.join(timeout=10)
    assert sum(kills) >= 3, "no backend was killed: the job was faster than the killer"
    assert dead == []
    assert len(pairs) == len(queries) and {p["execution"]["status"] for p in pairs} == {"ok"}


def test_a_backend_killed_mid_query_is_retried_on_a_fresh_connection_not_a_query_error(hostile_url,
                                                                                       executor_factory):
    application = "sqlpairs_kill_mid_query"
    executor = executor_factory(f"{hostile_url}?application_name={application}", timeout_s=5)
    killed: list[int] = []

    def kill_once() -> None:
        with fx.pg_connect() as conn:
            for _ in range(300):
                pids = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                    "AND state = 'active' AND query LIKE 'FETCH%%'", (application,)).fetchall()
                if pids:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pids[0][0],))
                    killed.append(pids[0][0])
                    return
                time.sleep(0.01)

    killer = threading.Thread(target=kill_once, daemon=True)
    killer.start()
    result = executor.execute("SELECT pg_sleep(0.5), count(*) FROM accounts")
    killer.join(timeout=10)
    assert len(killed) == 1, "the query was never seen running"
    assert (result.status, result.row_count) == ("ok", 1), result.error


def test_losses_are_retried_at_once_and_only_refusals_for_the_whole_backoff_mean_down():
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] <= 4:
            raise ConnectionLost("terminated", refused=False)
        return "ok"

    reconnector = Reconnector("db", down_after_s=2.0, sleep=sleeps.append)
    assert reconnector.call(flaky) == "ok" and sleeps == []

    def refused() -> str:
        raise ConnectionLost("refused")

    clock = {"now": 0.0}
    reconnector = Reconnector("db", down_after_s=2.0, sleep=lambda s: clock.__setitem__("now", clock["now"] + s))
    real_monotonic = time.monotonic
    try:
        time.monotonic = lambda: 1000.0 + clock["now"]
        with pytest.raises(Exception, match="unavailable for 2.0 s"):
            reconnector.call(refused)
    finally:
        time.monotonic = real_monotonic
    assert clock["now"] == pytest.approx(2.0)


# --- 8b and temp_file_limit: the role's rights ---------------------------------------------------------

def test_a_superuser_role_is_warned_about_once_and_gets_a_temp_file_limit(hostile_url, executor_factory,
                                                                          monkeypatch, caplog):
    monkeypatch.setattr(pg_module, "_WARNED_SUPERUSER", set())
    caplog.set_level(logging.WARNING, logger=pg_module.__name__)
    first = executor_factory(hostile_url)
    second = executor_factory(hostile_url)
    first.check()
    assert second.fetch_rows("SELECT current_setting('temp_file_limit')")[1] == [(pg_module.TEMP_FILE_LIMIT,)]
    warnings = [r.getMessage() for r in caplog.records if "superuser" in r.getMessage()]
    assert len(warnings) == 1 and "default_transaction_read_only" in warnings[0]


def test_a_plain_role_runs_without_the_superuser_only_setting(hostile_url, executor_factory, caplog):
    with fx.pg_connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'sqlpairs_reader'").fetchone():
            conn.execute("CREATE ROLE sqlpairs_reader LOGIN")
    caplog.set_level(logging.WARNING, logger=pg_module.__name__)
    executor = executor_factory(f"postgresql://sqlpairs_reader@{fx.PG_HOST}:{fx.PG_PORT}/{fx.HOSTILE_DB}")
    result = executor.execute("SELECT current_setting('temp_file_limit'), current_setting('transaction_read_only')")
    assert result.status == "ok"
    assert result.result_hash == result_hash(2, [("-1", "on")], ordered=False)
    assert not any("superuser" in r.getMessage() for r in caplog.records)
