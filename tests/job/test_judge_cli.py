"""``sqlpairs run --judge --judge_min 3 --evidence`` end to end against a local model server.

The server writes the questions, judges (alignment 1 for every pair whose SQL counts, 4s
otherwise) and writes evidence for pairs about track lengths. Checked: below-minimum pairs
are dead letters, kept pairs carry their scores, evidence reaches the pairs and the exported
prompts (none where none was written), each stage costs one request per pair it saw, the
report balances, and a re-run with ``--llm_cache`` makes no call and writes the same bytes.
"""

from __future__ import annotations

import json
import re

import pytest
from tests.conftest import REPO
from tests.fakes.llm_fake_server import Action, FakeLlmServer, default_answer

from pipeline.main import main

LOGS = str(REPO / "examples" / "chinook_queries.sql")
DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
EVIDENCE = "long tracks refers to Milliseconds > 300000"


def model(call) -> Action:
    prompt = call.prompt
    if prompt.startswith("Grade this question/SQL pair"):
        sql = re.search(r"\nSQL:\n(.*?)\n\n", prompt, re.DOTALL).group(1).lower()
        alignment = 1 if "count(" in sql else 4
        return Action(text=json.dumps({"fluency": 4, "alignment": alignment, "schema_use": 4,
                                       "reason": "counts what the question does not ask" if alignment < 3 else ""}))
    if "Write the evidence this question needs" in prompt:
        sql = re.search(r"SQL that answers it:\n(.*?)\n\n", prompt, re.DOTALL).group(1).lower()
        return Action(text=json.dumps({"evidence": EVIDENCE if "milliseconds" in sql else ""}))
    return default_answer(call)


def _run(server, out, cache) -> None:
    args = ["run", "--sql_logs", LOGS, "--database", DATABASE, "--timeout_s", "2",
            "--llm", "openai", "--llm_endpoint", server.url, "--llm_cache", str(cache),
            "--judge", "--judge_min", "3", "--evidence", "--format", "prompt-completion,sft-chat",
            "--output", str(out)]
    assert main(args) == 0


def _lines(pattern) -> list[dict]:
    files = sorted(pattern.parent.glob(pattern.name))
    assert files, pattern
    return [json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    with FakeLlmServer(model) as server:
        _run(server, root / "first", root / "cache")
        first_calls = len(server.calls)
        _run(server, root / "second", root / "cache")
        second_calls = len(server.calls) - first_calls
    return root, first_calls, second_calls


def test_pairs_under_judge_min_are_dead_letters_and_kept_pairs_carry_their_scores(judged_run):
    root = judged_run[0]
    pairs = _lines(root / "first-0*.jsonl")
    dead = [d for d in _lines(root / "first-rejects-0*.jsonl") if d["stage"] == "judge"]
    assert pairs and dead
    assert all(json.loads(p["extra"]["judge"]) == {"alignment": 4, "fluency": 4, "schema_use": 4} for p in pairs)
    assert all("count(" not in p["normalized_sql"].lower() for p in pairs)
    assert {d["reason"] for d in dead} == {"below_min"}
    assert all("count(" in d["record"]["normalized_sql"].lower() and "alignment 1" in d["detail"] for d in dead)


def test_evidence_reaches_the_pairs_and_every_exported_prompt_and_none_renders_nothing(judged_run):
    root = judged_run[0]
    pairs = {p["id"]: p for p in _lines(root / "first-0*.jsonl")}
    with_evidence = {i for i, p in pairs.items() if p["evidence"]}
    assert with_evidence and {pairs[i]["evidence"] for i in with_evidence} == {EVIDENCE}
    assert all("milliseconds" in pairs[i]["normalized_sql"].lower() for i in with_evidence)
    completions = _lines(root / "first-dataset/jsonl/prompt-completion/train-*.jsonl")
    chats = _lines(root / "first-dataset/jsonl/sft-chat/train-*.jsonl")
    assert {row["id"] for row in completions} == set(pairs) == {row["id"] for row in chats}
    for row in completions:
        assert (f"### Evidence\n{EVIDENCE}" in row["prompt"]) == (row["id"] in with_evidence)
        assert ("Evidence" in row["prompt"]) == (row["id"] in with_evidence)
    for row in chats:
        user = row["messages"][1]["content"]
        assert (f"Evidence: {EVIDENCE}" in user) == (row["id"] in with_evidence)


def test_the_report_counts_one_request_per_pair_for_each_stage_and_balances(judged_run):
    root = judged_run[0]
    report = json.loads((root / "first-report.json").read_text())
    assert report["ok"]
    stages = {row["stage"]: row for row in report["stages"]}
    judged, evidenced = stages["judge"], stages["evidence"]
    assert judged["in"] == judged["out"] + judged["rejected"] and judged["rejected"] > 0
    assert evidenced["in"] == judged["out"] == evidenced["out"]  # the judge's survivors only
    llm = report["llm"]["stages"]
    assert llm["judge"]["requests"] == llm["judge"]["records"] == judged["in"]
    assert llm["evidence"]["requests"] == llm["evidence"]["records"] == evidenced["in"]
    assert report["rejections"]["judge"] == {"below_min": judged["rejected"]}
    assert sum(v for k, v in report["judge"].items() if k.startswith("lowest:")) == judged["in"]
    assert report["evidence"]["written"] + report["evidence"].get("none", 0) == evidenced["out"]


def test_a_rerun_with_the_cache_makes_no_call_and_writes_the_same_pairs(judged_run):
    root, first_calls, second_calls = judged_run
    assert first_calls > 0 and second_calls == 0
    assert _lines(root / "second-0*.jsonl") == _lines(root / "first-0*.jsonl")
