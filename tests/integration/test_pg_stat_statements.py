"""pg_stat_statements: a real workload on a real PostgreSQL, read live and from exports, then instantiated.

The extension needs ``shared_preload_libraries = 'pg_stat_statements'``; on a fresh
machine the fixture adds it (ALTER SYSTEM, keeping any library already listed) and
restarts the cluster once, leaving the server running. Then, in our own database
``sqlpairs_pgss``, it creates the extension, clears that database's statistics and
runs a workload of parameterized queries with psycopg, whose server-side binding is
what puts ``$1``, ``$2`` into the view.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.main import main
from tests.fakes.beam_collect import collect
from tests.conftest import make_pipeline
from tests.fakes.db_fixtures import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    _database_comment,
    _load_lock,
    _mark,
    _recreate,
    _unavailable,
    ensure_postgres_running,
    pg_connect,
    require_postgres,
    restart_postgres,
)
from transforms.formats import RawPair, ReadReject
from transforms.formats.pg_stat_statements import parse_pg_stat_statements, stat_row_to_pair
from transforms.ingest.read import ReadSettings, parse_file
from transforms.ingest.read_stat_statements import ReadPgStatStatements

PGSS_DB = "sqlpairs_pgss"
PGSS_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PGSS_DB}"
BARE_DB = "sqlpairs_pgss_bare"  # no extension: for the user error
_SCHEMA = """
CREATE TABLE artist (artist_id int PRIMARY KEY, name text NOT NULL);
INSERT INTO artist SELECT i, 'artist ' || i || CASE WHEN i % 3 = 0 THEN ' band' ELSE ' solo' END
FROM generate_series(1, 200) i;
CREATE TABLE track (track_id int PRIMARY KEY, artist_id int NOT NULL REFERENCES artist,
                    title text NOT NULL, milliseconds int NOT NULL, released date NOT NULL);
INSERT INTO track SELECT i, 1 + i % 200, 'song ' || i, 60000 + (i * 7919) % 300000, date '2000-01-01' + i
FROM generate_series(1, 5000) i;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
"""
ARTIST_BY_ID = "SELECT name FROM artist WHERE artist_id = $1"
#: The workload's statements as the view stores them, and how often each ran.
WORKLOAD = {
    ARTIST_BY_ID: 30,
    "SELECT title, milliseconds FROM track WHERE milliseconds BETWEEN $1 AND $2 ORDER BY title LIMIT $3": 5,
    "SELECT count(*) FROM artist WHERE name LIKE $1": 2,
    "SELECT t.title FROM track t JOIN artist a ON a.artist_id = t.artist_id WHERE a.name = $1 AND t.released > $2": 1,
    "SELECT count(*) FROM track": 3,
}


def ensure_pg_stat_statements_loaded() -> None:
    """Load the library at server start if it is not yet (idempotent; restarts the cluster once)."""
    require_postgres()
    from psycopg import sql

    with pg_connect() as conn:
        current = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    libraries = [name.strip().strip('"') for name in current.split(",") if name.strip()]
    if "pg_stat_statements" in libraries:
        return
    with _load_lock(), pg_connect() as conn:
        value = ",".join(libraries + ["pg_stat_statements"])
        conn.execute(sql.SQL("ALTER SYSTEM SET shared_preload_libraries = {}").format(sql.Literal(value)))
    try:
        restart_postgres()
    except Exception as error:  # noqa: BLE001 - cannot restart here (not root, no pg_ctlcluster)
        _unavailable(f"cannot restart PostgreSQL to load pg_stat_statements: {error}")
    ensure_postgres_running()
    with pg_connect() as conn:
        if "pg_stat_statements" not in conn.execute("SHOW shared_preload_libraries").fetchone()[0]:
            pytest.fail("pg_stat_statements is still not loaded after the restart")


def _create_databases() -> None:
    marker = "sqlpairs fixture " + hashlib.sha256(_SCHEMA.encode()).hexdigest()[:16]
    with _load_lock(), pg_connect() as conn:
        if _database_comment(conn, PGSS_DB) != marker:
            _recreate(conn, PGSS_DB)
            with pg_connect(PGSS_DB) as target:
                target.execute(_SCHEMA)
            _mark(conn, PGSS_DB, marker)
        if _database_comment(conn, BARE_DB) is None:
            _recreate(conn, BARE_DB)


def run_workload() -> None:
    """Clear this database's statistics, then run parameterized queries (psycopg binds server-side: $n)."""
    with pg_connect(PGSS_DB) as conn:
        conn.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()), 0)")
        for artist in range(1, 31):
            conn.execute("SELECT name FROM artist WHERE artist_id = %s", (artist,))
        for low in range(5):
            conn.execute("SELECT title, milliseconds FROM track WHERE milliseconds BETWEEN %s AND %s "
                         "ORDER BY title LIMIT %s", (100000 + low, 200000, 10))
        for word in ("%band%", "%solo%"):
            conn.execute("SELECT count(*) FROM artist WHERE name LIKE %s", (word,))
        conn.execute("SELECT t.title FROM track t JOIN artist a ON a.artist_id = t.artist_id "
                     "WHERE a.name = %s AND t.released > %s", ("artist 3 band", datetime.date(2005, 1, 1)))
        for _ in range(3):
            conn.execute("SELECT count(*) FROM track")


