"""With ``--context full`` the exports render each chat pair's earlier turns from the conversations (issue 15).

The pairs carry no context there (each conversation is written once, ``PREFIX-conversations-*``);
``sft-chat``, ``prompt-completion(-chat)`` and the DPO prompts join it back by conversation id, and
give the same text a pair holding its context gives. Other context modes are untouched.
"""

from __future__ import annotations

import json
import os
import pathlib

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from pipeline.main import main
from transforms.core.record import Record
from transforms.ingest.conversations import ReadConversations
from transforms.publish.conversations import WithFullContext
from transforms.publish.exports import user_message
from transforms.formats.chat import ConversationTurns
from transforms.ingest.read import ReadSettings

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
DDL = ("CREATE TABLE artist (artistid INT PRIMARY KEY, name TEXT);\n"
       "CREATE TABLE album (albumid INT PRIMARY KEY, title TEXT, artistid INT REFERENCES artist(artistid));\n")
QUESTIONS = [("How many artists are there?", "SELECT COUNT(*) FROM artist"),
             ("And how many albums?", "SELECT COUNT(*) FROM album"),
             ("Which albums are by AC/DC?",
              "SELECT al.title FROM album al JOIN artist a ON a.artistid = al.artistid WHERE a.name = 'AC/DC'")]


def ui_call(i: int, question: str, sql: str) -> list[dict]:
    """A user question and the assistant's db_query call answering it (AI SDK UIMessage)."""
    return [
        {"id": f"u{i}", "role": "user", "parts": [{"type": "text", "text": question}]},
        {"id": f"a{i}", "role": "assistant", "parts": [
            {"type": "text", "text": f"Here is answer {i}."},
            {"type": "tool-db_query", "toolCallId": f"c{i}", "state": "output-available", "input": {"sql": sql},
             "output": [[i]]}]},
    ]


def chat_file(directory: pathlib.Path, name: str = "chat.json", conversation_id: str = "conv-1") -> pathlib.Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    messages = [m for i, (q, s) in enumerate(QUESTIONS) for m in ui_call(i, q, s)]
    path.write_text(json.dumps([{"id": conversation_id, "messages": messages}]))
    return path


def run(tmp_path: pathlib.Path, name: str, chats: str, context: str, formats: str, *extra: str) -> pathlib.Path:
    ddl = tmp_path / "schema.sql"
    ddl.write_text(DDL)
    output = tmp_path / name / "p"
    assert main(["run", "--chat_history", chats, "--database", DATABASE, "--schema", str(ddl), "--context", context,
                 "--format", formats, "--output", str(output), "--html_report=false", *extra]) == 0
    return output


def rows(output: pathlib.Path, set_name: str) -> list[dict]:
    folder = output.parent / f"{output.name}-dataset" / "jsonl" / set_name
    return [json.loads(line) for path in sorted(folder.glob("train-*.jsonl")) for line in path.read_text().splitlines()]


def pairs(output: pathlib.Path) -> dict[str, dict]:
    return {p["id"]: p for p in map(json.loads, (output.parent / "p-00000-of-00001.jsonl").read_text().splitlines())}


def conversations(output: pathlib.Path) -> dict[str, dict]:
    lines = (output.parent / "p-conversations-00000-of-00001.jsonl").read_text().splitlines()
    return {c["conversation_id"]: c for c in map(json.loads, lines)}


def user_messages(output: pathlib.Path, set_name: str = "sft-chat") -> dict[str, str]:
    """Question → the user message of its row (the last line of the message is the question)."""
    key = "messages" if set_name == "sft-chat" else "prompt"
    return {r[key][1]["content"].splitlines()[-1]: r[key][1]["content"] for r in rows(output, set_name)}


def test_full_context_exports_render_the_earlier_turns_from_the_conversations(tmp_path):
    output = run(tmp_path, "full", str(chat_file(tmp_path)), "full", "sft-chat,prompt-completion-chat")
    written = pairs(output)
    assert len(written) == 3 and all(p["context"] == [] for p in written.values())  # the pairs stay small
    turns = conversations(output)["conv-1"]["turns"]
    sft = {r["id"]: r for r in rows(output, "sft-chat")}
    chat = {r["id"]: r for r in rows(output, "prompt-completion-chat")}
    assert set(sft) == set(chat) == set(written)
    for rid, pair in written.items():
        expected = user_message(pair["question"], turns[: int(pair["extra"]["turn"])])
        assert sft[rid]["messages"][1]["content"] == expected
        assert chat[rid]["prompt"] == sft[rid]["messages"][:2]
    third = next(p for p in written.values() if p["question"] == QUESTIONS[2][0])
    assert third["extra"]["turn"] == "4"
    assert sft[third["id"]]["messages"][1]["content"] == (
        "Earlier in this conversation:\n- User: How many artists are there?\n- Assistant: Here is answer 0.\n"
        "- User: And how many albums?\n- Assistant: Here is answer 1.\n\nWhich albums are by AC/DC?")
    first = next(p for p in written.values() if p["question"] == QUESTIONS[0][0])
    assert sft[first["id"]]["messages"][1]["content"] == QUESTIONS[0][0]  # nothing said before it


def test_full_context_renders_what_a_pair_holding_its_context_renders(tmp_path):
    """Same text as a window wide enough to keep every earlier turn in the pair itself."""
    chats = str(chat_file(tmp_path))
    formats = "sft-chat,prompt-completion,prompt-completion-chat"
    full, held = (run(tmp_path, name, chats, mode, formats)
                  for name, mode in (("full", "full"), ("held", "window:100")))
    for set_name in ("sft-chat", "prompt-completion-chat"):
        assert user_messages(full, set_name) == user_messages(held, set_name)
    prompts = {r["prompt"]: r["completion"] for r in rows(full, "prompt-completion")}
    assert prompts == {r["prompt"]: r["completion"] for r in rows(held, "prompt-completion")}
    assert any("### Conversation so far\n- User: How many artists are there?" in p for p in prompts)


