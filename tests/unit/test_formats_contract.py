"""The contract every parser in transforms.formats keeps, checked on hostile input."""

from __future__ import annotations

import doctest
import importlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transforms.formats as formats
from transforms.formats import PARSERS, SOURCES, RawPair, ReadReject

MODULES = ["shared", "chat", "csv_file", "defog", "jsonl", "parquet_file", "pg_csvlog", "sql_file"]

# Fragments that make random input look like each format often enough to reach deep code.
_FRAGMENTS = st.sampled_from([
    b"\n", b"\r\n", b",", b";", b"'", b'"', b"{", b"}", b"[", b"]", b":", b"\\", b"\x00", b"\xff", b"\xe2\x82",
    b"$$", b"--", b"/*", b"*/", b"SELECT 1", b'{"sql": "SELECT 1"}', b'"role": "user"', b'"content": "Q"',
    b'{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "db_query", "arguments": "{}"}}]}',
    b'"parts": [{"type": "tool-db_query", "input": {"sql": "SELECT 2"}, "state": "output-available"}]',
    b"sql,question\n", b"question,query,db_name\n", b"{a, b}", b"GROUP BY {}", b"statement: ", b"LOG,", b"ERROR,",
    b"COPY t FROM stdin;\n", b"\\.\n", b"PAR1",
])
_INPUT = st.one_of(st.binary(max_size=400), st.lists(_FRAGMENTS, max_size=40).map(b"".join))


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_examples_hold(name):
    module = importlib.import_module(f"transforms.formats.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0


def test_every_format_has_a_parser():
    assert set(PARSERS) == {"sql", "json", "jsonl", "csv", "parquet", "defog", "chat", "pg_csvlog"}
    assert all(callable(parser) for parser in PARSERS.values())


def _check_items(items, path):
    for item in items:
        assert isinstance(item, (RawPair, ReadReject)), item
        assert item.origin.startswith(path), item
        if isinstance(item, ReadReject):
            assert item.reason and " " not in item.reason and isinstance(item.detail, str)
            continue
        assert item.sql and item.sql == item.sql.strip() and "\x00" not in item.sql
        item.sql.encode("utf-8")  # never text that cannot be written out
        assert item.source in SOURCES and isinstance(item.success, bool)
        assert item.question is None or (isinstance(item.question, str) and item.question)
        assert isinstance(item.context, tuple) and all(isinstance(t, str) for t in item.context)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in item.extra.items())


@pytest.mark.parametrize("fmt, path", [
    ("sql", "f.sql"), ("jsonl", "f.jsonl"), ("json", "f.json"), ("csv", "f.csv"), ("parquet", "f.parquet"),
    ("defog", "f.csv"), ("chat", "f.json"), ("chat", "f.jsonl"), ("pg_csvlog", "f.csv"),
])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_INPUT)
def test_parsers_never_raise_on_hostile_bytes(fmt, path, data):
    _check_items(list(PARSERS[fmt](io.BytesIO(data), path)), path)


def test_package_exports_the_record_types():
    assert formats.RawPair._fields == ("sql", "question", "context", "success", "db_id", "source", "origin", "extra")
    assert formats.ReadReject._fields == ("origin", "reason", "detail")


class _ShortReads:
    """A stream like Beam's ``CompressedFile``: small reads, ``read()`` without a size returns one buffer,
    ``seekable`` is a property."""

    seekable = False

    def __init__(self, data: bytes, step: int = 7):
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = 7) -> bytes:
        return self._data.read(min(size if size and size > 0 else self._step, self._step))

    def readline(self) -> bytes:
        return self._data.readline()


def _parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"sql": [f"SELECT {i}" for i in range(50)]}), sink)
    return sink.getvalue()


SAMPLES = {
    "sql": b"-- one\nSELECT 'a;b';\nSELECT 2;\n" * 20,
    "json": b'[' + b",".join(b'{"sql": "SELECT %d"}' % i for i in range(50)) + b"]",
    "jsonl": b"".join(b'{"sql": "SELECT %d"}\n' % i for i in range(50)),
    "csv": b'sql,question\n' + b'"SELECT\n 1",q\n' * 30,
    "chat": b'[{"role": "user", "content": "Q"}, {"role": "assistant", "tool_calls": [{"id": "c", "function": '
            b'{"name": "db_query", "arguments": "{\\"sql\\": \\"SELECT 1\\"}"}}]}]',
}


@pytest.mark.parametrize("fmt", sorted(SAMPLES) + ["parquet"])
def test_short_reads_give_the_same_items(fmt):
    data = _parquet_bytes() if fmt == "parquet" else SAMPLES[fmt]
    path = {"json": "f.json", "chat": "f.json", "jsonl": "f.jsonl"}.get(fmt, f"f.{fmt}")
    expected = list(PARSERS[fmt](io.BytesIO(data), path))
    assert expected and all(isinstance(i, RawPair) for i in expected)
    assert list(PARSERS[fmt](_ShortReads(data), path)) == expected


def test_beam_opened_gzip_files_are_parsed(tmp_path):
    import gzip

    from apache_beam.io.filesystems import FileSystems

    path = tmp_path / "log.sql.gz"
    path.write_bytes(gzip.compress(SAMPLES["sql"]))
    with FileSystems.open(str(path)) as stream:
        items = list(PARSERS["sql"](stream, str(path)))
    assert len(items) == 40 and items[-1].origin == f"{path}:60"
