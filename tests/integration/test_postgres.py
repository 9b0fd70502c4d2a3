"""PostgreSQL execution: Defog's 314 questions, a hostile corpus as superuser, a restart mid-run.

Runs against the local server (127.0.0.1:5432, user postgres — a superuser, on
purpose: safety must not depend on the role). Databases are loaded once and kept
(``tests/fakes/db_fixtures.py``), so a second run skips loading.
"""

from __future__ import annotations

import gc
import glob
import json
import os
import pathlib
import threading
import time

import psycopg
import pytest
import sqlglot

from adapters.db import open_executor
from adapters.db import postgres as pg_module
from adapters.db.base import DatabaseUnavailable
from pipeline.main import main
from tests.fakes import db_fixtures as fx
from tests.conftest import REPO
from transforms.kit.equivalence import has_top_level_order_by, result_hash, results_match
from transforms.formats import RawPair
from transforms.formats.defog import parse_defog_csv

DEFOG_FILES = ("questions_gen_postgres.csv", "instruct_basic_postgres.csv", "instruct_advanced_postgres.csv")
CLOSED_PORT_URL = "postgresql://bob:hunter2-secret@127.0.0.1:1/nowhere"


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def defog_template() -> str:
    return fx.load_defog_databases()


@pytest.fixture(scope="session")
def chinook_url() -> str:
    return fx.load_chinook()


@pytest.fixture(scope="session")
def hostile_url() -> str:
    return fx.create_hostile_database()


def defog_pairs() -> list[RawPair]:
    pairs = []
    for name in DEFOG_FILES:
        path = fx.DEFOG_DIR / name
        with open(path, "rb") as stream:
            pairs.extend(item for item in parse_defog_csv(stream, str(path)) if isinstance(item, RawPair))
    return pairs


def run_job(out: pathlib.Path, *args: str) -> tuple[list[dict], list[dict], dict]:
    """Run the whole job in-process; returns (pairs, dead letters, report)."""
    assert main(["run", *args, "--output", str(out)]) == 0
    gc.collect()  # the finished job's connection pools are garbage now: let them close their connections

    def lines(pattern: str) -> list[dict]:
        rows = []
        for name in sorted(glob.glob(pattern)):
            with open(name, encoding="utf-8") as handle:
                rows.extend(json.loads(line) for line in handle if line.strip())
        return rows

    pairs = lines(f"{out}-0*-of-*.jsonl")
    dead = lines(f"{out}-rejects-*-of-*.jsonl")
    with open(f"{out}-report.json", encoding="utf-8") as handle:
        report = json.load(handle)
    return pairs, dead, report


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


# --- Defog sql-eval -----------------------------------------------------------------------------

def test_every_defog_question_executes_on_its_database_through_the_pipeline(defog_template, tmp_path):
    files = ",".join(str(fx.DEFOG_DIR / name) for name in DEFOG_FILES)
    pairs, dead, report = run_job(
        tmp_path / "defog", "--seed_pairs", files, "--database", defog_template,
        "--dedup", "none", "--keep_failures", "--max_connections", "2",
    )
    assert dead == []
    assert len(pairs) == len(defog_pairs()) == 484  # 314 questions, alternatives expanded (line 3 of questions_gen_postgres.csv repeats one)
    assert {p["execution"]["status"] for p in pairs} == {"ok"}
    questions = {}
    for pair in pairs:
        questions.setdefault(pair["origin"], []).append(pair["execution"]["row_count"])
    assert len(questions) == 314
    assert sum(1 for counts in questions.values() if max(counts) > 0) >= 313
    assert len({p["db_id"] for p in pairs}) == 11
    assert report["ok"]


def test_the_cursor_path_returns_what_a_plain_query_returns_for_every_defog_query(defog_template):
    """Read-only transaction + server-side cursor + batches give the rows (and order) a plain cursor gives."""
    by_database: dict[str, list[RawPair]] = {}
    for pair in defog_pairs():
        by_database.setdefault(pair.db_id, []).append(pair)
    mismatches = []
    for db_id, pairs in sorted(by_database.items()):
        executor = open_executor(defog_template.replace("{db_id}", db_id), timeout_s=10, max_connections=1)
        try:
            with fx.pg_connect(fx.PG_PREFIX + db_id) as plain:
                for pair in pairs:
                    ordered = has_top_level_order_by(sqlglot.parse_one(pair.sql, read="postgres"))
                    gold = plain.execute(pair.sql).fetchall()
                    columns, rows, truncated = executor._run(pair.sql)
                    execution = executor.execute(pair.sql, ordered=ordered)
                    if (truncated or not results_match(gold, rows, order_matters=ordered)
                            or execution.result_hash != result_hash(len(columns), gold, ordered=ordered)):
                        mismatches.append(pair.sql)
        finally:
            executor.close()
    assert mismatches == []


