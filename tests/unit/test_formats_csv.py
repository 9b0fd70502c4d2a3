"""Tests for transforms.formats.csv_file: CSV files with a header row."""

from __future__ import annotations

import io

import pytest

from transforms.formats import RawPair, ReadReject
from transforms.formats.csv_file import parse_csv


def parse(data: bytes, path: str = "q.csv", **options) -> list:
    return list(parse_csv(io.BytesIO(data), path, **options))


def reasons(items) -> list:
    return [(i.origin, i.reason) if isinstance(i, ReadReject) else (i.origin, "ok") for i in items]


def test_record_becomes_a_pair_with_named_columns_and_extra():
    data = b"sql,question,db,user\nSELECT 1,One?,shop,ann\n"
    (pair,) = parse(data, question_field="question", db_id_field="db")
    assert pair == RawPair("SELECT 1", "One?", (), True, "shop", "log", "q.csv:2", {"user": "ann"})


def test_embedded_newlines_and_quotes_keep_record_start_lines():
    data = (b'sql,question\n'
            b'"SELECT ""a"",\n  b\nFROM t",first\n'
            b'SELECT 2,"two\nlines"\n'
            b'SELECT 3,third\n')
    items = parse(data, question_field="question")
    assert [(p.sql, p.question, p.origin) for p in items] == [
        ('SELECT "a",\n  b\nFROM t', "first", "q.csv:2"),
        ("SELECT 2", "two\nlines", "q.csv:5"),
        ("SELECT 3", "third", "q.csv:7"),
    ]


def test_missing_column_is_one_reject_for_the_file():
    assert reasons(parse(b"query,question\nSELECT 1,x\n")) == [("q.csv", "missing_column:sql")]


def test_missing_optional_columns_give_pairs_without_them():
    (pair,) = parse(b"sql\nSELECT 1\n", question_field="title", db_id_field="db_id", source="seed")
    assert (pair.sql, pair.question, pair.db_id, pair.origin) == ("SELECT 1", None, None, "q.csv:2")


def test_record_with_the_wrong_number_of_fields_is_rejected():
    data = b"sql,question\nSELECT 1,a,extra\nSELECT 2\nSELECT 3,c\n"
    assert reasons(parse(data)) == [("q.csv:2", "wrong_field_count"), ("q.csv:3", "wrong_field_count"),
                                    ("q.csv:4", "ok")]


def test_record_that_is_not_utf8_is_rejected_and_reading_goes_on():
    data = b"sql,question\nSELECT 1,caf\xe9\nSELECT 2,ok\n"
    assert reasons(parse(data, question_field="question")) == [("q.csv:2", "not_utf8"), ("q.csv:3", "ok")]


def test_nul_in_sql_is_rejected():
    assert reasons(parse(b"sql\nSELECT \x00\nSELECT 2\n")) == [("q.csv:2", "nul_byte"), ("q.csv:3", "ok")]


def test_blank_sql_cell_is_empty_sql():
    assert reasons(parse(b"sql,question\n,why\n")) == [("q.csv:2", "empty_sql")]


def test_empty_question_cell_is_no_question():
    (pair,) = parse(b"sql,question\nSELECT 1,\n", question_field="question")
    assert pair.question is None


@pytest.mark.parametrize("cell, expected", [("false", False), ("0", False), ("TRUE", True), ("", True)])
def test_success_column_accepts_csv_words(cell, expected):
    (pair,) = parse(f"sql,success\nSELECT 1,{cell}\n".encode())
    assert pair.success is expected


def test_field_over_max_sql_bytes_is_sql_too_long_and_reading_goes_on():
    data = b'sql\n"' + b"x" * 200_000 + b'"\nSELECT 2\n'
    assert reasons(parse(data, max_sql_bytes=100_000)) == [("q.csv:2", "sql_too_long"), ("q.csv:3", "ok")]
    assert reasons(parse(data)) == [("q.csv:2", "ok"), ("q.csv:3", "ok")]  # the default is 1 MiB


def test_quoted_field_over_the_limit_across_lines_is_sql_too_long():
    data = b'sql\n"' + b"x\n" * 600 + b'"\nSELECT 2\n'
    assert reasons(parse(data, max_sql_bytes=1000))[0] == ("q.csv:2", "sql_too_long")


def test_sql_cell_over_the_limit_in_utf8_bytes_is_sql_too_long():
    data = "sql\n" + "é" * 600 + "\nSELECT 2\n"  # 600 characters, 1,200 bytes
    assert reasons(parse(data.encode(), max_sql_bytes=1000)) == [("q.csv:2", "sql_too_long"), ("q.csv:3", "ok")]


def test_byte_order_mark_crlf_and_blank_lines_are_handled():
    items = parse(b"\xef\xbb\xbfsql,question\r\nSELECT 1,a\r\n\r\nSELECT 2,b\r\n", question_field="question")
    assert [(p.sql, p.question, p.origin) for p in items] == [("SELECT 1", "a", "q.csv:2"),
                                                              ("SELECT 2", "b", "q.csv:4")]


def test_other_delimiters_are_an_option():
    (pair,) = parse(b"sql\tquestion\nSELECT 1, 2\tTwo numbers?\n", question_field="question", delimiter="\t")
    assert (pair.sql, pair.question) == ("SELECT 1, 2", "Two numbers?")


def test_empty_file_yields_nothing():
    assert parse(b"") == []


def test_header_only_file_yields_nothing():
    assert parse(b"sql,question\n") == []


def test_csv_does_not_close_the_stream():
    stream = io.BytesIO(b"sql\nSELECT 1\n")
    list(parse_csv(stream, "q.csv"))
    assert not stream.closed
