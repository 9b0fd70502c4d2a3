"""``sqlpairs run --cot 3 --llm_cache DIR`` end to end against a local model server, run twice.

The server writes the questions (remembering which gold SQL each question was written for) and
answers every ``--cot`` solution from a plan fixed by the gold SQL's hash, so every pair's vote
is known in advance without reading the code under test:

* ``all``: the 3 solutions are the gold SQL: kept, solve rate 1.0, ``easy``;
* ``most``: solutions 0 and 1 the gold, 2 a literal (another result): kept, 2 of 3, ``medium``,
  and one reasoning-level DPO pair (chosen solution 0, rejected solution 2);
* ``few``: solution 0 the gold, 1 and 2 the literal: the literal has the majority, so a dead
  letter ``majority_disagrees``.

Checked: each pair reaching the stage costs 3 requests, the kept pairs carry their solve rate and
level, the report balances, and a re-run with ``--llm_cache`` makes no call and writes the same
bytes (the pairs, the dead letters and the ``dpo-reasoning`` set).
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from tests.conftest import REPO
from tests.fakes.llm_fake_server import COT_PROMPT, Action, FakeLlmServer, default_answer, default_question

from pipeline.main import main

LOGS = str(REPO / "examples" / "chinook_queries.sql")
DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
N = 3
#: Another result than any gold's: a literal, from no table (never counted as the gold's result).
WRONG = "SELECT 'not the answer'"
PLANS = ("all", "most", "few")
#: plan → (the SQL of solutions 0..2 as gold / wrong, expected (solve_rate, exec_difficulty) when kept)
SOLUTIONS = {"all": ("gold", "gold", "gold"), "most": ("gold", "gold", "wrong"), "few": ("gold", "wrong", "wrong")}
KEPT = {"all": ("1.0", "easy"), "most": ("0.6667", "medium")}


def plan_of(gold_sql: str) -> str:
    return PLANS[int(hashlib.sha256(gold_sql.encode()).hexdigest(), 16) % len(PLANS)]


class Model:
    """The fake model: questions as ``default_answer`` writes them, and the ``--cot`` solutions by plan."""

    def __init__(self):
        self.gold = {}  # question → the SQL it was written for

    def __call__(self, call) -> Action:
        prompt = call.prompt
        if prompt.startswith(COT_PROMPT):
            question = re.search(r"^Question: (.*)$", prompt, re.MULTILINE).group(1).strip()
            gold = self.gold[question]
            which = SOLUTIONS[plan_of(gold)][call.body["seed"]]
            return Action(text=json.dumps({"reasoning": f"Solution {call.body['seed']}: {which}.",
                                           "sql": gold if which == "gold" else WRONG}))
        found = re.search(r"\nSQL query:\n(.*?)\n\nThe question must", prompt, re.DOTALL)
        if found:
            self.gold[default_question(prompt)] = found.group(1).strip()
        return default_answer(call)


def _run(server, out, cache) -> None:
    args = ["run", "--sql_logs", LOGS, "--database", DATABASE, "--timeout_s", "2",
            "--llm", "openai", "--llm_endpoint", server.url, "--llm_cache", str(cache),
            "--cot", str(N), "--format", "pairs,dpo-reasoning", "--output", str(out)]
    assert main(args) == 0


def _files(root, pattern) -> list:
    files = sorted(root.glob(pattern))
    assert files, pattern
    return files


def _lines(root, pattern) -> list[dict]:
    return [json.loads(line) for path in _files(root, pattern) for line in path.read_text(encoding="utf-8").splitlines()]


def _cot_calls(calls) -> list:
    return [c for c in calls if c.prompt.startswith(COT_PROMPT)]


@pytest.fixture(scope="module")
def cot_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cot")
    model = Model()
    with FakeLlmServer(model) as server:
        _run(server, root / "first", root / "cache")
        first = list(server.calls)
        _run(server, root / "second", root / "cache")
        second = server.calls[len(first):]
    return root, model, first, second


def test_each_pair_reaching_the_stage_costs_n_requests_and_the_report_balances(cot_runs):
    root, model, first, _ = cot_runs
    report = json.loads((root / "first-report.json").read_text())
    assert report["ok"] and not report["accounting"]["problems"]
    accounting = report["accounting"]
    assert accounting["records_read"] + accounting.get("records_added", 0) == (
        accounting["pairs_written"] + accounting["dead_letters"] + accounting["merged_duplicates"])
    cot = next(row for row in report["stages"] if row["stage"] == "cot")
    assert cot["in"] == cot["out"] + cot["rejected"] and cot["out"] == accounting["pairs_written"]
    cot_calls = _cot_calls(first)
    asked = {re.search(r"^Question: (.*)$", c.prompt, re.MULTILINE).group(1).strip() for c in cot_calls}
    assert len(cot_calls) == N * cot["in"] == N * len(asked)  # N per pair reaching --cot, none twice
    assert sorted(c.body["seed"] for c in cot_calls) == sorted(list(range(N)) * cot["in"])
    metered = report["llm"]["stages"]["cot"]
    assert metered["requests"] == metered["calls"] == N * cot["in"] and metered["records"] == cot["in"]
    assert metered["cache_hits"] == 0  # a fresh cache
    assert metered["throttled_s"] == 0  # a healthy server: no request waited (Beam's per-batch throttle is off)
    plans = [plan_of(model.gold[q]) for q in asked]
    assert set(plans) == set(PLANS)  # every plan is exercised
    assert report["rejections"]["cot"] == {"majority_disagrees": plans.count("few")}
    assert cot["rejected"] == plans.count("few")


def test_kept_pairs_carry_their_solve_rate_and_the_outvoted_are_dead_letters(cot_runs):
    root, model, _, _ = cot_runs
    pairs = _lines(root, "first-0*.jsonl")
    assert pairs
    for pair in pairs:
        plan = plan_of(model.gold[pair["question"]])
        assert (pair["extra"]["solve_rate"], pair["extra"]["exec_difficulty"]) == KEPT[plan]
        assert pair["reasoning"] == "Solution 0: gold."  # every trace as long; ties go to the first
    dead = [d for d in _lines(root, "first-rejects-0*.jsonl") if d["stage"] == "cot"]
    assert dead and {plan_of(model.gold[d["record"]["question"]]) for d in dead} == {"few"}
    assert {d["reason"] for d in dead} == {"majority_disagrees"}
    reasoning = _lines(root, "first-dataset/jsonl/dpo-reasoning/train-*.jsonl")
    most = {p["id"] for p in pairs if plan_of(model.gold[p["question"]]) == "most"}
    assert sorted(row["meta"]["record_id"] for row in reasoning) == sorted(most)
    assert all("Solution 2: wrong." in row["rejected"] and WRONG in row["rejected"] for row in reasoning)


def test_a_rerun_with_the_cache_makes_no_call_and_writes_the_same_bytes(cot_runs):
    root, _, first, second = cot_runs
    assert _cot_calls(first) and second == []
    metered = json.loads((root / "second-report.json").read_text())["llm"]["stages"]["cot"]
    assert (metered["calls"], metered["cache_hits"]) == (0, N * metered["records"]) and metered["records"] > 0
    for pattern in ("{}-0*.jsonl", "{}-rejects-0*.jsonl", "{}-dataset/jsonl/pairs/train-*.jsonl",
                    "{}-dataset/jsonl/dpo-reasoning/train-*.jsonl"):
        once, again = _files(root, pattern.format("first")), _files(root, pattern.format("second"))
        assert [p.name.replace("first", "") for p in once] == [p.name.replace("second", "") for p in again]
        for a, b in zip(once, again):
            assert a.read_bytes() == b.read_bytes(), a.name
