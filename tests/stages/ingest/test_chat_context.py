"""Chat context stays linear in the input (issue 15).

The reader streams a JSON array of any size through a bounded buffer, applies the byte cap
to each message, keeps going past a malformed message, and with ``--context full`` stores
each conversation once (``PREFIX-conversations-*``) instead of copying it into every pair.
"""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest

from pipeline.main import main
from tests.conftest import REPO
from transforms.formats import RawPair, ReadReject
from transforms.formats import chat
from transforms.formats.chat import ConversationTurns, parse_chat_history, parse_conversations

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"


def ui_call(i: int, sql: str, state: str = "output-available") -> list[dict]:
    """A user question and the assistant's db_query call answering it (AI SDK UIMessage)."""
    return [
        {"id": f"u{i}", "role": "user", "parts": [{"type": "text", "text": f"Question number {i}?"}]},
        {"id": f"a{i}", "role": "assistant", "parts": [
            {"type": "text", "text": f"Answer {i}."},
            {"type": "tool-db_query", "toolCallId": f"c{i}", "state": state, "input": {"sql": sql},
             "output": [[i]]}]},
    ]


def conversation(n: int) -> list[dict]:
    return [m for i in range(n) for m in ui_call(i, f"SELECT {i}")]


def parse(data: bytes, path: str = "chat.json", **options) -> list:
    return list(parse_chat_history(io.BytesIO(data), path, **options))


def pairs_of(items) -> list[RawPair]:
    return [i for i in items if isinstance(i, RawPair)]


def test_default_context_is_bounded_whatever_the_conversation_length():
    items = parse(json.dumps(conversation(300)).encode())
    assert len(pairs_of(items)) == 300
    assert max(len(p.context) for p in items) == 1  # "last": the one turn before the question
    assert items[-1].context == ("Assistant: Answer 298.",)


def test_full_context_is_stored_once_and_rebuilds_every_pair_context():
    data = json.dumps(conversation(50)).encode()
    pairs = pairs_of(parse(data, context="full"))
    assert all(p.context == () for p in pairs)
    (stored,) = parse_conversations(io.BytesIO(data), "chat.json")
    assert stored.conversation_id == "chat.json" and len(stored.turns) == 100
    windowed = pairs_of(parse(data, context="window:1000"))
    for pair, expected in zip(pairs, windowed):
        assert pair.extra["conversation_id"] == stored.conversation_id
        assert tuple(stored.turns[: int(pair.extra["turn"])]) == expected.context


def test_pairs_name_their_conversation_by_its_own_id_when_it_has_one():
    data = json.dumps([{"id": "conv-1", "messages": conversation(2)},
                       {"id": "conv-2", "messages": conversation(1)}]).encode()
    assert [(p.extra["conversation_id"], p.extra["turn"]) for p in pairs_of(parse(data))] == [
        ("conv-1", "0"), ("conv-1", "2"), ("conv-2", "0")]
    assert [(c.conversation_id, len(c.turns)) for c in parse_conversations(io.BytesIO(data), "c.json")] == [
        ("conv-1", 4), ("conv-2", 2)]


@pytest.mark.parametrize("chunk", [7, 64, 1 << 16])
def test_streaming_reads_the_same_pairs_whatever_the_chunk_size(chunk, monkeypatch):
    data = json.dumps([{"id": "c", "db_id": "chinook", "messages": conversation(20)}, conversation(3),
                       *conversation(2)], indent=1).encode()
    whole = parse(data)
    monkeypatch.setattr(chat, "_CHUNK", chunk)
    assert parse(data) == whole
    # an object larger than the cap is streamed key by key: its messages one at a time
    assert parse(data, max_message_bytes=400) == whole


def test_a_message_over_the_byte_cap_is_sql_too_long_and_the_rest_goes_on():
    messages = conversation(3)
    messages[3]["parts"][1]["input"]["sql"] = "SELECT '" + "x" * 5000 + "'"
    items = parse(json.dumps(messages).encode(), max_message_bytes=2000)
    assert [(i.origin, i.reason) for i in items if isinstance(i, ReadReject)] == [("chat.json#3", "sql_too_long")]
    assert [p.sql for p in pairs_of(items)] == ["SELECT 0", "SELECT 2"]


def test_a_malformed_message_mid_file_is_a_dead_letter_and_later_messages_still_yield():
    good = json.dumps(conversation(3))
    second_call = good.index('{"id": "a1"')
    data = (good[:second_call] + '{"id": "a1", "role": "assistant", "parts": [oops]}, '
            + good[good.index('{"id": "u2"'):]).encode()
    items = parse(data)
    assert [(i.origin, i.reason) for i in items if isinstance(i, ReadReject)] == [("chat.json#3", "invalid_json")]
    assert [p.sql for p in pairs_of(items)] == ["SELECT 0", "SELECT 2"]


def test_a_file_cut_short_keeps_the_pairs_before_the_cut():
    data = json.dumps(conversation(4)).encode()
    items = parse(data[: len(data) * 3 // 4])
    assert [p.sql for p in pairs_of(items)][:2] == ["SELECT 0", "SELECT 1"]
    assert isinstance(items[-1], ReadReject) and items[-1].reason == "truncated_json"


def test_reading_a_long_conversation_holds_a_bounded_buffer():
    """The reader's peak allocation does not grow with the conversation (2 MB → 8 MB of calls)."""

    def peak_of(calls: int) -> int:
        stream = io.BytesIO(json.dumps(conversation(calls)).encode())
        tracemalloc.start()
        try:
            for _ in parse_chat_history(stream, "chat.json", max_message_bytes=10_000):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_of(6_000), peak_of(24_000)
    assert large < 1_500_000 and large < small * 1.5


@pytest.mark.parametrize("mode", ["window:0", "window:-1", "window:x"])
def test_a_window_that_keeps_no_turn_is_an_error_of_the_caller(mode):
    with pytest.raises(ValueError):
        parse_chat_history(io.BytesIO(b"[]"), "c.json", context=mode)


def test_full_context_job_writes_the_conversations_once(tmp_path):
    chats = tmp_path / "chat.json"
    chats.write_text(json.dumps([{"id": "conv-9", "messages": [
        *ui_call(0, "SELECT COUNT(*) FROM artist"), *ui_call(1, "SELECT COUNT(*) FROM album")]}]))
    out = tmp_path / "out"
    assert main(["run", "--chat_history", str(chats), "--database", DATABASE, "--context", "full",
                 "--output", str(out), "--html_report=false"]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "out-00000-of-00001.jsonl").read_text().splitlines()]
    assert sorted((p["context"], p["extra"]["conversation_id"], p["extra"]["turn"]) for p in pairs) == [
        ([], "conv-9", "0"), ([], "conv-9", "2")]
    (line,) = (tmp_path / "out-conversations-00000-of-00001.jsonl").read_text().splitlines()
    assert json.loads(line) == {"conversation_id": "conv-9", "origin": f"{chats}#0", "turns": [
        "User: Question number 0?", "Assistant: Answer 0.", "User: Question number 1?", "Assistant: Answer 1."]}
