"""Tests for transforms.formats.jsonl: JSONL and JSON files of records."""

from __future__ import annotations

import io
import json
import os

import pytest
from pathlib import Path

from transforms.formats import RawPair, ReadReject
from transforms.formats.jsonl import parse_json_records
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


def parse(data: bytes, path: str = "q.jsonl", **options) -> list:
    return list(parse_json_records(io.BytesIO(data), path, **options))


def lines(*records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def reasons(items) -> list:
    return [(i.origin, i.reason) if isinstance(i, ReadReject) else (i.origin, "ok") for i in items]


def test_jsonl_record_becomes_a_pair_with_named_fields_and_extra():
    data = lines({"query": " SELECT 1 ", "q": "One?", "db": "shop", "ms": 12, "tags": ["a"], "none": None})
    (pair,) = parse(data, sql_field="query", question_field="q", db_id_field="db")
    assert pair == RawPair("SELECT 1", "One?", (), True, "shop", "log", "q.jsonl:1",
                           {"ms": "12", "tags": '["a"]'})


def test_source_label_is_passed_through():
    (pair,) = parse(lines({"sql": "SELECT 1"}), source="seed")
    assert pair.source == "seed"


def test_unknown_source_label_is_an_error_of_the_caller():
    with pytest.raises(ValueError):
        parse_json_records(io.BytesIO(b""), "q.jsonl", source="web")


def test_jsonl_origins_count_blank_lines():
    data = b'{"sql": "SELECT 1"}\n\n  \n{"sql": "SELECT 2"}\n'
    assert [p.origin for p in parse(data)] == ["q.jsonl:1", "q.jsonl:4"]


def test_invalid_json_line_is_rejected_and_reading_goes_on():
    data = b'{"sql": "SELECT 1"}\n{"sql": SELECT 2}\n{"sql": "SELECT 3"}\n'
    assert reasons(parse(data)) == [("q.jsonl:1", "ok"), ("q.jsonl:2", "invalid_json"), ("q.jsonl:3", "ok")]


def test_last_line_cut_short_is_truncated_json():
    data = b'{"sql": "SELECT 1"}\n{"sql": "SELECT 2", "q'
    assert reasons(parse(data)) == [("q.jsonl:1", "ok"), ("q.jsonl:2", "truncated_json")]


def test_line_that_is_not_utf8_is_rejected_and_reading_goes_on():
    data = b'{"sql": "SELECT 1"}\n{"sql": "SELECT \xff"}\n{"sql": "SELECT 3"}\n'
    assert reasons(parse(data)) == [("q.jsonl:1", "ok"), ("q.jsonl:2", "not_utf8"), ("q.jsonl:3", "ok")]


def test_escaped_lone_surrogate_is_not_utf8():
    assert reasons(parse(b'{"sql": "SELECT \'\\ud800\'"}\n')) == [("q.jsonl:1", "not_utf8")]


def test_nul_in_sql_is_rejected():
    assert reasons(parse(b'{"sql": "SELECT \\u0000"}\n')) == [("q.jsonl:1", "nul_byte")]


def test_missing_or_null_sql_is_missing_field():
    assert [i.reason for i in parse(lines({"query": "x"}, {"sql": None}))] == ["missing_field:sql"] * 2


def test_sql_of_the_wrong_type_is_rejected():
    assert [i.reason for i in parse(lines({"sql": 42}, {"sql": ["SELECT 1"]}))] == ["wrong_type:sql"] * 2


def test_question_of_the_wrong_type_is_rejected():
    (item,) = parse(lines({"sql": "SELECT 1", "title": {"en": "x"}}), question_field="title")
    assert item.reason == "wrong_type:title"


def test_blank_sql_is_empty_sql():
    assert [i.reason for i in parse(lines({"sql": "  \n "}))] == ["empty_sql"]


def test_line_that_is_not_an_object_is_wrong_type_record():
    assert reasons(parse(b'["SELECT 1"]\n"SELECT 2"\n')) == [
        ("q.jsonl:1", "wrong_type:record"), ("q.jsonl:2", "wrong_type:record")]


def test_success_field_is_honoured():
    items = parse(lines({"sql": "SELECT 1", "success": False}, {"sql": "SELECT 2", "success": True}))
    assert [p.success for p in items] == [False, True]
    assert "success" not in items[0].extra


def test_success_of_the_wrong_type_is_rejected():
    assert [i.reason for i in parse(lines({"sql": "SELECT 1", "success": "perhaps"}))] == ["wrong_type:success"]


def test_integer_db_id_is_kept_as_text():
    (pair,) = parse(lines({"sql": "SELECT 1", "tenant": 42}), db_id_field="tenant")
    assert pair.db_id == "42"


def test_json_array_file_gives_index_origins():
    data = json.dumps([{"sql": "SELECT 1"}, 7, {"sql": "SELECT 3"}], indent=2).encode()
    assert reasons(parse(data, path="q.json")) == [
        ("q.json#0", "ok"), ("q.json#1", "wrong_type:record"), ("q.json#2", "ok")]


def test_single_pretty_printed_object_is_one_record():
    data = json.dumps({"sql": "SELECT 1", "question": "One?"}, indent=2).encode()
    (pair,) = parse(data, path="q.json", question_field="question")
    assert (pair.sql, pair.question, pair.origin) == ("SELECT 1", "One?", "q.json#0")


def test_jsonl_saved_as_json_is_read_line_by_line():
    assert [p.origin for p in parse(lines({"sql": "SELECT 1"}, {"sql": "SELECT 2"}), path="q.json")] == [
        "q.json:1", "q.json:2"]


def test_truncated_json_array_keeps_the_elements_before_the_cut():
    data = json.dumps([{"sql": "SELECT 1"}, {"sql": "SELECT 2"}], indent=2).encode()[:-8]
    assert reasons(parse(data, path="q.json")) == [("q.json#0", "ok"), ("q.json#1", "truncated_json")]


def test_invalid_json_element_stops_the_file_there():
    data = b'[\n{"sql": "SELECT 1"},\n{sql: 2},\n{"sql": "SELECT 3"}\n]\n'
    assert reasons(parse(data, path="q.json")) == [("q.json#0", "ok"), ("q.json#1", "invalid_json")]


def test_truncated_single_object_document_is_one_reject_for_the_file():
    data = json.dumps({"sql": "SELECT 1", "question": "One?"}, indent=2).encode()[:-5]
    assert reasons(parse(data, path="q.json")) == [("q.json", "truncated_json")]


def test_bad_bytes_in_a_json_array_reject_only_their_record():
    data = b'[\n{"sql": "SELECT 1"},\n{"sql": "SELECT \xff"}\n]'
    assert reasons(parse(data, path="q.json")) == [("q.json#0", "ok"), ("q.json#1", "not_utf8")]


def test_deeply_nested_json_is_invalid_not_a_crash():
    assert reasons(parse(b"[" * 100_000 + b"\n", path="q.jsonl")) == [("q.jsonl:1", "invalid_json")]


@pytest.mark.parametrize("path", ["q.jsonl", "q.json"])
def test_empty_file_yields_nothing(path):
    assert parse(b"", path=path) == [] and parse(b"\n \n", path=path) == []


def test_jsonl_is_read_lazily():
    stream = io.BytesIO(lines(*({"sql": f"SELECT {i}"} for i in range(1000))))
    items = parse_json_records(stream, "q.jsonl")
    assert next(items).sql == "SELECT 0"
    assert stream.tell() < 100


def test_real_sede_file_gives_one_pair_per_line():
    path = shared("sede", "val.jsonl")
    items = list(parse_json_records(path.open("rb"), "val.jsonl", sql_field="QueryBody", question_field="Title"))
    assert len(items) == 857 and all(isinstance(i, RawPair) for i in items)
    first = items[0]
    assert (first.question, first.origin) == ("Top 500 Askers on the site", "val.jsonl:1")
    assert first.sql.startswith("SELECT  * FROM (\nSELECT \n    TOP 500")
    assert first.extra["QuerySetId"] == "1233" and first.extra["validated"] == "true"
