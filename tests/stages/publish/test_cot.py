"""``--cot N``: execution-voted chain of thought, against a local OpenAI-compatible server on Chinook (SQLite).

The model is the fake server; for each question it answers solution i (the request's
``seed``) with a fixed reasoning and SQL, so the vote of every pair is known in advance. The
expected verdicts, vote counts, solve rates and levels below are worked out by hand from
that table — never computed by the code under test.
"""

from __future__ import annotations

import json
import re

import apache_beam as beam
import pytest
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer
from tests.stages.generate.test_evolve import validated

from adapters.llm import LlmSettings
from pipeline.main import main
from transforms.publish.cot import CotSettings, ExecutionVotedCot, Solution, decide
from transforms.publish.exec_difficulty import exec_difficulty
from transforms.publish.exports import SchemaSource

CHINOOK = REPO / "examples" / "chinook.sqlite"
DATABASE = f"sqlite:///{CHINOOK}"
NOT_JSON = object()
N = 5

Q_ALL = "How many artists are there?"
Q_MOST = "List the titles of albums by AC/DC."
Q_SPLIT = "How many invoices were billed to Germany?"
Q_FEW = "What are the names of all genres?"
GERMANY_WRONG = "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'France'"
#: question → (gold SQL, [(reasoning, SQL) for solutions 0..4])
CANNED = {
    Q_ALL: ("SELECT COUNT(*) FROM Artist", [
        ("Count every row of the artist table, one row per artist.", "SELECT COUNT(*) FROM Artist"),
        ("Count artists.", "SELECT COUNT(ArtistId) FROM Artist"),  # the shortest trace
        ("Artists are rows of Artist; count them all.", "select count(*) from artist"),
        ("Each artist has one id; count the distinct ids.", "SELECT COUNT(DISTINCT ArtistId) FROM Artist"),
        ("The artist table lists artists; COUNT(*) gives how many.", "SELECT COUNT(*) FROM Artist"),
    ]),
    Q_MOST: ("SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'", [
        ("Join album to artist and keep AC/DC.",
         "SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'"),
        ("Find AC/DC's id, then its albums.",
         "SELECT Title FROM Album WHERE ArtistId = (SELECT ArtistId FROM Artist WHERE Name = 'AC/DC')"),
        ("AC/DC is artist 1.", "SELECT Title FROM Album WHERE ArtistId = 1"),
        ("Artist 2 is AC/DC.", "SELECT Title FROM Album WHERE ArtistId = 2"),  # wrong rows
        ("Albums have an artist name column.", "SELECT Title FROM Album WHERE ArtistName = 'AC/DC'"),  # error
    ]),
    Q_SPLIT: ("SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'", [
        ("Count invoices billed to Germany.", "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'"),
        ("Count German invoices.", "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'"),
        ("Count invoices billed in the neighbouring country.", GERMANY_WRONG),
        ("Read 'Germany' as France, as the sales team does.", GERMANY_WRONG),
        ("Invoices to France, the team's name for this region.", GERMANY_WRONG),
    ]),
    Q_FEW: ("SELECT Name FROM Genre", [
        ("Every genre's name.", "SELECT Name FROM Genre"),
        ("Genres have a title column.", "SELECT Title FROM Genre"),  # exec_error
        ("Clear the genres first.", "DELETE FROM Genre"),  # refused by the guard
        (NOT_JSON, None),  # no usable reply, not even after the repair request
        ("Write the names down.", "SELECT 'Rock'"),  # runs: one valid vote
    ]),
}


def canned_answer(call) -> Action:
    question = re.search(r"Question: (.*)", call.prompt).group(1).strip()
    reasoning, sql = CANNED[question][1][call.body["seed"]]
    if reasoning is NOT_JSON:
        return Action(text="Let me think about genres for a while.")
    return Action(text=json.dumps({"reasoning": reasoning, "sql": sql}))


@pytest.fixture(scope="module")
def model():
    with FakeLlmServer(canned_answer) as server:
        yield server


def _settings(server, min_valid: int = 3) -> CotSettings:
    llm = LlmSettings(backend="openai", endpoint=server.url, retries=1, backoff_s=0.01, backoff_max_s=0.05,
                      timeout_s=5, max_in_flight=4, temperature=0.8)
    return CotSettings(llm=llm, database=DATABASE, samples=N, min_valid=min_valid,
                       database_settings={"timeout_s": 2.0, "max_rows": 1000}, max_connections=4,
                       schema=SchemaSource(dialect="sqlite", database=DATABASE))


@pytest.fixture(scope="module")
def voted(model):
    """One pipeline run of the stage over the four pairs: kept records, dead letters, notes, metrics."""
    pipeline = make_pipeline()
    pairs = pipeline | beam.Create([validated(q, gold) for q, (gold, _) in CANNED.items()])
    out = pairs | ExecutionVotedCot(_settings(model))
    found = collect(pipeline, records=out.records, dead=out.dead, notes=out.notes)
    calls = list(model.calls)
    return found, calls


# -- the vote (pure) ---------------------------------------------------------------------------