def test_records_reach_the_database_their_db_id_names(defog_template, tmp_path):
    academic = defog_template.replace("{db_id}", "academic")
    yelp = defog_template.replace("{db_id}", "yelp")
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        {"sql": "SELECT count(*) FROM author", "db_id": "academic"},
        {"sql": "SELECT count(*) FROM business", "db_id": "yelp"},
        {"sql": "SELECT count(*) FROM author", "db_id": "yelp"},  # no such table there
        {"sql": "SELECT 1", "db_id": "geography"},  # not in the map
    ])
    pairs, dead, _ = run_job(
        tmp_path / "map", "--seed_pairs", seeds, "--db_id_field", "db_id", "--keep_failures",
        "--database", f"academic={academic},yelp={yelp}",
    )
    status = {(p["db_id"], p["sql"]): p["execution"]["status"] for p in pairs}
    assert status == {
        ("academic", "SELECT count(*) FROM author"): "ok",
        ("yelp", "SELECT count(*) FROM business"): "ok",
        ("yelp", "SELECT count(*) FROM author"): "error",
    }
    assert [(d["stage"], d["reason"], d["record"]["db_id"]) for d in dead] == [("execute", "no_database", "geography")]


# --- the executor on its own ----------------------------------------------------------------------

def test_statement_timeout_stops_the_query_in_the_server(hostile_url, executor_factory):
    executor = executor_factory(hostile_url, timeout_s=0.5)
    result = executor.execute("SELECT count(*) FROM big a, big b, big c")
    assert result.status == "timeout"
    assert "statement timeout" in result.error
    with fx.pg_connect() as conn:
        running = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                               "AND query LIKE '%big a, big b, big c%' AND pid <> pg_backend_pid()").fetchone()[0]
    assert running == 0


@pytest.mark.parametrize("max_rows, expected", [(10, (10, True)), (1000, (1000, True)), (20000, (20000, False)),
                                                (25000, (20000, False))])
def test_row_cap_reads_at_most_max_rows_in_batches(hostile_url, executor_factory, max_rows, expected):
    executor = executor_factory(hostile_url, max_rows=max_rows)
    result = executor.execute("SELECT * FROM big")
    assert (result.row_count, result.truncated) == expected


def test_a_result_of_exactly_one_batch_is_not_truncated(hostile_url, executor_factory):
    executor = executor_factory(hostile_url, max_rows=1000)
    result = executor.execute("SELECT id FROM big WHERE id <= 1000")
    assert (result.status, result.row_count, result.truncated) == ("ok", 1000, False)
    assert result.result_hash == result_hash(1, [(i,) for i in range(1, 1001)], ordered=False)


def test_hashes_agree_with_sqlite_for_the_same_data(chinook_url, executor_factory):
    postgres = executor_factory(chinook_url).execute("SELECT name, unit_price FROM track WHERE album_id < 20")
    sqlite = open_executor(f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}").execute(
        "SELECT Name, UnitPrice FROM Track WHERE AlbumId < 20")
    assert postgres.status == sqlite.status == "ok"
    assert postgres.result_hash == sqlite.result_hash


def test_query_errors_carry_the_server_message_without_our_cursor_wrapper(chinook_url, executor_factory):
    result = executor_factory(chinook_url).execute("SELECT nme FROM artist")
    assert result.status == "error"
    assert result.error.startswith("UndefinedColumn: column \"nme\" does not exist")
    assert "DECLARE" not in result.error and "\n" not in result.error


