"""``--format dpo-reasoning``: ExCoT's reasoning-level DPO pairs from the ``--cot`` votes, on Chinook (SQLite).

The model is a local OpenAI-compatible server whose answers are fixed per question and
sample index (the request's ``seed``): for ``Q_MIXED`` two solutions give the gold result,
one runs and gives another result, one fails. So the kept trace, the losing traces and their
order (a wrong result before a failed query) are known before the run; ``Q_ALL``'s solutions
all agree with the gold, so it gives no row. The rows are checked in the JSONL set, then
loaded through the dataset card with Hugging Face ``datasets`` (offline), as
``tests/stages/publish/test_exports_load.py`` loads every other set.
"""

from __future__ import annotations

import json
import os
import re

os.environ["HF_DATASETS_OFFLINE"] = "1"  # never download anything, whatever the card says
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402 - after the offline switches, which it reads at import
import pytest  # noqa: E402
import yaml  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.fakes.llm_fake_server import Action, FakeLlmServer  # noqa: E402

from pipeline.main import main  # noqa: E402
from transforms.publish.cot import Solution, rejected_traces  # noqa: E402

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
N = 4

Q_MIXED = "How many tracks are longer than five minutes?"
Q_ALL = "How many artists are there?"
WRONG_SQL = "SELECT COUNT(*) FROM Track WHERE Milliseconds > 30000"
FAILING_SQL = "SELECT COUNT(*) FROM Track WHERE Length > 300"
#: question → (gold SQL, [(reasoning, SQL) for solutions 0..3])
CANNED = {
    Q_MIXED: ("SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000", [
        ("Five minutes is 300000 ms; count tracks above it.", "SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000"),
        ("Five minutes are 30000 milliseconds; count the longer tracks.", WRONG_SQL),  # runs, another result
        ("Tracks have a length column in seconds.", FAILING_SQL),  # no such column
        ("Count tracks over 300000 ms.", "SELECT COUNT(TrackId) FROM Track WHERE Milliseconds > 300000"),  # kept
    ]),
    Q_ALL: ("SELECT COUNT(*) FROM Artist", [
        ("Count every artist row.", "SELECT COUNT(*) FROM Artist"),
        ("Count artists.", "SELECT COUNT(ArtistId) FROM Artist"),
        ("Artists are rows of Artist.", "select count(*) from artist"),
        ("One id per artist; count them.", "SELECT COUNT(DISTINCT ArtistId) FROM Artist"),
    ]),
}
KEPT = "Count tracks over 300000 ms.\n\n```sql\nSELECT COUNT(trackid) FROM track WHERE milliseconds > 300000\n```"

datasets.disable_progress_bars()


def canned_answer(call) -> Action:
    question = re.search(r"Question: (.*)", call.prompt).group(1).strip()
    reasoning, sql = CANNED[question][1][call.body["seed"]]
    return Action(text=json.dumps({"reasoning": reasoning, "sql": sql}))


@pytest.fixture(scope="module")
def model():
    with FakeLlmServer(canned_answer) as server:
        yield server


def _run(directory, server, *extra: str) -> int:
    seeds = directory / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"question": q, "sql": gold}) + "\n" for q, (gold, _) in CANNED.items()))
    return main(["run", "--seed_pairs", str(seeds), "--database", DATABASE, "--output", str(directory / "p"),
                 "--cot", str(N), "--cot_llm", "openai", "--cot_llm_endpoint", server.url, "--llm_retries", "1",
                 "--html_report=false", *extra])


