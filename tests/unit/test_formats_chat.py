"""Tests for transforms.formats.chat: tool calls from agent chat histories."""

from __future__ import annotations

import io
import json

import pytest
from pathlib import Path

from transforms.formats import RawPair, ReadReject
from transforms.formats.chat import parse_chat_history
from tests.conftest import TEST_DATA

DATA = TEST_DATA / "formats"
UI_FILE = DATA / "chat_ui_messages.json"
OPENAI_FILE = DATA / "chat_openai_conversations.jsonl"

Q1 = "How many tracks are in the Rock genre?"
Q2 = "And how many per album?"
TURNS_BEFORE_Q2 = ("User: How many tracks are in the Rock genre?",
                   "Assistant: Let me count them.\nThere are 1,297 Rock tracks.")


def parse_file(path: Path, **options) -> list:
    return list(parse_chat_history(path.open("rb"), path.name, **options))


def parse(data: bytes, path: str = "chat.jsonl", **options) -> list:
    return list(parse_chat_history(io.BytesIO(data), path, **options))


def jsonl(*values) -> bytes:
    return "".join(json.dumps(v) + "\n" for v in values).encode()


def summary(items) -> list:
    return [(i.origin, i.reason) if isinstance(i, ReadReject) else (i.origin, i.sql, i.success) for i in items]


def user(text):
    return {"role": "user", "content": text}


def assistant_call(call_id, sql=None, arguments=None, name="db_query", content=None):
    args = arguments if arguments is not None else json.dumps({"sql": sql})
    return {"role": "assistant", "content": content,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]}


def tool_result(call_id, content):
    return {"role": "tool", "tool_call_id": call_id, "content": content}


# -- Vercel AI SDK UIMessage -----------------------------------------------------------


def test_ui_tool_calls_pair_with_the_last_user_message():
    items = parse_file(UI_FILE)
    assert [(getattr(i, "question", None), i.origin) for i in items] == [
        (Q1, "chat_ui_messages.json#1.2"),
        (Q2, "chat_ui_messages.json#3.1"),
        (Q2, "chat_ui_messages.json#3.3"),
        (Q2, "chat_ui_messages.json#3.4"),
        (None, "chat_ui_messages.json#3.5"),
    ]


def test_ui_pair_keeps_sql_verbatim_and_records_the_call():
    first = parse_file(UI_FILE)[0]
    assert first.sql == "SELECT count(*) FROM track t JOIN genre g ON g.genre_id = t.genre_id WHERE g.name = 'Rock'"
    assert (first.source, first.success, first.context) == ("chat", True, ())
    assert first.extra == {"tool": "db_query", "tool_call_id": "call_Rk1", "message_id": "msg-a1",
                           "state": "output-available", "conversation_id": "chat_ui_messages.json", "turn": "0",
                           "input.reasoning": "join track to genre and filter on the genre name"}


def test_ui_output_error_is_a_failed_pair_with_its_error():
    failed = parse_file(UI_FILE)[1]
    assert failed.success is False
    assert failed.extra["state"] == "output-error"
    assert failed.extra["error"] == 'column "album_title" does not exist'


def test_ui_dynamic_tool_parts_count_and_other_tools_do_not():
    sqls = [i.sql for i in parse_file(UI_FILE) if isinstance(i, RawPair)]
    assert "SELECT count(DISTINCT album_id) FROM track" in sqls
    assert len(sqls) == 4  # getSchema is not the SQL tool


def test_ui_tool_part_without_input_is_malformed_part():
    last = parse_file(UI_FILE)[-1]
    assert (last.origin, last.reason) == ("chat_ui_messages.json#3.5", "malformed_part")


def test_ui_error_object_in_output_is_a_failure():
    message = {"role": "assistant", "parts": [{"type": "tool-db_query", "toolCallId": "c", "state": "output-available",
                                               "input": {"sql": "SELECT x"}, "output": {"error": "no such column x"}}]}
    (pair,) = parse(jsonl(user("Q"), message))
    assert (pair.success, pair.extra["error"]) == (False, "no such column x")


