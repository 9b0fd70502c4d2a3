"""Tests for transforms.formats.parquet_file: parquet rows read batch by batch."""

from __future__ import annotations

import datetime
import io

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.formats import RawPair, ReadReject
from transforms.formats.parquet_file import parse_parquet


def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def parse(data: bytes, path: str = "q.parquet", **options) -> list:
    return list(parse_parquet(io.BytesIO(data), path, **options))


def reasons(items) -> list:
    return [(i.origin, i.reason) if isinstance(i, ReadReject) else (i.origin, "ok") for i in items]


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, buffer):
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_row_becomes_a_pair_with_named_columns_and_extra():
    table = pa.table({"sql": ["SELECT 1"], "question": ["One?"], "db": ["shop"], "ms": [1.5],
                      "at": [datetime.datetime(2024, 5, 2, 10, 15)]})
    (pair,) = parse(parquet_bytes(table), question_field="question", db_id_field="db")
    assert pair == RawPair("SELECT 1", "One?", (), True, "shop", "log", "q.parquet#0",
                           {"ms": "1.5", "at": "2024-05-02T10:15:00"})


def test_row_origins_run_across_batches():
    table = pa.table({"sql": [f"SELECT {i}" for i in range(5)]})
    items = parse(parquet_bytes(table, row_group_size=2), batch_rows=2)
    assert [p.origin for p in items] == [f"q.parquet#{i}" for i in range(5)]


def test_missing_column_is_one_reject_for_the_file():
    assert reasons(parse(parquet_bytes(pa.table({"query": ["SELECT 1"]})))) == [("q.parquet", "missing_column:sql")]


def test_bytes_that_are_not_parquet_are_one_reject_for_the_file():
    assert reasons(parse(b"sql\nSELECT 1\n")) == [("q.parquet", "parquet_error")]


def test_empty_file_yields_nothing():
    assert parse(b"") == []


def test_null_sql_is_missing_field():
    assert reasons(parse(parquet_bytes(pa.table({"sql": ["SELECT 1", None]})))) == [
        ("q.parquet#0", "ok"), ("q.parquet#1", "missing_field:sql")]


def test_sql_of_the_wrong_type_is_rejected():
    assert reasons(parse(parquet_bytes(pa.table({"sql": [1]})))) == [("q.parquet#0", "wrong_type:sql")]


def test_binary_sql_is_decoded_as_strict_utf8():
    table = pa.table({"sql": pa.array([b"SELECT 1", b"SELECT '\xff'"], type=pa.binary())})
    assert reasons(parse(parquet_bytes(table))) == [("q.parquet#0", "ok"), ("q.parquet#1", "not_utf8")]


def test_success_column_is_honoured():
    table = pa.table({"sql": ["SELECT 1", "SELECT 2", "SELECT 3"], "success": [True, False, None]})
    assert [p.success for p in parse(parquet_bytes(table))] == [True, False, True]


def test_stream_that_cannot_seek_is_read_whole():
    data = parquet_bytes(pa.table({"sql": ["SELECT 1"]}))
    (pair,) = list(parse_parquet(io.BufferedReader(_Unseekable(data)), "q.parquet"))
    assert pair.sql == "SELECT 1"


def test_truncated_file_is_one_reject_for_the_file():
    data = parquet_bytes(pa.table({"sql": ["SELECT 1"] * 100}))
    assert reasons(parse(data[: len(data) // 2])) == [("q.parquet", "parquet_error")]