def _rows(directory, set_name: str) -> list[dict]:
    files = sorted((directory / "p-dataset" / "jsonl" / set_name).glob("train-*.jsonl"))
    assert files, set_name
    return [json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def two_per_pair(tmp_path_factory, model):
    """One job: dpo-reasoning (two losing traces per pair, Parquet copies too) beside the reasoning SFT sets."""
    directory = tmp_path_factory.mktemp("dpo_reasoning")
    before = len(model.calls)
    status = _run(directory, model, "--format", "dpo-reasoning,prompt-completion,sft-chat,parquet",
                  "--sft_target", "reasoning", "--cot_dpo_limit", "2")
    assert status == 0
    (directory / "calls").write_text(str(len(model.calls) - before))
    return directory


def test_a_verified_trace_is_chosen_over_the_wrong_result_then_the_failed_query(two_per_pair):
    rows = _rows(two_per_pair, "dpo-reasoning")
    assert sorted((row["meta"]["question"], row["meta"]["sample_index"], row["meta"]["neg_kind"]) for row in rows) == [
        (Q_MIXED, 1, "wrong_result"), (Q_MIXED, 2, "exec_error")]
    by_kind = {row["meta"]["neg_kind"]: row for row in rows}
    assert {row["chosen"] for row in rows} == {KEPT}
    assert by_kind["wrong_result"]["rejected"] == (
        "Five minutes are 30000 milliseconds; count the longer tracks.\n\n"
        "```sql\nSELECT COUNT(*) FROM track WHERE milliseconds > 30000\n```")
    assert by_kind["exec_error"]["rejected"].startswith("Tracks have a length column in seconds.\n\n```sql\n")
    assert "length" in by_kind["exec_error"]["meta"]["rejected_error"].lower()
    assert by_kind["wrong_result"]["meta"]["rejected_error"] == ""
    assert {row["meta"]["chosen_sample_index"] for row in rows} == {3}
    assert all(row["meta"]["cot_model"].startswith("openai:") for row in rows)
    assert len({row["id"] for row in rows}) == 2


def test_a_pair_whose_solutions_all_agree_gives_no_row(two_per_pair):
    assert Q_ALL not in {row["meta"]["question"] for row in _rows(two_per_pair, "dpo-reasoning")}
    pairs = _rows(two_per_pair, "pairs")
    assert {p["question"] for p in pairs} == {Q_MIXED, Q_ALL}  # both kept: the set only lacks a losing trace


def test_the_prompt_and_chosen_are_the_reasoning_sft_examples_of_the_same_pair(two_per_pair):
    examples = {row["id"]: row for row in _rows(two_per_pair, "prompt-completion")}
    for row in _rows(two_per_pair, "dpo-reasoning"):
        example = examples[row["meta"]["record_id"]]
        assert row["prompt"] == example["prompt"] and row["prompt"].endswith("### Answer\n")
        assert row["chosen"] == example["completion"]


def test_no_request_beyond_the_n_solutions_and_the_report_counts_the_set(two_per_pair):
    report = json.loads((two_per_pair / "p-report.json").read_text())
    assert int((two_per_pair / "calls").read_text()) == N * len(CANNED)  # the N solutions per pair, nothing more
    assert report["cot"]["dpo_rejected:wrong_result"] == 1 and report["cot"]["dpo_rejected:exec_error"] == 1
    assert report["exports"]["sets"]["dpo-reasoning"] == 2


def test_the_set_loads_with_datasets_through_the_card(two_per_pair, tmp_path):
    dataset = two_per_pair / "p-dataset"
    card = yaml.safe_load((dataset / "README.md").read_text(encoding="utf-8").split("---\n")[1])
    declared = {c["config_name"]: c["data_files"][0]["path"] for c in card["configs"]}
    assert declared["dpo-reasoning"] == "parquet/dpo-reasoning/train-?????-of-?????.parquet"
    loaded = datasets.load_dataset(str(dataset), "dpo-reasoning", split="train", cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == 2
    assert set(loaded.column_names) == {"id", "prompt", "chosen", "rejected", "meta"}
    assert {row["meta"]["neg_kind"] for row in loaded} == {"wrong_result", "exec_error"}
    jsonl = datasets.load_dataset("json", data_files=str(dataset / "jsonl" / "dpo-reasoning" / "train-*.jsonl"),
                                  split="train", cache_dir=str(tmp_path / "json"))
    assert sorted(jsonl["id"]) == sorted(loaded["id"])


def test_the_default_keeps_one_losing_trace_per_pair_the_wrong_result(tmp_path, model):
    assert _run(tmp_path, model, "--format", "dpo-reasoning") == 0
    rows = _rows(tmp_path, "dpo-reasoning")
    assert [(row["meta"]["neg_kind"], row["meta"]["sample_index"]) for row in rows] == [("wrong_result", 1)]
    pairs = {p["question"]: p for p in _rows(tmp_path, "pairs")}
    assert json.loads(pairs[Q_MIXED]["extra"]["cot_rejected"])["chosen"] == 3
    assert json.loads(pairs[Q_ALL]["extra"]["cot_rejected"])["traces"] == []


def test_without_dpo_reasoning_the_pairs_carry_no_losing_traces(tmp_path, model):
    assert _run(tmp_path, model) == 0
    assert all("cot_rejected" not in p["extra"] for p in _rows(tmp_path, "pairs"))
    assert not (tmp_path / "p-dataset" / "jsonl" / "dpo-reasoning").exists()


def test_dpo_reasoning_without_cot_is_a_usage_error(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": Q_ALL, "sql": CANNED[Q_ALL][0]}) + "\n")
    base = ["run", "--seed_pairs", str(seeds), "--database", DATABASE, "--output", str(tmp_path / "p")]
    assert main([*base, "--format", "dpo-reasoning"]) == 2
    assert "add --cot" in capsys.readouterr().err
    assert main([*base, "--cot_dpo_limit", "2"]) == 2
    assert "--cot" in capsys.readouterr().err


def test_losing_traces_are_chosen_by_kind_then_sample_index_without_repeats():
    solutions = [Solution(0, "guarded", "DELETE FROM t", invalid="unparseable", detail="not read-only"),
                 Solution(1, "slow", "q1", invalid="timeout", detail="canceled"),
                 Solution(2, "empty", "", invalid="no_reply"),
                 Solution(3, "other rows", "q3", "B"), Solution(4, "other rows", "q3", "B"),
                 Solution(5, "right", "q5", "G"), Solution(6, "broken", "q6", invalid="exec_error")]
    assert [(t["index"], t["kind"]) for t in rejected_traces(solutions, "G", 10)] == [
        (3, "wrong_result"), (6, "exec_error"), (1, "timeout"), (0, "unparseable")]
    assert rejected_traces(solutions[5:6], "G", 3) == []