def test_libpq_environment_fills_in_what_the_url_leaves_out(chinook_url, executor_factory, monkeypatch):
    monkeypatch.setenv("PGHOST", fx.PG_HOST)
    monkeypatch.setenv("PGPORT", str(fx.PG_PORT))
    monkeypatch.setenv("PGUSER", fx.PG_USER)
    executor = executor_factory("postgresql:///chinook")
    executor.check()
    assert executor.execute("SELECT count(*) FROM artist").row_count == 1


def test_the_password_argument_is_used_and_never_shown(executor_factory):
    executor = executor_factory("postgresql://bob@127.0.0.1:1/nowhere", password="hunter2-secret")
    assert executor._connect_kwargs()["password"] == "hunter2-secret"
    with pytest.raises(DatabaseUnavailable) as raised:
        executor.check()
    assert "hunter2" not in str(raised.value) and "127.0.0.1" in str(raised.value)


def test_a_killed_connection_is_replaced_and_the_query_retried(hostile_url, executor_factory):
    executor = executor_factory(hostile_url, max_connections=2)
    assert executor.execute("SELECT count(*) FROM accounts").status == "ok"
    with fx.pg_connect() as conn:
        killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name = 'sqlpairs' AND datname = %s", (fx.HOSTILE_DB,)).fetchone()[0]
    assert killed >= 1
    result = executor.execute("SELECT count(*) FROM accounts")
    assert (result.status, result.row_count) == ("ok", 1)


def test_a_database_that_stays_down_fails_fast_after_bounded_retries(executor_factory, monkeypatch):
    monkeypatch.setattr(pg_module, "CONNECT_TIMEOUT_S", 1)
    executor = executor_factory(CLOSED_PORT_URL)
    with pytest.raises(DatabaseUnavailable) as first:
        executor.execute("SELECT 1")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        executor.execute("SELECT 2")
    assert time.monotonic() - started < 0.5  # known down: no new connection attempts
    assert "hunter2" not in str(first.value) and "bob:***@127.0.0.1:1" in str(first.value)


# --- a hostile corpus, as superuser ---------------------------------------------------------------

#: Statements that would change the database, the server or its files if they ran as written.
HOSTILE = (
    "INSERT INTO accounts VALUES (1000, 'mallory', 1)",
    "UPDATE accounts SET balance = 0",
    "DELETE FROM accounts",
    "TRUNCATE big",
    "DROP TABLE accounts",
    "CREATE TABLE pwned (a int)",
    "ALTER TABLE accounts ADD COLUMN pwned int",
    "CREATE INDEX pwned_idx ON big (payload)",
    "GRANT ALL ON accounts TO PUBLIC",
    "CREATE ROLE mallory SUPERUSER LOGIN",
    "ALTER ROLE postgres SET work_mem = '1GB'",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "COMMENT ON TABLE accounts IS 'pwned'",
    "VACUUM FULL accounts",
    "ANALYZE accounts",
    "COPY accounts TO '/tmp/sqlpairs_hostile_copy.csv'",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/sqlpairs_hostile_program'",
    "COPY accounts FROM '/etc/hostname'",
    "SELECT lo_import('/etc/hostname')",
    "SELECT lo_from_bytea(0, 'pwned')",
    "SELECT lo_export(1, '/tmp/sqlpairs_hostile_lo')",
    "SELECT nextval('ticket_seq')",
    "SELECT setval('ticket_seq', 1000)",
    "SELECT * INTO pwned FROM accounts",
    "CREATE TEMP TABLE pwned AS SELECT 1",
    "SELECT * FROM accounts FOR UPDATE",
    "WITH gone AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM gone",
    "WITH moved AS (UPDATE accounts SET balance = -1 RETURNING id) SELECT * FROM moved",
    "SELECT 1; DELETE FROM accounts",
    "SELECT 1; COMMIT; DELETE FROM accounts",
    "COMMIT; DELETE FROM accounts",
    "ROLLBACK; UPDATE accounts SET balance = 0",
    "BEGIN READ WRITE; DELETE FROM accounts; COMMIT",
    "SET ROLE sqlpairs_nobody",
    "SET SESSION AUTHORIZATION sqlpairs_nobody",
    "SET default_transaction_read_only = off",
    "RESET ALL",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT query_to_xml('DELETE FROM accounts RETURNING id', true, false, '')",
    "DO $$ BEGIN DELETE FROM accounts; END $$",
    "CREATE FUNCTION pwned() RETURNS int LANGUAGE sql AS 'DELETE FROM accounts RETURNING 1'",
    "PREPARE pwned AS DELETE FROM accounts",
    "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE",
    "REFRESH MATERIALIZED VIEW rich",
    "SELECT sqlpairs_write()",
    "SELECT sqlpairs_ddl()",
    "SELECT pg_sleep(60)",
    "SELECT count(*) FROM big a, big b, big c",
)
PROBE_FILES = ("/tmp/sqlpairs_hostile_copy.csv", "/tmp/sqlpairs_hostile_program", "/tmp/sqlpairs_hostile_lo")


