"""WriteQuestions: schema-grounded questions for logged SQL, against a local OpenAI/Gemini-speaking server."""

from __future__ import annotations

import hashlib
import json
import re

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from tests.fakes.beam_collect import collect
from tests.conftest import make_pipeline, require_shared_data
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from adapters.llm import LlmSettings
from transforms.core.record import new_record
from transforms.label.describe import DescribeQuestions
from transforms.validate.normalize import NormalizeSql
from transforms.core.vocab import STYLES
from transforms.label.questions import QuestionSettings, WriteQuestions, most_central
from transforms.sql.question_text import contains_sql, question_problem

QUERIES = [
    "SELECT name FROM artist WHERE artist_id = 5",
    "SELECT COUNT(*) FROM track WHERE milliseconds > 300000",
    "SELECT title FROM album ORDER BY title LIMIT 3",
    "SELECT AVG(total) FROM invoice WHERE billing_country = 'USA'",
]
DDL = """
CREATE TABLE artist (artist_id INT PRIMARY KEY, name VARCHAR(120));
CREATE TABLE album (album_id INT PRIMARY KEY, title VARCHAR(160), artist_id INT REFERENCES artist (artist_id));
INSERT INTO artist VALUES (1, 'AC/DC');
"""


def _settings(server, **overrides) -> QuestionSettings:
    llm = dict(backend="openai", endpoint=server.url, retries=3, backoff_s=0.01, backoff_max_s=0.05, timeout_s=0.5,
               max_in_flight=4)
    llm.update(overrides.pop("llm", {}))
    return QuestionSettings(llm=LlmSettings(**llm), **overrides)


def _run(records, settings):
    """NormalizeSql + WriteQuestions on ``records``; returns (records, dead letters), sorted by record id."""
    pipeline = make_pipeline()
    normalized = pipeline | beam.Create(records) | NormalizeSql("postgres", "postgres")
    out = normalized.records | WriteQuestions(settings)
    found = collect(pipeline, records=out.records, dead=out.dead)
    return (sorted(found["records"], key=lambda r: r.id),
            sorted(found["dead"], key=lambda d: (d.record.id, d.reason)))


def _records():
    return [new_record(sql) for sql in QUERIES]


def _question_for(call) -> str:
    """A different plain question per SQL, the same on every run."""
    match = re.search(r"SQL query:\n(.*)\n", call.prompt)
    digest = hashlib.sha256(match.group(1).encode()).hexdigest()[:6] if match else "none"
    return f"Which rows answer request {digest}?"


def test_every_record_without_a_question_gets_one_from_the_model():
    with FakeLlmServer(lambda call: Action(text=json.dumps({"question": _question_for(call)}))) as server:
        records, dead = _run(_records(), _settings(server))
    assert dead == []
    assert len(records) == len(QUERIES)
    assert all(r.question and r.question_source == "llm" for r in records)
    assert all(r.extra["question_model"] == "openai:gpt-4o-mini" for r in records)


def test_records_that_have_a_question_pass_through_without_a_call():
    with FakeLlmServer() as server:
        given = [new_record(sql, "What is asked?") for sql in QUERIES]
        records, dead = _run(given, _settings(server))
    assert server.calls == [] and dead == []
    assert {r.question for r in records} == {"What is asked?"} and {r.question_source for r in records} == {"given"}


def test_the_prompt_carries_the_referenced_tables_schema_from_ddl(tmp_path):
    ddl = tmp_path / "schema.sql"
    ddl.write_text(DDL)
    with FakeLlmServer() as server:
        _run([new_record("SELECT title FROM album JOIN artist USING (artist_id)")],
             _settings(server, schema_patterns=(str(ddl),)))
    prompt = server.calls[0].prompt
    assert "album(album_id INT primary key, title VARCHAR(160), artist_id INT references artist.artist_id)" in prompt
    assert "artist(artist_id INT primary key, name VARCHAR(120))" in prompt
    assert "SELECT title FROM album JOIN artist USING (artist_id)" in prompt