def test_ai_sdk_4_tool_invocation_parts_are_understood():
    message = {"role": "assistant", "parts": [{"type": "tool-invocation", "toolInvocation": {
        "toolName": "db_query", "toolCallId": "c1", "state": "result", "args": {"sql": "SELECT 1"}, "result": [[1]]}}]}
    (pair,) = parse(jsonl(user("One?"), message))
    assert (pair.sql, pair.question, pair.success) == ("SELECT 1", "One?", True)


# -- context ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [
    ("full", ()),  # stored once, in the conversations: see test_chat_context.py
    ("none", ()),
    ("last", TURNS_BEFORE_Q2[-1:]),
    ("window:1", TURNS_BEFORE_Q2[-1:]),
    ("window:5", TURNS_BEFORE_Q2),
])
def test_context_mode_trims_the_turns_before_the_question(mode, expected):
    assert parse_file(UI_FILE, context=mode)[2].context == expected


def test_unknown_context_mode_is_an_error_of_the_caller():
    with pytest.raises(ValueError):
        parse_chat_history(io.BytesIO(b""), "c.json", context="some")


def test_include_failures_does_not_change_what_is_yielded():
    assert parse_file(UI_FILE, include_failures=False) == parse_file(UI_FILE, include_failures=True)


# -- OpenAI chat messages --------------------------------------------------------------


def test_openai_conversations_in_jsonl_give_pairs_settled_by_tool_results():
    items = parse_file(OPENAI_FILE)
    assert [(i.origin, getattr(i, "reason", None) or i.success) for i in items] == [
        ("chat_openai_conversations.jsonl:1#2.0", True),
        ("chat_openai_conversations.jsonl:1#6.0", False),
        ("chat_openai_conversations.jsonl:1#8.0", True),
        ("chat_openai_conversations.jsonl:2#1.0", "malformed_part"),
        ("chat_openai_conversations.jsonl:2#1.2", False),
        ("chat_openai_conversations.jsonl:3#1.0", False),
    ]


def test_openai_error_text_result_is_a_failure():
    failed = parse_file(OPENAI_FILE)[1]
    assert failed.question == "What did Ernst Handel spend on freight in 1997?"
    assert (failed.extra["state"], failed.extra["error"]) == ("error", "Error: function year(date) does not exist")


def test_openai_json_error_result_is_a_failure():
    failed = parse_file(OPENAI_FILE)[4]
    assert failed.extra["error"] == "permission denied for table products"


def test_openai_call_without_a_result_is_a_failure():
    last = parse_file(OPENAI_FILE)[-1]
    assert (last.success, last.extra["state"]) == (False, "no_result")


def test_openai_context_holds_assistant_text_but_not_tool_calls():
    third = parse_file(OPENAI_FILE, context="window:5")[2]
    assert third.context == (
        "User: Which 3 customers placed the most orders?",
        "Assistant: Save-a-lot Markets (31), Ernst Handel (30) and QUICK-Stop (28).",
    )


def test_openai_conversation_db_id_and_id_are_used():
    first = parse_file(OPENAI_FILE)[0]
    assert (first.db_id, first.extra["conversation_id"]) == ("northwind", "conv-7f3a")


def test_openai_content_as_text_parts_is_the_question():
    assert parse_file(OPENAI_FILE)[4].question == "List the products that are out of stock."


def test_jsonl_of_messages_is_one_conversation():
    data = jsonl(user("Top artist?"), assistant_call("c1", "SELECT name FROM artist LIMIT 1"),
                 tool_result("c1", '[["AC/DC"]]'), {"role": "assistant", "content": "AC/DC."},
                 user("And the second?"), assistant_call("c2", "SELECT name FROM artist OFFSET 1 LIMIT 1"),
                 tool_result("c2", '[["Accept"]]'))
    items = parse(data, context="window:2")
    assert summary(items) == [("chat.jsonl#1.0", "SELECT name FROM artist LIMIT 1", True),
                              ("chat.jsonl#5.0", "SELECT name FROM artist OFFSET 1 LIMIT 1", True)]
    assert items[1].context == ("User: Top artist?", "Assistant: AC/DC.")