def test_the_gold_needs_strictly_more_votes_than_any_other_result():
    def solutions(*keys):
        return [Solution(i, f"r{i}", f"q{i}", key) for i, key in enumerate(keys)]

    assert decide(solutions("G", "G", "B"), "G", 3).reason is None
    assert decide(solutions("G", "G", "B", "C"), "G", 3).reason is None  # the most votes, not half of them
    assert decide(solutions("G", "B", "C"), "G", 3).reason == "majority_disagrees"  # every result tied
    assert decide(solutions("G", "G", "B", "B"), "G", 3).reason == "majority_disagrees"  # a tie is none
    assert decide(solutions("B", "B", "G"), "G", 3).reason == "majority_disagrees"
    assert decide(solutions("G", "G"), "G", 3).reason == "too_few_valid"


def test_the_shortest_trace_that_gave_the_gold_result_is_kept_ties_to_the_first():
    solutions = [Solution(0, "a longer trace", "q0", "G"), Solution(1, "short", "q1", "B"),
                 Solution(2, "tiny!", "q2", "G"), Solution(3, "tiny?", "q3", "G")]
    assert decide(solutions, "G", 1).chosen.index == 2


def test_execution_levels_follow_dataflows_thresholds_out_of_ten():
    # SQLExecutionClassifier: thresholds [2, 5, 9] on solved of 10 → extra, hard, medium, else easy
    assert [exec_difficulty(k, 10) for k in range(11)] == (
        ["extra"] * 3 + ["hard"] * 3 + ["medium"] * 4 + ["easy"])
    # other N: the same cut points on the rate (0.2, 0.5, 0.9)
    assert [exec_difficulty(k, 5) for k in range(6)] == ["extra", "extra", "hard", "medium", "medium", "easy"]


# -- the stage, against the local server ---------------------------------------------------------


def test_a_pair_whose_solutions_all_return_the_gold_result_is_kept_with_the_shortest_reasoning(voted):
    found, _ = voted
    kept = {r.question: r for r in found["records"]}
    assert set(kept) == {Q_ALL, Q_MOST}
    record = kept[Q_ALL]
    assert record.reasoning == "Count artists."
    assert record.extra["cot_sql"] == "SELECT COUNT(artistid) FROM artist"
    table = json.loads(record.extra["cot"])
    assert (table["n"], table["valid"], table["solved"], table["invalid"]) == (5, 5, 5, {})
    assert table["votes"] == {table["gold"]: 5}
    assert (record.extra["solve_rate"], record.extra["exec_difficulty"]) == ("1.0", "easy")
    assert record.extra["cot_model"] == "openai:gpt-4o-mini"


def test_a_pair_whose_majority_gives_the_gold_result_is_kept_despite_wrong_and_failed_solutions(voted):
    found, _ = voted
    [record] = [r for r in found["records"] if r.question == Q_MOST]
    table = json.loads(record.extra["cot"])
    # 0, 1, 2 give AC/DC's albums; 3 another artist's; 4 fails (no such column)
    assert (table["valid"], table["solved"], table["invalid"]) == (4, 3, {"exec_error": 1})
    assert sorted(table["votes"].values()) == [1, 3] and table["votes"][table["gold"]] == 3
    assert record.reasoning == "AC/DC is artist 1."
    assert (record.extra["solve_rate"], record.extra["exec_difficulty"]) == ("0.6", "medium")


def test_a_pair_whose_majority_disagrees_is_a_dead_letter_with_the_vote_table(voted):
    found, _ = voted
    [letter] = [d for d in found["dead"] if d.record.question == Q_SPLIT]
    assert (letter.stage, letter.reason) == ("cot", "majority_disagrees")
    table = json.loads(letter.record.extra["cot"])
    assert table["votes"][table["gold"]] == 2 and sorted(table["votes"].values()) == [2, 3]
    assert f"gold result {table['gold']} got 2 of 5 valid votes" in letter.detail
    assert re.search(r"votes: [0-9a-f]{12}=3, [0-9a-f]{12}=2", letter.detail)
    assert letter.record.reasoning is None
    assert (letter.record.extra["solve_rate"], letter.record.extra["exec_difficulty"]) == ("0.4", "hard")


def test_a_pair_with_too_few_solutions_that_ran_is_a_dead_letter(voted):
    found, _ = voted
    [letter] = [d for d in found["dead"] if d.record.question == Q_FEW]
    assert (letter.stage, letter.reason) == ("cot", "too_few_valid")
    table = json.loads(letter.record.extra["cot"])
    # 0 right; 1 fails; 2 refused; 3 no reply; 4 runs, but its rows are not the gold's
    assert (table["valid"], table["solved"]) == (2, 1)
    assert table["invalid"] == {"no_reply": 1, "unparseable": 1, "exec_error": 1}
    assert len(found["dead"]) == 2