def test_the_prompt_carries_sample_rows_when_a_database_is_given():
    chinook = require_shared_data("chinook", "Chinook_Sqlite.sqlite")
    with FakeLlmServer() as server:
        records, _ = _run([new_record("SELECT Name FROM Artist WHERE ArtistId = 1")],
                          _settings(server, database=f"sqlite:///{chinook}", database_settings={"timeout_s": 5.0}))
    prompt = server.calls[0].prompt
    assert "ArtistId INTEGER primary key" in prompt and "'AC/DC'" in prompt
    assert len(records) == 1


def test_persona_and_style_reach_the_prompt_and_the_style_is_recorded():
    with FakeLlmServer() as server:
        record = new_record(QUERIES[0], persona="a record-store owner planning a sale")
        records, _ = _run([record], _settings(server, styles=("concise",)))
    prompt = server.calls[0].prompt
    assert "a record-store owner planning a sale" in prompt and STYLES["concise"] in prompt
    assert records[0].extra["question_style"] == "concise"


def test_the_most_central_of_k_candidates_is_kept():
    texts = ["How many tracks run longer than five minutes?", "Count tracks longer than 300000 ms.",
             "How many tracks are longer than five minutes?"]

    def answer(call):
        return Action(text=json.dumps({"question": texts[call.body["seed"]]}))

    with FakeLlmServer(answer) as server:
        records, _ = _run([new_record(QUERIES[1])], _settings(server, per_sql=3))
    assert len(server.calls) == 3
    assert records[0].question == most_central(texts) == "How many tracks are longer than five minutes?"


def test_candidates_that_repeat_the_sql_are_dropped_and_the_rest_kept():
    def answer(call):
        if call.body["seed"] == 0:
            return Action(text=json.dumps({"question": "SELECT COUNT(*) FROM track WHERE milliseconds > 300000"}))
        return Action(text=json.dumps({"question": "How many tracks last over five minutes?"}))

    with FakeLlmServer(answer) as server:
        records, dead = _run([new_record(QUERIES[1])], _settings(server, per_sql=2))
    assert dead == [] and records[0].question == "How many tracks last over five minutes?"


@pytest.mark.parametrize("reply,reason", [
    ({"question": "SELECT name FROM artist WHERE artist_id = 5"}, "question_contains_sql"),
    ({"question": "   "}, "empty_question"),
    ({"answer": "no"}, "invalid_reply"),
])
def test_a_record_whose_candidates_all_fail_is_a_dead_letter_saying_why(reply, reason):
    with FakeLlmServer(lambda call: Action(text=json.dumps(reply))) as server:
        records, dead = _run([new_record(QUERIES[0])], _settings(server, per_sql=2))
    assert records == []
    assert [(d.stage, d.reason) for d in dead] == [("llm", reason)]
    assert dead[0].record.sql == QUERIES[0]


def test_an_invalid_reply_dead_letter_keeps_the_raw_reply_in_its_detail():
    with FakeLlmServer(lambda call: Action(text="I cannot write JSON today")) as server:
        _, dead = _run([new_record(QUERIES[0])], _settings(server))
    assert dead[0].reason == "invalid_reply" and "I cannot write JSON today" in dead[0].detail


def test_no_record_is_lost_under_429s_500s_timeouts_and_garbage():
    faults = [Action(kind="status", status=429, headers=(("Retry-After", "0"),)), Action(kind="status", status=500),
              Action(kind="stall"), Action(kind="garbage")]

    def answer(call):
        if call.index == 0:
            return faults[len(call.prompt) % len(faults)]
        if "artist_id = 5" in call.prompt:
            return Action(kind="status", status=503)  # never recovers
        return Action(text=json.dumps({"question": _question_for(call)}))

    with FakeLlmServer(answer) as server:
        records = _records() + [new_record(f"SELECT title FROM album WHERE album_id = {i}") for i in range(12)]
        written, dead = _run(records, _settings(server, llm={"timeout_s": 0.3, "max_in_flight": 8}))
    assert len(written) + len(dead) == len(records)
    assert [(d.reason, d.record.sql) for d in dead] == [("request_failed", QUERIES[0])]
    assert "503" in dead[0].detail


def test_a_rerun_with_the_cache_makes_no_calls_and_gives_identical_records(tmp_path):
    cache = str(tmp_path / "llm-cache")
    with FakeLlmServer(lambda call: Action(text=json.dumps({"question": _question_for(call)}))) as server:
        first, _ = _run(_records(), _settings(server, per_sql=2, llm={"cache": cache}))
        calls = len(server.calls)
        second, _ = _run(_records(), _settings(server, per_sql=2, llm={"cache": cache}))
    assert calls == 2 * len(QUERIES) and len(server.calls) == calls
    assert second == first


