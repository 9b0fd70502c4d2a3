"""``sqlpairs run --llm ...`` end to end against a local model server: questions, report, cost, cache."""

from __future__ import annotations

import json

import pytest
from tests.conftest import REPO
from tests.fakes.llm_fake_server import FakeLlmServer

from pipeline.main import main

LOGS = str(REPO / "examples" / "chinook_queries.sql")
DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"


def _run(server, out, *extra: str) -> None:
    args = ["run", "--sql_logs", LOGS, "--database", DATABASE, "--timeout_s", "1",
            "--llm", "openai", "--llm_endpoint", server.url, "--llm_max_in_flight", "8",
            "--llm_price_in", "0.5", "--llm_price_out", "2", "--output", str(out), *extra]
    assert main(args) == 0


def _pairs(prefix) -> str:
    with open(f"{prefix}-00000-of-00001.jsonl", encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    with FakeLlmServer() as server:
        _run(server, root / "first", "--llm_cache", str(root / "cache"))
        first_calls = len(server.calls)
        _run(server, root / "second", "--llm_cache", str(root / "cache"))
        second_calls = len(server.calls) - first_calls
    return root, first_calls, second_calls


def test_logged_sql_gets_model_questions_and_the_report_balances(llm_run):
    root, _, _ = llm_run
    pairs = [json.loads(line) for line in _pairs(root / "first").splitlines()]
    report = json.loads((root / "first-report.json").read_text())
    assert report["ok"] and pairs
    assert {p["question_source"] for p in pairs} == {"llm"}
    assert report["accounting"]["pairs_written"] == len(pairs)


def test_the_report_has_token_use_and_the_cost_estimate(llm_run):
    root, first_calls, _ = llm_run
    usage = json.loads((root / "first-report.json").read_text())["llm"]
    total = usage["total"]
    assert usage["backend"] == "openai" and total["calls"] == first_calls > 0
    assert total["prompt_tokens"] > 0 and total["completion_tokens"] > 0
    expected = (total["prompt_tokens"] * 0.5 + total["completion_tokens"] * 2) / 1_000_000
    assert total["estimated_cost_usd"] == pytest.approx(expected)
    assert set(usage["stages"]) == {"questions"}


def test_a_rerun_with_the_cache_makes_zero_calls_and_writes_identical_pairs(llm_run):
    root, _, second_calls = llm_run
    assert second_calls == 0
    assert _pairs(root / "second") == _pairs(root / "first")
    usage = json.loads((root / "second-report.json").read_text())["llm"]["total"]
    assert usage["calls"] == 0 and usage["cache_hits"] == usage["requests"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--llm", "gemini"], "--llm_project"),
    (["--llm", "openai"], "--llm_endpoint"),
    (["--llm", "openai", "--llm_api_key_env", "SQLPAIRS_TEST_UNSET_KEY"], "that variable is not set"),
    (["--chat_history", str(REPO / "examples" / "chat_history.json"), "--context", "segmented"], "needs a model"),
    (["--question_styles", "poetic", "--llm", "openai", "--llm_endpoint", "http://127.0.0.1:9"], "poetic"),
])
def test_unworkable_llm_options_are_one_line_user_errors(extra, message, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SQLPAIRS_TEST_UNSET_KEY", raising=False)
    assert main(["run", "--sql_logs", LOGS, *extra, "--output", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sqlpairs: error:") and message in lines[0]