def test_full_context_exports_are_byte_identical_across_runs(tmp_path):
    chats = str(chat_file(tmp_path))
    first, second = (run(tmp_path, name, chats, "full", "sft-chat,prompt-completion,parquet", "--num_shards", "2")
                     for name in ("one", "two"))
    files = sorted(p.relative_to(first.parent) for p in first.parent.rglob("*") if p.suffix in (".jsonl", ".parquet"))
    assert any("sft-chat" in str(f) for f in files)
    for relative in files:
        assert (first.parent / relative).read_bytes() == (second.parent / relative).read_bytes(), relative


def test_last_context_exports_keep_the_one_turn_the_pair_holds(tmp_path):
    output = run(tmp_path, "last", str(chat_file(tmp_path)), "last", "sft-chat")
    assert not list(output.parent.glob("p-conversations-*"))
    for pair in pairs(output).values():
        assert len(pair["context"]) == (1 if pair["extra"]["turn"] != "0" else 0)
        assert user_messages(output)[pair["question"]] == user_message(pair["question"], pair["context"])
    assert user_messages(output)[QUESTIONS[2][0]] == (
        "Earlier in this conversation:\n- Assistant: Here is answer 1.\n\nWhich albums are by AC/DC?")


def test_the_join_keeps_other_pairs_and_takes_the_conversation_the_pair_came_from():
    talk = ConversationTurns("c1", "a.json", ("User: A?", "Assistant: a."))
    namesake = ConversationTurns("c1", "b.json", ("User: B?", "Assistant: b."))  # another file reuses the id
    from_a = Record("ra", "Q?", "SELECT 1", origin="a.json#2.0", extra={"conversation_id": "c1", "turn": "2"})
    from_b = Record("rb", "Q?", "SELECT 2", origin="b.json#2.0", extra={"conversation_id": "c1", "turn": "1"})
    lost = Record("rl", "Q?", "SELECT 3", origin="c.json#2.0", extra={"conversation_id": "c9", "turn": "2"})
    seed = Record("rs", "Q?", "SELECT 4", source="seed", context=("kept",))
    with make_pipeline() as pipeline:
        records = pipeline | "Pairs" >> beam.Create([from_a, from_b, lost, seed])
        turns = pipeline | "Turns" >> beam.Create([talk, namesake])
        out = {"pairs": records, "conversations": turns} | WithFullContext()
        assert_that(out | beam.Map(lambda r: (r.id, tuple(r.context))), equal_to([
            ("ra", ("User: A?", "Assistant: a.")), ("rb", ("User: B?",)), ("rl", ()), ("rs", ("kept",))]))


def test_conversations_are_matched_like_the_main_read(tmp_path):
    """``**`` reaches files at any depth (its own folder too); a dangling link is the read stage's
    dead letter and costs the conversations nothing."""
    chats = tmp_path / "chats"
    chat_file(chats, "top.json", "conv-top")
    chat_file(chats, "a/b/deep.json", "conv-deep")
    os.symlink(tmp_path / "missing.json", chats / "broken.json")
    pattern = f"{chats}/**/*.json"
    with make_pipeline() as pipeline:
        found = pipeline | ReadConversations([pattern], ReadSettings(context="full"))
        assert_that(found | beam.Map(lambda c: (c.conversation_id, len(c.turns))),
                    equal_to([("conv-top", 6), ("conv-deep", 6)]))
    output = run(tmp_path, "globbed", pattern, "full", "sft-chat")
    assert set(conversations(output)) == {"conv-top", "conv-deep"}
    dead = [json.loads(line) for line in (output.parent / "p-rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["origin"]) for d in dead] == [("unreadable_file", str(chats / "broken.json"))]
    # the two files say the same: dedup keeps one pair per question, with its conversation's turns
    assert user_messages(output)[QUESTIONS[2][0]].startswith("Earlier in this conversation:\n- User: How many")


def weak_answer(call) -> Action:
    """The weak model answers every question with one wrong query and one other (seed 0, 1)."""
    return Action(text=json.dumps({"sql": ["SELECT COUNT(*) FROM genre", "SELECT COUNT(*) FROM album"][
        call.body["seed"]]}))


def test_full_context_dpo_prompts_hold_the_earlier_turns(tmp_path):
    with FakeLlmServer(weak_answer) as server:
        output = run(tmp_path, "dpo", str(chat_file(tmp_path)), "full", "sft-chat,prompt-completion,dpo-chat",
                     "--preference", "--weak_llm", "openai", "--weak_llm_endpoint", server.url, "--samples", "2",
                     "--llm_retries", "1", "--llm_backoff_s", "0.01", "--dpo_keep_gold")
    completion = {r["id"]: r["prompt"] for r in rows(output, "prompt-completion")}
    sft = {r["id"]: r["messages"][:2] for r in rows(output, "sft-chat")}
    dpo, dpo_chat = rows(output, "dpo"), rows(output, "dpo-chat")
    third = [r for r in dpo if r["meta"]["question"] == QUESTIONS[2][0]]
    assert third and dpo_chat
    for row in dpo:  # the DPO prompt is the pair's prompt-completion prompt, earlier turns included
        assert row["prompt"] == completion[row["meta"]["record_id"]]
    for row in dpo_chat:
        assert row["prompt"] == sft[row["meta"]["record_id"]]
    assert ("### Conversation so far\n- User: How many artists are there?\n- Assistant: Here is answer 0.\n"
            "- User: And how many albums?\n- Assistant: Here is answer 1.\n\n### Question\nWhich albums"
            in third[0]["prompt"])