@pytest.fixture(scope="module")
def workload():
    ensure_pg_stat_statements_loaded()
    _create_databases()
    run_workload()
    return PGSS_URL


def _view_rows():
    with pg_connect(PGSS_DB) as conn:
        cursor = conn.execute("SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                              "WHERE d.datname = current_database()")
        return dict(cursor.fetchall())


def test_psycopg_workload_lands_in_the_view_with_placeholders(workload):
    rows = _view_rows()
    assert {sql: rows.get(sql) for sql in WORKLOAD} == WORKLOAD


def test_the_live_view_becomes_records_with_frequency_from_calls(workload):
    p = make_pipeline()
    read = p | ReadPgStatStatements(workload)
    by_sql = {r.sql: r for r in collect(p, records=read.records)["records"]}
    record = by_sql[ARTIST_BY_ID]
    assert record.frequency == 30 and record.db_id == PGSS_DB and record.source == "log"
    assert record.extra["calls"] == "30" and float(record.extra["mean_exec_time_ms"]) >= 0
    assert record.origin.startswith(f"pg_stat_statements@{PGSS_DB}#")
    assert by_sql["SELECT count(*) FROM artist WHERE name LIKE $1"].frequency == 2
    assert set(by_sql) <= set(_view_rows())  # only this database's statements


_OWN_ROWS = "SELECT s.*, d.datname FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid " \
            "WHERE d.datname = current_database()"


def test_a_csv_export_of_the_view_reads_like_the_view(workload):
    with pg_connect(PGSS_DB) as conn:
        buffer = io.BytesIO()
        with conn.cursor().copy(f"COPY ({_OWN_ROWS}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                buffer.write(chunk)
    items = list(parse_pg_stat_statements(io.BytesIO(buffer.getvalue()), "pgss.csv"))
    pairs = {i.sql: i for i in items if isinstance(i, RawPair)}
    assert not [i for i in items if isinstance(i, ReadReject)]
    assert pairs[ARTIST_BY_ID].extra["frequency"] == "30" and pairs[ARTIST_BY_ID].db_id == PGSS_DB
    assert len(pairs) == len(list(csv.reader(io.StringIO(buffer.getvalue().decode())))) - 1  # every row, no header
    assert {sql: int(pairs[sql].extra["calls"]) for sql in WORKLOAD} == WORKLOAD
    # the same file through the reader's auto-detection (a .csv whose header has query and calls)
    detected = list(parse_file(io.BufferedReader(io.BytesIO(buffer.getvalue())), "pgss.csv", "sql_logs",
                               ReadSettings()))
    assert {i.sql for i in detected if isinstance(i, RawPair)} == set(pairs)


def test_a_jsonl_export_of_the_view_reads_like_the_view(workload):
    with pg_connect(PGSS_DB) as conn:
        lines = [json.dumps(row[0]) for row in conn.execute(f"SELECT row_to_json(x) FROM ({_OWN_ROWS}) x")]
    items = list(parse_pg_stat_statements(io.BytesIO(("\n".join(lines) + "\n").encode()), "pgss.jsonl"))
    assert all(isinstance(i, RawPair) for i in items) and len(items) == len(lines)
    calls = {i.sql: int(i.extra["calls"]) for i in items}
    assert {sql: calls[sql] for sql in WORKLOAD} == WORKLOAD


def test_the_whole_job_instantiates_the_view_on_its_database(workload, tmp_path):
    out = tmp_path / "pgss"
    assert main(["run", "--sql_logs", "pg_stat_statements", "--database", workload, "--output", str(out),
                 "--instances_per_template", "2", "--seed", "11"]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "pgss-00000-of-00001.jsonl").read_text().splitlines()]
    report = json.loads((tmp_path / "pgss-report.json").read_text())
    assert report["ok"], report["accounting"]
    by_template = {}
    for pair in pairs:
        by_template.setdefault(pair["template_fingerprint"], []).append(pair)
    artist = [p for p in pairs if p["normalized_sql"].startswith("SELECT name FROM artist WHERE artist_id = ")]
    assert len(artist) == 2 and len(by_template[artist[0]["template_fingerprint"]]) == 2
    for pair in artist:
        assert pair["frequency"] == 30 and pair["evolution"] == "instantiate"
        assert pair["execution"]["status"] == "ok" and pair["execution"]["row_count"] == 1
        assert 1 <= int(pair["parameters"][0]["value"]) <= 200
    ranged = [p for p in pairs if "BETWEEN" in p["normalized_sql"]]
    assert len(ranged) == 2 and all(p["execution"]["row_count"] > 0 for p in ranged)
    joined = [p for p in pairs if "JOIN artist" in p["normalized_sql"]]
    assert joined and all(p["execution"]["status"] == "ok" for p in joined)
    assert any(p["normalized_sql"] == "SELECT COUNT(*) FROM track" and p["frequency"] == 3 for p in pairs)
    assert report["instantiate"]["templates"] >= 4 and report["accounting"]["records_added"] >= 4
    # the reset call the workload started with is a statement too: refused, as a dead letter
    assert report["rejections"]["safety"]


def test_a_template_without_a_comparable_column_is_checked_on_postgres_without_values(workload, tmp_path):
    log = tmp_path / "view.csv"
    log.write_text('query,calls\n"SELECT title FROM track WHERE milliseconds > $1 + 1000",7\n'
                   '"SELECT title FROM track WHERE no_such = $1",2\n')
    out = tmp_path / "checked"
    assert main(["run", "--sql_logs", str(log), "--database", workload, "--output", str(out),
                 "--keep_failures"]) == 0
    pairs = {json.loads(line)["normalized_sql"]: json.loads(line)
             for line in (tmp_path / "checked-00000-of-00001.jsonl").read_text().splitlines()}
    unfilled = pairs["SELECT title FROM track WHERE milliseconds > $1 + 1000"]
    assert unfilled["execution"]["status"] == "skipped" and unfilled["execution"]["columns"] == ["title"]
    assert unfilled["frequency"] == 7
    broken = pairs["SELECT title FROM track WHERE no_such = $1"]
    assert broken["execution"]["status"] == "error" and "no_such" in broken["execution"]["error"]


def test_a_database_without_the_extension_is_a_one_line_user_error(workload, tmp_path, capsys):
    url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{BARE_DB}"
    assert main(["run", "--sql_logs", "pg_stat_statements", "--database", url, "--output", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert "CREATE EXTENSION pg_stat_statements" in error and len(error.splitlines()) == 1


# --- the parser on its own ---------------------------------------------------------------------

def test_rows_the_parser_cannot_use_are_rejected_with_a_reason():
    assert stat_row_to_pair({"query": "<insufficient privilege>", "calls": 3}, "v#1").reason == \
        "insufficient_privilege"
    assert stat_row_to_pair({"query": "SELECT 1", "calls": "many"}, "v#2").reason == "wrong_type:calls"
    assert stat_row_to_pair({"calls": 3}, "v#3").reason == "missing_field:query"
    items = list(parse_pg_stat_statements(io.BytesIO(b"sql,calls\nSELECT 1,2\n"), "f.csv"))
    assert [i.reason for i in items] == ["missing_column:query"]


def test_zero_calls_still_count_once_and_pg12_column_names_are_read():
    pair = stat_row_to_pair({"query": "SELECT 1", "calls": 0, "mean_time": 1.5, "rows": 0}, "v#1")
    assert pair.extra == {"frequency": "1", "calls": "0", "mean_exec_time_ms": "1.5", "rows": "0"}


_FRAGMENTS = st.sampled_from([b"\n", b",", b'"', b"{", b"}", b"[", b"]", b":", b"\xff", b"\x00",
                              b"query,calls,mean_exec_time,rows\n", b'{"query": "SELECT $1", "calls": 2}',
                              b'"SELECT 1",3,0.5,1\n', b"<insufficient privilege>", b"-1", b"1e3"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), st.lists(_FRAGMENTS, max_size=30).map(b"".join)))
def test_the_parser_never_raises_on_hostile_bytes(data):
    for item in parse_pg_stat_statements(io.BytesIO(data), "f.csv"):
        assert isinstance(item, (RawPair, ReadReject)) and item.origin.startswith("f.csv")
        if isinstance(item, RawPair):
            item.sql.encode("utf-8")
            assert item.sql == item.sql.strip() and "\x00" not in item.sql and int(item.extra["frequency"]) >= 1
            assert all(isinstance(v, str) for v in item.extra.values())