@pytest.fixture
def untouched(hostile_url):
    """Fail unless the hostile database, the server's settings and the probe files are exactly as before."""
    for path in PROBE_FILES:
        if os.path.exists(path):
            os.remove(path)
    before = fx.database_fingerprint(fx.HOSTILE_DB)
    server_before = fx.server_fingerprint()
    yield
    assert fx.database_fingerprint(fx.HOSTILE_DB) == before
    assert fx.server_fingerprint() == server_before
    assert [path for path in PROBE_FILES if os.path.exists(path)] == []


def test_the_session_itself_refuses_every_write_even_without_the_guard(hostile_url, executor_factory, untouched):
    """The executor is called directly, skipping the sqlglot guard: PostgreSQL must refuse on its own."""
    executor = executor_factory(hostile_url, timeout_s=1)
    outcomes = {sql: executor.execute(sql) for sql in HOSTILE}
    # These run even in a READ ONLY transaction, and nothing of them survives the ROLLBACK:
    # settings and large objects are transactional (the fixture checks both).
    allowed = {"SELECT set_config('default_transaction_read_only', 'off', false)",
               "SELECT lo_import('/etc/hostname')", "SELECT lo_from_bytea(0, 'pwned')"}
    assert {sql: r.status for sql, r in outcomes.items() if r.status == "ok"} == {sql: "ok" for sql in allowed}
    assert "read-only transaction" in outcomes["SELECT sqlpairs_write()"].error
    assert "read-only transaction" in outcomes["SELECT sqlpairs_ddl()"].error
    assert outcomes["SELECT pg_sleep(60)"].status == "timeout"
    assert outcomes["SELECT count(*) FROM big a, big b, big c"].status == "timeout"
    after = executor.execute("SELECT current_setting('transaction_read_only'), current_setting('statement_timeout')")
    assert after.result_hash == result_hash(2, [("on", "1s")], ordered=False)


def test_a_hostile_corpus_through_the_pipeline_changes_nothing(hostile_url, tmp_path, untouched):
    corpus = write_jsonl(tmp_path / "hostile.jsonl", [{"sql": sql} for sql in HOSTILE] + [
        {"sql": "SELECT pg_read_file('/etc/hostname')"},
        {"sql": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"},
        {"sql": "SELECT pg_advisory_lock(42)"},
        {"sql": "SELECT count(*) FROM accounts"},
    ])
    pairs, dead, report = run_job(tmp_path / "hostile", "--sql_logs", corpus, "--database", hostile_url,
                                  "--timeout_s", "1", "--keep_failures", "--dedup", "none")
    assert report["accounting"]["problems"] == []
    assert len(pairs) + len(dead) == len(HOSTILE) + 4
    executed = {p["sql"]: p["execution"]["status"] for p in pairs}
    assert executed["SELECT count(*) FROM accounts"] == "ok"
    assert executed["SELECT count(*) FROM big a, big b, big c"] == "timeout"
    # The guard cannot see inside a function; the read-only session stops the write.
    assert executed["SELECT sqlpairs_write()"] == executed["SELECT sqlpairs_ddl()"] == "error"
    assert set(executed.values()) <= {"ok", "timeout", "error", "refused"}
    assert {sql for sql, status in executed.items() if status == "ok"} == {"SELECT count(*) FROM accounts"}
    refused_by_guard = {d["record"]["sql"] for d in dead if d["stage"] in ("safety", "parse")}
    assert {"SELECT pg_read_file('/etc/hostname')", "SELECT pg_sleep(60)", "SET ROLE sqlpairs_nobody",
            "SELECT pg_advisory_lock(42)", "SELECT 1; DELETE FROM accounts"} <= refused_by_guard


# --- faults ------------------------------------------------------------------------------------------

def _restart_when_busy(done: threading.Event, restarted: list) -> None:
    """Restart PostgreSQL as soon as the job has queries running on it."""
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline:
        try:
            with fx.pg_connect() as conn:
                # one of the job's own queries (its DECLARE, or the FETCH that runs it), not the start-up
                # connection check: a restart before any query starts cuts nothing
                busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sqlpairs' "
                                    "AND state = 'active' AND (query LIKE '%JOIN big b%' OR query LIKE 'FETCH %')"
                                    ).fetchone()[0]
        except psycopg.Error:
            busy = 0
        if busy:
            try:
                fx.restart_postgres()
                restarted.append("restarted")
            except Exception as error:  # noqa: BLE001 - reported by the test, not lost in this thread
                restarted.append(f"restart failed: {error!r}")
            return
        time.sleep(0.05)


