"""--decontaminate end to end: a log holding the SQL of Defog sql-eval items, checked against some of
those items, loses exactly those pairs (and a pair copying a benchmark question), each dead letter
naming its item; the funnel still adds up."""

import csv
import json

import pytest

from pipeline.main import main
from tests.conftest import require_shared_data
from transforms.sql.benchmark_index import read_benchmark
from transforms.formats.defog import expand_alternatives
from transforms.sql.normalize import normalize_sql

#: The first BENCHMARK_ROWS academic rows are the benchmark; the log holds every academic row's query.
BENCHMARK_ROWS = 10
COPIED_QUESTION_SUFFIX = " Answer with author ids only."


def _lines(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    source = require_shared_data("defog", "questions_gen_postgres.csv")
    with open(source, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["db_name"] == "academic"]
    folder = tmp_path_factory.mktemp("decontaminate")
    benchmark = folder / "sql_eval_academic.csv"
    with open(benchmark, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:BENCHMARK_ROWS])
    log = folder / "log.sql"
    log.write_text("".join(f"{expand_alternatives(row['query'])[0]};\n" for row in rows), encoding="utf-8")
    copied = rows[BENCHMARK_ROWS - 1]["question"] + COPIED_QUESTION_SUFFIX  # a benchmark question, reused
    seeds = folder / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": copied, "sql": "SELECT aid FROM author WHERE aid = 424242"}) + "\n")
    out = folder / "out"
    code = main(["run", "--sql_logs", str(log), "--seed_pairs", str(seeds), "--dialect", "postgres",
                 "--decontaminate", str(benchmark), "--output", str(out), "--html_report=false"])
    assert code == 0
    return {"rows": rows, "benchmark": benchmark, "copied": copied,
            "pairs": _lines(f"{out}-00000-of-00001.jsonl"), "dead": _lines(f"{out}-rejects-00000-of-00001.jsonl"),
            "report": json.loads(open(f"{out}-report.json", encoding="utf-8").read())}


def _benchmark_sql(run) -> dict[str, set[str]]:
    """Normalized benchmark SQL → the labels of the items that accept it (computed apart from the stage)."""
    labels: dict[str, set[str]] = {}
    for item in read_benchmark(run["benchmark"].read_bytes(), str(run["benchmark"])):
        for sql in item.sql:
            labels.setdefault(normalize_sql(sql, "postgres", "postgres").sql, set()).add(item.label)
    return labels


def test_exactly_the_benchmark_queries_become_dead_letters_naming_their_item(run):
    benchmark = _benchmark_sql(run)
    removed = [d for d in run["dead"] if d["stage"] == "decontaminate" and d["reason"] == "benchmark_sql"]
    removed_sql = {d["record"]["normalized_sql"] for d in removed}
    reached = removed_sql | {p["normalized_sql"] for p in run["pairs"]}
    assert removed_sql == reached & set(benchmark)
    assert len(removed) == len(removed_sql) == BENCHMARK_ROWS  # the ten rows have ten distinct queries
    for dead in removed:
        assert any(label in dead["detail"] for label in benchmark[dead["record"]["normalized_sql"]])
    assert not {p["normalized_sql"] for p in run["pairs"]} & set(benchmark)


def test_a_pair_copying_a_benchmark_question_is_a_dead_letter_with_its_score(run):
    [copy] = [d for d in run["dead"] if d["reason"] == "benchmark_question"]
    assert copy["record"]["question"] == run["copied"]
    assert f"{run['benchmark']}#{BENCHMARK_ROWS}" in copy["detail"] and "containment 1.000" in copy["detail"]


def test_the_report_has_the_step_and_the_benchmark_counts_and_balances(run):
    report = run["report"]
    assert report["ok"], report["accounting"]["problems"]
    [step] = [row for row in report["stages"] if row["stage"] == "decontaminate"]
    removed = sum(1 for d in run["dead"] if d["stage"] == "decontaminate")
    assert step["rejected"] == removed and step["out"] == len(run["pairs"])
    assert report["decontaminate"]["benchmark_items"] == BENCHMARK_ROWS
    assert report["decontaminate"]["benchmark_sql"] == sum(len(i.sql) for i in read_benchmark(
        run["benchmark"].read_bytes(), str(run["benchmark"])))
    assert report["options"]["decontaminate"] == str(run["benchmark"])


def test_a_benchmark_file_that_cannot_be_read_stops_the_run_before_it_starts(tmp_path, capsys):
    broken = tmp_path / "dev.json"
    broken.write_text("{not json")
    log = tmp_path / "log.sql"
    log.write_text("SELECT 1;\n")
    code = main(["run", "--sql_logs", str(log), "--decontaminate", str(broken), "--output", str(tmp_path / "o")])
    assert code != 0
    assert f"--decontaminate {broken}: not JSON" in capsys.readouterr().err


def test_an_output_prefix_that_would_overwrite_a_benchmark_file_is_refused(tmp_path, capsys):
    benchmark = tmp_path / "out-benchmark.json"
    benchmark.write_text('[{"question": "Q?", "query": "SELECT 1"}]')
    log = tmp_path / "log.sql"
    log.write_text("SELECT 1;\n")
    code = main(["run", "--sql_logs", str(log), "--decontaminate", str(benchmark), "--output", str(tmp_path / "out")])
    assert code != 0
    assert f"would overwrite the input {benchmark} (--decontaminate)" in capsys.readouterr().err


def test_questions_a_model_wrote_are_checked_too(tmp_path):
    """--llm openai (the local fake server): where the model's question copies a benchmark question,
    the pair is a dead letter; the model is still asked once per distinct SQL, before the check."""
    from tests.conftest import REPO
    from tests.fakes.llm_fake_server import Action, FakeLlmServer, default_answer

    copied = "Which customers living in Brazil are listed with their first and last names?"
    benchmark = tmp_path / "dev.json"
    benchmark.write_text(json.dumps([{"question_id": 3, "db_id": "chinook", "question": copied,
                                      "SQL": "SELECT 1 FROM nowhere"}]))

    def answer(call):
        if "country = 'Brazil'" in call.prompt:
            return Action(text=json.dumps({"question": copied}))
        return default_answer(call)

    out = tmp_path / "out"
    with FakeLlmServer(answer) as server:
        code = main(["run", "--sql_logs", str(REPO / "examples" / "chinook_queries.sql"),
                     "--database", f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}", "--timeout_s", "1",
                     "--llm", "openai", "--llm_endpoint", server.url, "--decontaminate", str(benchmark),
                     "--output", str(out), "--html_report=false"])
    assert code == 0
    dead = [d for d in _lines(f"{out}-rejects-00000-of-00001.jsonl") if d["stage"] == "decontaminate"]
    assert dead and all(d["reason"] == "benchmark_question" and f"{benchmark}#3" in d["detail"] for d in dead)
    assert all("country = 'Brazil'" in d["record"]["normalized_sql"] for d in dead)
    pairs = _lines(f"{out}-00000-of-00001.jsonl")
    assert pairs and not any("country = 'Brazil'" in p["normalized_sql"] for p in pairs)
    report = json.loads(open(f"{out}-report.json", encoding="utf-8").read())
    assert report["ok"] and len(server.calls) == len(pairs) + len(dead)  # one question per distinct SQL