def test_every_pair_costs_n_requests_and_the_model_never_sees_the_gold_sql(voted):
    found, calls = voted
    # N per pair, plus the one repair request of the reply that was not JSON
    assert len(calls) == len(CANNED) * N + 1
    assert sorted(c.body["seed"] for c in calls if "Question: " + Q_ALL in c.prompt) == list(range(N))
    assert all(c.body["temperature"] == 0.8 for c in calls)
    for call in calls:
        for gold, _ in CANNED.values():
            assert gold not in call.prompt
    assert any("create table artist" in c.prompt.lower() for c in calls)
    counters = {c.key.metric.name: c.committed for c in found["_result"].metrics().query()["counters"]}
    assert counters["llm.cot.requests"] == len(CANNED) * N + 1 and counters["llm.cot.records"] == len(CANNED)
    notes = found["notes"]
    assert notes.count("note:cot:solutions:ran") == 5 + 4 + 5 + 2
    levels = sorted(n.rsplit("/", 1)[1] for n in notes if n.startswith("note:cot:difficulty_vs_exec:"))
    assert levels == ["easy", "extra", "hard", "medium"]  # 5/5, 1/5, 2/5, 3/5 solved


# -- the job ---------------------------------------------------------------------------------------


def _seed_file(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"question": q, "sql": gold}) + "\n" for q, (gold, _) in CANNED.items()))
    return path


def test_the_job_keeps_reasoned_pairs_exports_them_as_reasoning_and_stages_them(tmp_path, model):
    output = tmp_path / "out" / "pairs"
    status = main(["run", "--seed_pairs", str(_seed_file(tmp_path)), "--database", DATABASE, "--output", str(output),
                   "--cot", str(N), "--cot_llm", "openai", "--cot_llm_endpoint", model.url,
                   "--format", "sft-chat,prompt-completion", "--sft_target", "reasoning",
                   "--stage_by", "exec_difficulty"])
    assert status == 0
    pairs = [json.loads(line) for line in (tmp_path / "out" / "pairs-00000-of-00001.jsonl").read_text().splitlines()]
    assert {p["question"]: p["reasoning"] for p in pairs} == {Q_ALL: "Count artists.", Q_MOST: "AC/DC is artist 1."}
    rejects = [json.loads(line) for line in
               (tmp_path / "out" / "pairs-rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert sorted((r["stage"], r["reason"]) for r in rejects) == [("cot", "majority_disagrees"),
                                                                  ("cot", "too_few_valid")]
    report = json.loads((tmp_path / "out" / "pairs-report.json").read_text())
    assert report["ok"] and report["rejections"]["cot"] == {"majority_disagrees": 1, "too_few_valid": 1}
    assert [row for row in report["stages"] if row["stage"] == "cot"] == [
        {"stage": "cot", "in": 4, "out": 2, "rejected": 2}]
    assert report["cot"]["solutions:ran"] == 16
    # --llm rules with a --cot_llm model: the report still meters the --cot model's requests
    metered = report["llm"]["stages"]["cot"]
    assert metered["requests"] - metered["repairs"] == 4 * N and metered["records"] == 4
    dataset = tmp_path / "out" / "pairs-dataset" / "jsonl"
    chat = [json.loads(line) for line in (dataset / "sft-chat" / "train-00000-of-00001.jsonl").read_text().splitlines()]
    answers = {row["messages"][1]["content"]: row["messages"][2]["content"] for row in chat}
    assert answers[Q_ALL] == "Count artists.\n\n```sql\nSELECT COUNT(artistid) FROM artist\n```"
    assert all("step by step" in row["messages"][0]["content"] for row in chat)
    completion = [json.loads(line) for line in
                  (dataset / "prompt-completion" / "train-00000-of-00001.jsonl").read_text().splitlines()]
    assert all(row["prompt"].endswith("### Answer\n") for row in completion)
    staged = {level: (dataset / f"sft-chat-{level}" / "train-00000-of-00001.jsonl").read_text().splitlines()
              for level in ("easy", "medium")}
    assert [json.loads(line)["meta"]["exec_difficulty"] for line in staged["easy"]] == ["easy"]
    assert [json.loads(line)["meta"]["exec_difficulty"] for line in staged["medium"]] == ["medium"]


def test_cot_options_that_cannot_work_are_usage_errors(tmp_path, capsys):
    seeds = str(_seed_file(tmp_path))
    base = ["run", "--seed_pairs", seeds, "--output", str(tmp_path / "p")]
    model_options = ["--cot_llm", "openai", "--cot_llm_endpoint", "http://127.0.0.1:9"]
    assert main([*base, "--cot", "3", *model_options]) == 2
    assert "--database" in capsys.readouterr().err
    assert main([*base, "--database", DATABASE, "--cot", "2", *model_options]) == 2
    assert "--cot_min_valid 3" in capsys.readouterr().err
    assert main([*base, "--database", DATABASE, "--cot", "4"]) == 2
    assert "--cot needs a model" in capsys.readouterr().err
    assert main([*base, "--database", DATABASE, "--format", "sft-chat", "--sft_target", "reasoning"]) == 2
    assert "add --cot" in capsys.readouterr().err
    assert main([*base, "--database", DATABASE, "--cot", "4", *model_options, "--sft_target", "reasoning"]) == 2
    assert "--format" in capsys.readouterr().err
    assert main([*base, "--database", DATABASE, "--stage_by", "exec_difficulty"]) == 2
    assert "add --cot" in capsys.readouterr().err
