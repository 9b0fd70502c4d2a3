"""Tests for transforms.formats.sql_file: statements split with sqlglot's tokenizer."""

from __future__ import annotations

import io
import os

import pytest
from pathlib import Path
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.formats import RawPair, ReadReject
from transforms.formats.sql_file import parse_sql_file, split_statements
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA


def shared(*parts: str) -> Path:
    """A file of the shared data set; skipped when absent (failed when CI=true)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data file {path} is missing (CI=true)")
        pytest.skip(f"shared data file {path} is not present on this machine")
    return path


def parse(data: bytes, path: str = "q.sql", **options) -> list:
    return list(parse_sql_file(io.BytesIO(data), path, **options))


def pairs(data: bytes, **options) -> list[RawPair]:
    items = parse(data, **options)
    assert all(isinstance(i, RawPair) for i in items), items
    return items


def test_splits_on_top_level_semicolons_only():
    script = (
        "SELECT 'a;b' AS x;\n"
        'SELECT "odd;name" FROM t;\n'
        "SELECT 1 /* not; here */ + 2;\n"
        "SELECT 3 -- nor; here\n;\n"
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;\n"
        "SELECT $tag$ ; $tag$;\n"
    )
    sqls = [p.sql for p in pairs(script.encode(), dialect="postgres")]
    assert sqls == [
        "SELECT 'a;b' AS x",
        'SELECT "odd;name" FROM t',
        "SELECT 1 /* not; here */ + 2",
        "SELECT 3",
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql",
        "SELECT $tag$ ; $tag$",
    ]


def test_keeps_statement_text_verbatim_with_its_start_line():
    script = b"\n\nSELECT a,\n       b   -- the b column\nFROM   t\nWHERE  x = 'y' ;\n  select 2;"
    items = pairs(script)
    assert [(p.sql, p.origin) for p in items] == [
        ("SELECT a,\n       b   -- the b column\nFROM   t\nWHERE  x = 'y'", "q.sql:3"),
        ("select 2", "q.sql:7"),
    ]


def test_records_source_log_and_no_question():
    (item,) = pairs(b"SELECT 1;")
    assert (item.source, item.question, item.context, item.success, item.db_id) == ("log", None, (), True, None)


def test_comments_before_and_after_the_tokens_are_not_part_of_the_statement():
    assert [p.sql for p in pairs(b"/* lead */ SELECT 1 -- trail\n;")] == ["SELECT 1"]


def test_comment_lines_directly_above_go_to_extra():
    script = b"-- Top customers\n-- by revenue\nSELECT 1;\n\n-- detached\n\nSELECT 2;\nSELECT 3; -- about 3\nSELECT 4;"
    comments = [p.extra.get("comment") for p in pairs(script)]
    assert comments == ["Top customers\nby revenue", None, None, None]


def test_last_statement_needs_no_semicolon():
    assert [p.sql for p in pairs(b"SELECT 1;\nSELECT 2\n")] == ["SELECT 1", "SELECT 2"]


def test_empty_statements_and_comment_only_files_yield_nothing():
    assert parse(b";;\n ;\n-- just a comment\n/* and a block */\n") == []


def test_empty_file_yields_nothing():
    assert parse(b"") == []


def test_ten_thousand_statements_come_out_with_their_lines():
    script = "".join(f"-- query {i}\nSELECT id, 'v;{i}'\nFROM t{i};\n" for i in range(10_000)).encode()
    items = pairs(script)
    assert len(items) == 10_000
    assert [p.origin for p in items] == [f"q.sql:{3 * i + 2}" for i in range(10_000)]
    assert items[9_999].sql == "SELECT id, 'v;9999'\nFROM t9999"
    assert items[9_999].extra == {"comment": "query 9999"}


def test_chunk_boundaries_inside_strings_do_not_split():
    script = "".join(f"SELECT 'line one;\nline two;\nline three' AS s{i};\n" for i in range(50)).encode()
    items = pairs(script, chunk_chars=16)
    assert [p.origin for p in items] == [f"q.sql:{3 * i + 1}" for i in range(50)]
    assert all(p.sql.startswith("SELECT 'line one;\nline two;\nline three'") for p in items)


def test_one_enormous_line_is_split_in_pieces():
    script = ("SELECT 1;" * 5000).encode()
    items = pairs(script, chunk_chars=1000)
    assert len(items) == 5000 and {p.origin for p in items} == {"q.sql:1"}


def test_bytes_that_are_not_utf8_reject_only_their_statement():
    items = parse(b"SELECT 1;\nSELECT '\xff\xfe';\nSELECT 3;")
    assert [type(i).__name__ for i in items] == ["RawPair", "ReadReject", "RawPair"]
    assert items[1][:2] == ("q.sql:2", "not_utf8")


def test_nul_byte_rejects_only_its_statement():
    items = parse(b"SELECT 1;\nSELECT '\x00';\nSELECT 3;")
    assert [(i.origin, getattr(i, "reason", "ok")) for i in items] == [
        ("q.sql:1", "ok"), ("q.sql:2", "nul_byte"), ("q.sql:3", "ok")]


def test_unterminated_string_rejects_one_statement_and_splitting_resumes():
    items = parse(b"SELECT 1;\nSELECT 'oops;\nSELECT 2;\nSELECT 3;\n")
    assert [(i.origin, getattr(i, "reason", i.sql if isinstance(i, RawPair) else "")) for i in items] == [
        ("q.sql:1", "SELECT 1"),
        ("q.sql:2", "tokenize_error"),
        ("q.sql:3", "SELECT 2"),
        ("q.sql:4", "SELECT 3"),
    ]


def test_unterminated_string_at_the_end_rejects_the_rest():
    items = parse(b"SELECT 1;\nSELECT 'never closed\nFROM t")
    assert [getattr(i, "reason", "ok") for i in items] == ["ok", "tokenize_error"]
    assert items[1].origin == "q.sql:2"


def test_statement_longer_than_the_limit_is_rejected():
    script = b"SELECT 1;\nSELECT\n" + b"  x,\n" * 400 + b"  y;\nSELECT 3;\n"
    items = parse(script, max_sql_bytes=1000, chunk_chars=200)
    assert [getattr(i, "reason", "ok") for i in items] == ["ok", "sql_too_long", "ok"]
    assert items[1].origin == "q.sql:2" and items[2].sql == "SELECT 3"


def test_psql_meta_commands_are_dropped():
    script = b"\\set ON_ERROR_STOP on\n\\c chinook;\nSELECT 1;\n\\echo done\nSELECT 2;"
    assert [(p.sql, p.origin) for p in pairs(script)] == [("SELECT 1", "q.sql:3"), ("SELECT 2", "q.sql:5")]


def test_copy_from_stdin_data_is_skipped():
    script = b"COPY t (a, b) FROM stdin;\n1\tit's;\n2\t\\N\n\\.\nSELECT 1;\n"
    assert [(p.sql, p.origin) for p in pairs(script, dialect="postgres")] == [
        ("COPY t (a, b) FROM stdin", "q.sql:1"), ("SELECT 1", "q.sql:5")]


def test_tsql_go_lines_end_statements():
    script = b"SELECT [a;b] FROM t\nGO\nSELECT 2\ngo 5\nSELECT 3"
    assert [(p.sql, p.origin) for p in pairs(script, dialect="tsql")] == [
        ("SELECT [a;b] FROM t", "q.sql:1"), ("SELECT 2", "q.sql:3"), ("SELECT 3", "q.sql:5")]


def test_mysql_backticks_follow_the_dialect():
    assert [p.sql for p in pairs(b"SELECT `a;b` FROM t; SELECT 2", dialect="mysql")] == [
        "SELECT `a;b` FROM t", "SELECT 2"]


def test_unknown_dialect_is_an_error_of_the_caller():
    with pytest.raises(ValueError):
        parse_sql_file(io.BytesIO(b"SELECT 1"), "q.sql", dialect="no-such-dialect")


def test_byte_order_mark_and_crlf_are_handled():
    items = pairs(b"\xef\xbb\xbfSELECT 1;\r\n\r\nSELECT 2;\r\n")
    assert [(p.sql, p.origin) for p in items] == [("SELECT 1", "q.sql:1"), ("SELECT 2", "q.sql:3")]


def test_split_statements_raises_for_untokenizable_text():
    with pytest.raises(ValueError, match="tokenize_error"):
        split_statements("SELECT 'unterminated")


_WORDS = st.sampled_from(["SELECT", "a", "1", "'x;y'", "'it''s'", '"c;d"', "/* ; */", "+", "(b)", "$$;$$", "\n"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_WORDS, min_size=1, max_size=8), min_size=1, max_size=12))
def test_split_recovers_the_statements_it_was_given(statements):
    texts = [" ".join(["SELECT", *words, "1"]) for words in statements]
    script = ";\n".join(texts) + ";\n"
    found = split_statements(script, "postgres")
    assert [s.text for s in found] == texts
    lines = [1]
    for text in texts[:-1]:
        lines.append(lines[-1] + text.count("\n") + 1)
    assert [s.line for s in found] == lines


def test_real_chinook_script_splits_into_its_statements():
    path = shared("chinook", "Chinook_PostgreSql.sql")
    items = list(parse_sql_file(path.open("rb"), "chinook.sql", dialect="postgres"))
    assert all(isinstance(i, RawPair) for i in items)
    assert len(items) == 59  # 60 lines end with ';', one of them is the psql command "\c chinook;"
    assert (items[0].sql, items[0].origin) == ("DROP DATABASE IF EXISTS chinook", "chinook.sql:19")


@pytest.mark.parametrize("name", ["academic", "advising", "atis", "geography", "restaurants", "scholar", "yelp"])
def test_real_pg_dumps_give_verbatim_statements_at_their_lines(name):
    path = shared("defog", "pypi_dumps", f"{name}.sql")
    text = path.read_text(encoding="utf-8")
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    items = list(parse_sql_file(path.open("rb"), path.name, dialect="postgres", chunk_chars=4096))
    assert items and all(isinstance(i, RawPair) for i in items)
    for item in items:
        line = int(item.origin.rsplit(":", 1)[1])
        assert text.startswith(item.sql, text.index(item.sql[:1], starts[line - 1])), item
        assert "\t" not in item.sql.split("\n")[0]  # no COPY data row became a statement
