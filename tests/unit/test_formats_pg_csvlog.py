"""Tests for transforms.formats.pg_csvlog: statements from PostgreSQL csvlog files."""

from __future__ import annotations

import csv
import io

from transforms.formats import RawPair, ReadReject
from transforms.formats.pg_csvlog import CSVLOG_COLUMNS, parse_pg_csvlog
from tests.conftest import TEST_DATA

FIXTURE = TEST_DATA / "formats" / "postgresql-15.csv"


def parse_fixture() -> list:
    return list(parse_pg_csvlog(FIXTURE.open("rb"), "pg.csv"))


def log_lines(*entries: dict, columns=CSVLOG_COLUMNS) -> bytes:
    """csvlog text for entries given as {column: value} (session 's1', LOG severity by default)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for entry in entries:
        entry = {"session_id": "s1", "error_severity": "LOG", "database_name": "db", **entry}
        writer.writerow([entry.get(c, "") for c in columns])
    return out.getvalue().encode()


def parse(data: bytes) -> list:
    return list(parse_pg_csvlog(io.BytesIO(data), "pg.csv"))


def test_fixture_gives_every_statement_once_with_its_outcome():
    assert [(i.origin, i.sql[:40], i.success) for i in parse_fixture()] == [
        ("pg.csv:2", "SELECT count(*) FROM track;", True),
        ("pg.csv:4", "SELECT a.title, count(t.track_id) AS \"tr", True),
        ("pg.csv:11", "SELECT order_id, freight FROM orders WHE", True),
        ("pg.csv:10", "SELECT name FROM artists WHERE artist_id", False),
        ("pg.csv:15", "SELECT customer_id, total FROM invoice W", True),
        ("pg.csv:17", "SELECT * FORM products WHERE discontinue", False),
        ("pg.csv:16", "SELECT genre_id, name FROM genre ORDER B", True),
        ("pg.csv:20", "BEGIN; UPDATE invoice SET total = total ", True),
    ]


def test_statement_keeps_multiline_text_with_quotes_verbatim():
    second = parse_fixture()[1]
    assert second.sql == ('SELECT a.title, count(t.track_id) AS "tracks, total"\nFROM album a\n'
                          "JOIN track t ON t.album_id = a.album_id\nWHERE a.title LIKE '%Rock%'\nGROUP BY a.title;")


def test_database_name_is_the_db_id_and_source_is_log():
    first = parse_fixture()[0]
    assert (first.db_id, first.source, first.question, first.context) == ("chinook", "log", None, ())


def test_bare_duration_line_gives_its_statement_a_duration():
    assert parse_fixture()[0].extra["duration_ms"] == "7.905"


def test_duration_statement_message_is_a_finished_statement():
    pair = parse_fixture()[2]
    assert pair.extra["duration_ms"] == "15.042" and pair.extra["application_name"] == "nightly-report"


def test_error_line_for_the_pending_statement_marks_it_failed():
    failed = parse_fixture()[3]
    assert failed.extra["error"] == 'relation "artists" does not exist' and failed.extra["sql_state"] == "42P01"


def test_error_line_with_an_unlogged_query_is_a_failed_pair_of_its_own():
    failed = parse_fixture()[5]
    assert (failed.origin, failed.extra["sql_state"]) == ("pg.csv:17", "42601")


def test_execute_keeps_prepared_name_parameters_and_query_id():
    extended = parse_fixture()[4]
    assert extended.extra["prepared_statement"] == "<unnamed>"
    assert extended.extra["parameters"] == "$1 = 'Brazil'"
    assert extended.extra["query_id"] == "-4367834597302474127"


def test_parse_and_bind_steps_are_not_statements():
    sqls = [p.sql for p in parse_fixture()]
    assert sqls.count("SELECT customer_id, total FROM invoice WHERE billing_country = $1") == 1


def test_statements_of_interleaved_sessions_are_settled_per_session():
    data = log_lines(
        {"message": "statement: SELECT 1", "session_id": "a"},
        {"message": "statement: SELECT 2", "session_id": "b"},
        {"message": "division by zero", "error_severity": "ERROR", "query": "SELECT 2", "session_id": "b"},
        {"message": "statement: SELECT 3", "session_id": "a"},
    )
    assert [(p.sql, p.success, p.origin) for p in parse(data)] == [
        ("SELECT 2", False, "pg.csv:2"), ("SELECT 1", True, "pg.csv:1"), ("SELECT 3", True, "pg.csv:4")]


def test_lines_that_are_not_statements_are_ignored():
    data = log_lines({"message": "checkpoint starting: time"}, {"message": "connection received: host=x"},
                     {"message": "password authentication failed", "error_severity": "FATAL"})
    assert parse(data) == []


def test_log_with_too_few_columns_is_rejected_per_line():
    assert [(i.origin, i.reason) for i in parse(b"2024-05-02,LOG,statement: SELECT 1\n")] == [
        ("pg.csv:1", "wrong_field_count")]


def test_postgres_13_logs_with_24_columns_are_read():
    (pair,) = parse(log_lines({"message": "statement: SELECT 1"}, columns=CSVLOG_COLUMNS[:24]))
    assert pair.sql == "SELECT 1"


def test_statement_that_is_not_utf8_is_rejected_and_reading_goes_on():
    data = log_lines({"message": "statement: SELECT 'XX'"}, {"message": "statement: SELECT 2", "session_id": "s2"})
    items = parse(data.replace(b"XX", b"\xff\xfe"))
    assert [(i.origin, getattr(i, "reason", "ok")) for i in items] == [("pg.csv:1", "not_utf8"), ("pg.csv:2", "ok")]


def test_nul_in_statement_is_rejected():
    items = parse(log_lines({"message": "statement: SELECT '\x00'"}))
    assert [(i.origin, i.reason) for i in items] == [("pg.csv:1", "nul_byte")]


def test_empty_file_yields_nothing():
    assert parse(b"") == []


def test_every_item_is_a_pair_or_a_reject():
    assert all(isinstance(i, (RawPair, ReadReject)) for i in parse_fixture())
