"""``record_to_json``'s fast path writes exactly what the generic walk (``_plain``) writes."""

from __future__ import annotations

import json

import pytest

from adapters.db.results import Execution
from transforms.core import record as record_module
from transforms.core.record import DeadLetter, Parameter, Record, dead_letter_to_json, record_from_json, record_to_json


def _walked(value) -> str:
    return json.dumps(record_module._plain(value), ensure_ascii=False, separators=(", ", ": "))


RECORDS = [
    Record(id="a", question="How many?", sql="SELECT 1", context=("User: hi", "Assistant: ¿qué?"), tables=("t",),
           concepts=("join",), execution=Execution(status="ok", row_count=1, columns=("n",), result_hash="h",
                                                   elapsed_ms=0.25, truncated=False),
           parameters=(Parameter("id", 1, "int", "5"),), extra={"z": "1", "a": "2"}),
    Record(id="b", question=None, sql="SELECT 2", success=False, execution=Execution(status="error", error="boom")),
    # values of unusual types: the generic walk decides
    Record(id="c", question="q", sql="s", context=["a", 1, {"b": 1, "a": 2}], extra={"k": [1, (2, 3)], "a": {"y": 1}},
           execution=Execution(status="ok", columns=["a", 2]), frequency=2.5, tables=[("x", "y")]),
]


@pytest.mark.parametrize("record", RECORDS, ids=[r.id for r in RECORDS])
def test_a_record_is_written_as_the_generic_walk_writes_it(record):
    assert record_to_json(record) == _walked(record)
    dead = DeadLetter("execute", "why", "detail", record.origin, record)
    assert dead_letter_to_json(dead) == _walked(dead)


def test_a_dead_letter_without_a_record_and_the_round_trip():
    dead = DeadLetter("read", "invalid_json", "line 3", "f.jsonl:3")
    assert dead_letter_to_json(dead) == _walked(dead)
    assert record_from_json(record_to_json(RECORDS[0])) == RECORDS[0]