def test_a_restart_mid_run_loses_nothing(hostile_url, tmp_path, caplog):
    queries = [{"sql": f"SELECT count(*), min(a.payload) FROM big a JOIN big b ON a.id = b.id WHERE a.id % {k} = 0"}
               for k in range(2, 1202)]
    corpus = write_jsonl(tmp_path / "busy.jsonl", queries)
    done, restarted = threading.Event(), []
    watcher = threading.Thread(target=_restart_when_busy, args=(done, restarted), daemon=True)
    watcher.start()
    try:
        pairs, dead, report = run_job(tmp_path / "restart", "--sql_logs", corpus, "--database", hostile_url,
                                      "--max_connections", "4", "--dedup", "none", "--timeout_s", "10")
    finally:
        done.set()
        watcher.join(timeout=150)
        fx.ensure_postgres_running()
    assert restarted == ["restarted"], restarted or "the job finished before PostgreSQL could be restarted under it"
    assert any("connection lost" in r.getMessage() for r in caplog.records), "no query was cut by the restart"
    assert len(pairs) + len(dead) == len(queries)
    assert {p["execution"]["status"] for p in pairs} == {"ok"}
    assert {(d["stage"], d["reason"]) for d in dead} <= {("execute", "database_unavailable")}
    assert len(pairs) > 0 and report["accounting"]["problems"] == []


def test_records_for_a_database_that_is_down_become_dead_letters(hostile_url, tmp_path, monkeypatch):
    """A ``{db_id}`` template is not checked at start: an unreachable database costs dead letters, not the run."""
    monkeypatch.setattr(pg_module, "CONNECT_TIMEOUT_S", 1)
    rows = [{"sql": f"SELECT {i}", "db_id": "sqlpairs_absent"} for i in range(20)]
    rows.append({"sql": "SELECT count(*) FROM accounts", "db_id": fx.HOSTILE_DB})
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    template = f"postgresql://{fx.PG_USER}:hunter2-secret@{fx.PG_HOST}:{fx.PG_PORT}/{{db_id}}"
    pairs, dead, _ = run_job(tmp_path / "down", "--seed_pairs", seeds, "--db_id_field", "db_id", "--database", template)
    assert [(p["db_id"], p["execution"]["status"]) for p in pairs] == [(fx.HOSTILE_DB, "ok")]
    assert len(dead) == 20 and {(d["stage"], d["reason"]) for d in dead} == {("execute", "database_unavailable")}
    assert "sqlpairs_absent" in dead[0]["detail"]
    assert not any("hunter2" in json.dumps(d) for d in dead)


def test_an_unreachable_database_at_start_is_one_redacted_line_and_exit_2(tmp_path, capsys, monkeypatch):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"sql": "SELECT 1"}])
    monkeypatch.setenv("SQLPAIRS_TEST_PASSWORD", "env-secret-pw")
    from_env = ["--database_password_env", "SQLPAIRS_TEST_PASSWORD"]
    for database, extra in ((CLOSED_PORT_URL, []), ("postgresql://bob@127.0.0.1:1/nowhere", from_env)):
        status = main(["run", "--seed_pairs", seeds, "--database", database, *extra, "--output", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert status == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("sqlpairs: error: database unavailable")
        assert "bob" in lines[0] and "hunter2" not in err and "env-secret-pw" not in err