def test_object_with_messages_is_one_conversation():
    data = json.dumps({"id": "c-1", "messages": [user("One?"), assistant_call("c1", "SELECT 1"),
                                                 tool_result("c1", "1")]}, indent=1).encode()
    assert summary(parse(data, path="chat.json")) == [("chat.json#1.0", "SELECT 1", True)]


def test_json_array_of_conversations_gives_each_its_origin():
    data = json.dumps([[user("A?"), assistant_call("c1", "SELECT 'a'")],
                       {"messages": [user("B?"), assistant_call("c2", "SELECT 'b'")]}]).encode()
    assert [(i.origin, i.question) for i in parse(data, path="chats.json")] == [
        ("chats.json#0#1.0", "A?"), ("chats.json#1#1.0", "B?")]


def test_arguments_that_are_not_json_are_malformed_part():
    items = parse(jsonl(user("Q"), assistant_call("c1", arguments='{"sql": "SELECT')))
    assert summary(items) == [("chat.jsonl#1.0", "malformed_part")]


@pytest.mark.parametrize("arguments", ['{"sql": 42}', '{"query": "SELECT 1"}', '["SELECT 1"]'])
def test_sql_argument_that_is_not_a_string_is_malformed_part(arguments):
    assert summary(parse(jsonl(user("Q"), assistant_call("c1", arguments=arguments)))) == [
        ("chat.jsonl#1.0", "malformed_part")]


def test_nul_in_sql_argument_is_rejected():
    assert summary(parse(jsonl(user("Q"), assistant_call("c1", "SELECT '\x00'")))) == [("chat.jsonl#1.0", "nul_byte")]


def test_db_id_option_and_argument_name_the_database():
    data = jsonl(user("Q"), assistant_call("c1", arguments=json.dumps({"sql": "SELECT 1", "database": "chinook"})))
    assert parse(data)[0].db_id == "chinook"
    assert parse(data, db_id="sales")[0].db_id == "sales"


def test_message_without_a_role_in_a_conversation_is_malformed_message():
    data = json.dumps({"messages": [{"content": "hi"}, user("Q"), assistant_call("c1", "SELECT 1")]}).encode()
    assert [getattr(i, "reason", "pair") for i in parse(data, path="c.json")] == ["malformed_message", "pair"]


def test_value_that_is_neither_message_nor_conversation_is_malformed_message():
    assert summary(parse(b'"hello"\n{"role": "user", "content": "Q"}\n')) == [("chat.jsonl:1", "malformed_message")]


def test_line_that_is_not_utf8_is_rejected_and_the_conversation_goes_on():
    data = jsonl(user("Q")) + b'{"role": "user", "content": "caf\xe9"}\n' + jsonl(assistant_call("c1", "SELECT 1"))
    items = parse(data)
    assert summary(items) == [("chat.jsonl:2", "not_utf8"), ("chat.jsonl#1.0", "SELECT 1", False)]
    assert items[1].question == "Q"


def test_truncated_chat_file_is_one_reject():
    data = json.dumps([user("Q"), assistant_call("c1", "SELECT 1")], indent=2).encode()[:-20]
    assert summary(parse(data, path="c.json")) == [("c.json", "truncated_json")]


def test_empty_chat_file_yields_nothing():
    assert parse(b"") == [] and parse(b"[]", path="c.json") == []


def test_other_tool_names_are_an_option():
    data = jsonl(user("Q"), assistant_call("c1", "SELECT 1", name="run_sql"), tool_result("c1", "ok"))
    assert parse(data) == []
    assert summary(parse(data, tool_name="run_sql")) == [("chat.jsonl#1.0", "SELECT 1", True)]


@pytest.mark.parametrize("name", ["chat.jsonl", "chat.json"])
def test_an_escaped_lone_surrogate_in_a_message_is_not_utf8(name):
    """Lines without a ``\\uD8xx`` escape skip the surrogate scan; one with it must still be caught."""
    line = json.dumps([user("How many?"), assistant_call("c1", sql="SELECT 1")]).replace("How many?", "How \\ud800?")
    items = parse(line.encode() + b"\n", name)
    assert any(isinstance(i, ReadReject) and i.reason == "not_utf8" for i in items)
