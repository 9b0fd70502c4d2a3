"""Paid work once per distinct validated unit (issue 15).

Questions are written after execute → filter → dedup: a model is asked ``--questions_per_sql``
times per distinct SQL that ran, never for SQL that failed or for a repeat that dedup merged;
``exact`` and ``question-only`` dedup still hold for the questions the job wrote; ``--context
segmented`` asks once per distinct chat turn that survived validation.
"""

from __future__ import annotations

import json

import pytest
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from pipeline.graph import build
from pipeline.arguments import options_parser
from pipeline.config import resolve
from pipeline.main import main
from transforms.label.questions import SEGMENT_CONTEXT

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
#: (SQL, times logged): four distinct queries that run, one that fails every time.
LOGGED = [("SELECT COUNT(*) FROM Artist", 4), ("SELECT COUNT(*) FROM Album", 3), ("SELECT Name FROM Genre", 2),
          ("SELECT Title FROM Album WHERE AlbumId = 1", 1), ("SELECT * FROM NoSuchTable", 3)]
DISTINCT_THAT_RUN = 4


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"sql": sql}) + "\n" for sql, times in LOGGED for _ in range(times)))
    return path


def _run(server, tmp_path, *extra: str) -> tuple[list[dict], dict]:
    out = tmp_path / "out"
    assert main(["run", "--database", DATABASE, "--timeout_s", "2", "--llm", "openai", "--llm_endpoint", server.url,
                 "--html_report=false", "--output", str(out), *extra]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "out-00000-of-00001.jsonl").read_text().splitlines()]
    report = json.loads((tmp_path / "out-report.json").read_text())
    assert report["ok"], report["accounting"]
    return pairs, report


def test_the_model_is_asked_k_times_per_distinct_sql_that_ran(log, tmp_path):
    with FakeLlmServer() as server:
        pairs, report = _run(server, tmp_path, "--sql_logs", str(log), "--questions_per_sql", "2")
        prompts = [call.prompt.lower() for call in server.calls]
    assert len(prompts) == 2 * DISTINCT_THAT_RUN
    assert not [p for p in prompts if "nosuchtable" in p]  # failed SQL costs no request
    assert len(pairs) == DISTINCT_THAT_RUN and {p["question_source"] for p in pairs} == {"llm"}
    questions = report["llm"]["stages"]["questions"]
    assert questions["records"] == DISTINCT_THAT_RUN
    assert questions["requests"] <= 2 * questions["records"]  # retries and repairs are counted apart
    assert questions["requests_per_record"] == 2.0
    funnel = [row["stage"] for row in report["stages"]]
    assert funnel.index("execute") < funnel.index("dedup") < funnel.index("describe")


def test_question_only_dedup_still_merges_the_questions_the_job_wrote(log, tmp_path):
    with FakeLlmServer(lambda call: Action(text=json.dumps({"question": "Which rows are there?"}))) as server:
        pairs, report = _run(server, tmp_path, "--sql_logs", str(log), "--dedup", "question-only")
        assert len(server.calls) == DISTINCT_THAT_RUN
    (pair,) = pairs
    assert pair["question"] == "Which rows are there?"
    assert pair["duplicates"] == sum(times for sql, times in LOGGED if "NoSuch" not in sql) - 1
    merge = next(row for row in report["stages"] if row["stage"] == "merge")
    assert merge["merged"] == DISTINCT_THAT_RUN - 1


def test_exact_dedup_merges_a_written_question_into_the_given_one(log, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": "How many artists are there?", "sql": "SELECT COUNT(*) FROM Artist"}))
    with FakeLlmServer(lambda call: Action(text=json.dumps({"question": "How many artists are there ?"}))) as server:
        pairs, _ = _run(server, tmp_path, "--sql_logs", str(log), "--seed_pairs", str(seeds), "--dedup", "exact")
        asked = [call.prompt for call in server.calls]
    artists = [p for p in pairs if p["sql"] == "SELECT COUNT(*) FROM Artist"]
    assert [(p["question"], p["question_source"], p["duplicates"]) for p in artists] == [
        ("How many artists are there?", "given", 4)]  # the 4 logged copies: one question written, then merged
    assert len(asked) == DISTINCT_THAT_RUN


def _turn(i: int, question: str, sql: str) -> list[dict]:
    return [{"id": f"u{i}", "role": "user", "parts": [{"type": "text", "text": question}]},
            {"id": f"a{i}", "role": "assistant", "parts": [
                {"type": "text", "text": f"Answer {i}."},
                {"type": "tool-db_query", "toolCallId": f"c{i}", "state": "output-available", "input": {"sql": sql},
                 "output": [[i]]}]}]


def test_segmenting_asks_once_per_distinct_chat_turn_that_ran(tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([
        *_turn(0, "How many artists are there?", "SELECT COUNT(*) FROM Artist"),  # first turn: nothing to segment
        *_turn(1, "And albums?", "SELECT COUNT(*) FROM Album"),
        *_turn(2, "And the missing table?", "SELECT * FROM NoSuchTable"),  # fails: never sent to the model
        *_turn(3, "Albums again?", "SELECT COUNT(*) FROM Album"),  # a repeat: merged, never sent
    ]))
    values, _ = options_parser("test").parse_known_args(
        ["--chat_history", str(chat), "--database", DATABASE, "--timeout_s", "2", "--context", "segmented",
         "--llm", "openai", "--llm_endpoint", "http://127.0.0.1:9", "--output", str(tmp_path / "out"),
         "--html_report=false"])
    with FakeLlmServer() as server:
        config = resolve(values)
        config = config._replace(read=config.read._replace(context=SEGMENT_CONTEXT), questions=config.questions._replace(
            llm=config.questions.llm._replace(endpoint=server.url)))
        with make_pipeline() as p:
            build(p, config)
        prompts = [call.prompt for call in server.calls]
    assert len(prompts) == 1 and "standalone_question" in prompts[0]