def test_gemini_on_vertex_ai_writes_questions_too():
    def answer(call):
        assert call.api == "vertex"
        return Action(text=json.dumps({"question": _question_for(call)}))

    with FakeLlmServer(answer) as server:
        records, dead = _run(_records(), _settings(server, llm={"backend": "gemini", "project": "p"}))
    assert dead == [] and len(records) == len(QUERIES) and len(server.calls) == len(QUERIES)


def test_the_rules_backend_behind_the_contract_writes_what_describe_writes():
    settings = QuestionSettings(llm=LlmSettings(backend="rules"))
    records, _ = _run(_records(), settings)
    pipeline = make_pipeline()
    described = (pipeline | beam.Create(_records()) | NormalizeSql("postgres", "postgres")).records
    expected = sorted((r.id, r.question) for r in records)
    questions = (described | DescribeQuestions()).records | beam.Map(lambda r: (r.id, r.question))
    assert_that(questions, equal_to(expected))
    pipeline.run().wait_until_finish()


def test_segmented_context_rewrites_follow_ups_and_keeps_new_topics():
    def answer(call):
        if "latest message:\nand the first five of them?" in call.prompt:
            return Action(text=json.dumps({"changes_topic": False,
                                           "standalone_question": "Which 5 artists have the most albums?"}))
        return Action(text=json.dumps({"changes_topic": True, "standalone_question": "ignored"}))

    follow_up = new_record("SELECT name FROM artist LIMIT 5", "and the first five of them?", source="chat",
                           context=("User: Which artists have the most albums?", "Assistant: Here they are."))
    new_topic = new_record("SELECT COUNT(*) FROM track", "How many tracks are there?", source="chat",
                           context=("User: Which artists have the most albums?",))
    with FakeLlmServer(answer) as server:
        records, dead = _run([follow_up, new_topic], _settings(server, context="segmented"))
    by_sql = {r.sql: r for r in records}
    assert dead == []
    rewritten = by_sql["SELECT name FROM artist LIMIT 5"]
    assert (rewritten.question, rewritten.context) == ("Which 5 artists have the most albums?", ())
    assert rewritten.extra["original_question"] == "and the first five of them?"
    kept = by_sql["SELECT COUNT(*) FROM track"]
    assert (kept.question, kept.context, kept.extra["segment"]) == ("How many tracks are there?", (), "new_topic")
    assert "Which artists have the most albums?" in server.calls[0].prompt


@pytest.mark.parametrize("question,sql,problem", [
    ("How many tracks last over five minutes?", "SELECT COUNT(*) FROM track", None),
    ("Select the albums released by AC/DC.", "SELECT title FROM album", None),
    ("SELECT title FROM album", "SELECT title FROM album", "question_contains_sql"),
    ("What does `select * from album` return?", "SELECT * FROM album", "question_contains_sql"),
    ("Find tracks where t.milliseconds >= 300000", "SELECT * FROM track AS t", "question_contains_sql"),
    ("List title from album order by title", "SELECT title FROM album ORDER BY title", "question_contains_sql"),
    ("", "SELECT 1", "empty_question"),
    ("x" * 1001, "SELECT 1", "question_too_long"),
])
def test_question_filters(question, sql, problem):
    assert question_problem(question, sql) == problem


def test_sql_detection_does_not_flag_plain_english_with_sql_words():
    assert not contains_sql("Which customers from Canada placed orders, by order date?", "SELECT 1")
    assert not contains_sql("Show the top 5 albums by number of tracks.", "SELECT 1")


def test_the_chinook_postgres_dump_yields_every_table_with_its_keys():
    from transforms.sql.table_schema import tables_from_ddl

    path = require_shared_data("chinook", "Chinook_PostgreSql.sql")
    tables = tables_from_ddl([path.read_text(encoding="utf-8")], "postgres")
    assert len(tables) == 11
    track = {c.name: c for c in tables["track"].columns}
    assert track["track_id"].primary_key and track["track_id"].type == "INT"
    assert track["album_id"].references == "album.album_id"  # from ALTER TABLE ... ADD CONSTRAINT
