"""The weak model's samples grade the pairs: ``extra.solve_rate`` / ``exec_difficulty`` from ``--preference``.

A small SQLite database and the local fake server as the weak model (and, in one test, as the
``--cot`` model); for each question it answers sample i (the request's ``seed``) with a fixed SQL.
The expected solve rates and levels are worked out by hand from that table (DataFlow's cut points
on the rate: <= 0.2 extra, <= 0.5 hard, <= 0.9 medium, else easy) — never computed by the code
under test.
"""

from __future__ import annotations

import json
import re
import sqlite3

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_pipeline
from tests.fakes.beam_collect import collect
from tests.fakes.llm_fake_server import Action, FakeLlmServer
from tests.stages.generate.test_evolve import validated

from adapters.llm import LlmSettings
from pipeline.main import main
from transforms.publish.exports import SchemaSource
from transforms.publish.preference import PreferenceSettings, SamplePreferencePairs

SAMPLES = 4
Q_MEDIUM = "How many artists are there?"
Q_EASY = "What are the names of all artists?"
Q_HARD = "How many albums are there?"
Q_FAIL = "How many rows does the fleeting table hold?"
#: question → (gold SQL, the weak model's answer for samples 0..3); solved / counted → rate, level
CANNED = {
    Q_MEDIUM: ("SELECT COUNT(*) FROM artist", [
        "SELECT COUNT(*) FROM artist", "SELECT COUNT(artist_id) FROM artist",
        "SELECT COUNT(*) FROM album",  # wrong result
        "select count(*) from artist"]),  # 3 of 4: 0.75, medium
    Q_EASY: ("SELECT name FROM artist", [
        "SELECT name FROM artist", "SELECT name FROM artist ORDER BY artist_id", "SELECT a.name FROM artist a",
        "SELECT name FROM artist WHERE 1 = 1"]),  # 4 of 4: 1.0, easy
    Q_HARD: ("SELECT COUNT(*) FROM album", [
        "SELECT COUNT(*) FROM album",
        "SELECT COUNT(*) FROM albums",  # exec_error: counted, not solved
        "DELETE FROM album",  # unparseable: counted, not solved
        "SELECT COUNT(*) FROM artist"]),  # 1 of 4: 0.25, hard
    Q_FAIL: ("SELECT COUNT(*) FROM fleeting", ["SELECT COUNT(*) FROM fleeting"] * SAMPLES),  # the gold fails
}
EXPECTED = {Q_MEDIUM: ("0.75", "medium"), Q_EASY: ("1.0", "easy"), Q_HARD: ("0.25", "hard")}
#: --cot's solutions (5 per pair): all right for Q_MEDIUM (1.0, easy), 3 of 5 for Q_HARD (0.6, medium)
COT_N = 5
COT = {
    Q_MEDIUM: ["SELECT COUNT(*) FROM artist"] * COT_N,
    Q_HARD: ["SELECT COUNT(*) FROM album"] * 3 + ["SELECT COUNT(*) FROM artist"] * 2,
}


def make_database(path):
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE artist (artist_id INTEGER PRIMARY KEY, name TEXT);"
            "INSERT INTO artist VALUES (1, 'AC/DC'), (2, 'Accept'), (3, 'Aerosmith'), (4, 'Alanis');"
            "CREATE TABLE album (album_id INTEGER PRIMARY KEY, artist_id INTEGER, title TEXT);"
            "INSERT INTO album VALUES (1, 1, 'Highway'), (2, 2, 'Balls'), (3, 1, 'Back');"
            "CREATE TABLE fleeting (x INTEGER); INSERT INTO fleeting VALUES (7);")
    return path


class Model:
    """The fake model's answers; asked about ``Q_FAIL``, it drops the table the gold reads first, so
    the gold that ran when the pair was validated fails when the samples are labelled."""

    def __init__(self):
        self.database = None

    def __call__(self, call) -> Action:
        question = re.search(r"Question: (.*)", call.prompt).group(1).strip()
        seed = call.body["seed"]
        if '"reasoning"' in call.prompt:  # the --cot prompt
            return Action(text=json.dumps({"reasoning": f"Solution {seed}.", "sql": COT[question][seed]}))
        if question == Q_FAIL and self.database is not None:
            with sqlite3.connect(self.database) as connection:
                connection.execute("DROP TABLE IF EXISTS fleeting")
        return Action(text=json.dumps({"sql": CANNED[question][1][seed]}))


@pytest.fixture(scope="module")
def model():
    answers = Model()
    with FakeLlmServer(answers) as server:
        server.answers = answers
        yield server


def weak_calls(server) -> list:
    return [c for c in server.calls if '"reasoning"' not in c.prompt]


# -- the stage --------------------------------------------------------------------------------------


def test_the_stage_gives_every_pair_back_once_graded_by_its_own_samples(tmp_path, model):
    database = f"sqlite:///{make_database(tmp_path / 'db.sqlite')}"
    model.answers.database = None
    llm = LlmSettings(backend="openai", endpoint=model.url, retries=1, backoff_s=0.01, timeout_s=5, max_in_flight=4)
    settings = PreferenceSettings(llm=llm, database=database, samples=SAMPLES,
                                  database_settings={"timeout_s": 2.0, "max_rows": 1000}, max_connections=2,
                                  schema=SchemaSource(dialect="sqlite", database=database))
    medium, easy, hard = (validated(q, CANNED[q][0])._replace(difficulty="easy") for q in (Q_MEDIUM, Q_EASY, Q_HARD))
    failing = validated(Q_FAIL, "SELECT COUNT(*) FROM artist WHERE no_such_column = 1")  # ran once; not now
    unasked = easy._replace(id="no-question", question=None)
    voted = hard._replace(extra={"solve_rate": "0.6", "exec_difficulty": "medium"})  # --cot's values stay
    calls_before = len(weak_calls(model))
    pipeline = make_pipeline()
    out = (pipeline | beam.Create([medium, easy, failing, unasked, voted])
           | SamplePreferencePairs(settings))
    found = collect(pipeline, records=out.records, notes=out.notes)
    records = found["records"]
    assert len(records) == 5  # each pair once, graded or not: nothing lost, nothing doubled
    by_question = {(r.question, r.extra.get("solve_rate")): dict(r.extra) for r in records}
    assert by_question[(Q_MEDIUM, "0.75")] == {"solve_rate": "0.75", "exec_difficulty": "medium",
                                               "weak_solve_rate": "0.75", "weak_exec_difficulty": "medium"}
    assert by_question[(Q_EASY, "1.0")]["exec_difficulty"] == "easy"
    assert by_question[(Q_HARD, "0.6")] == {"solve_rate": "0.6", "exec_difficulty": "medium",
                                            "weak_solve_rate": "0.25", "weak_exec_difficulty": "hard"}
    assert by_question[(Q_FAIL, None)] == {}  # every sample unlabelled: no rate
    assert by_question[(None, None)] == {}  # not sampled
    # requests: samples x pairs sampled (the unasked pair has no question), no second sampling
    assert len(weak_calls(model)) - calls_before == 4 * SAMPLES
    levels = sorted(n.rsplit(":", 1)[1] for n in found["notes"] if n.startswith("preference:difficulty_vs_exec:"))
    assert levels == ["easy/easy", "easy/hard", "easy/medium"]  # Spider's level / the weak level
    assert "preference:question:gold_failed" in found["notes"]


# -- the job ------------------------------------------------------------------------------------------


def _seed_file(tmp_path, questions):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"question": q, "sql": CANNED[q][0]}) + "\n" for q in questions))
    return path


def _run(tmp_path, model, name, questions, *extra):
    model.answers.database = make_database(tmp_path / f"{name}.sqlite")
    output = tmp_path / name / "pairs"
    status = main(["run", "--seed_pairs", str(_seed_file(tmp_path, questions)), "--database",
                   f"sqlite:///{model.answers.database}", "--output", str(output), "--preference", "--weak_llm",
                   "openai", "--weak_llm_endpoint", model.url, "--samples", str(SAMPLES), "--timeout_s", "2",
                   "--llm_retries", "1", "--llm_backoff_s", "0.01", *extra])
    assert status == 0
    return output


def _pairs(output):
    return [json.loads(line) for line in (output.parent / "pairs-00000-of-00001.jsonl").read_text().splitlines()]


def _set(output, name, kind="jsonl"):
    path = output.parent / "pairs-dataset" / kind / name / f"train-00000-of-00001.{kind}"
    if not path.exists():
        return []
    return pq.read_table(path).to_pylist() if kind == "parquet" else [json.loads(line) for line in path.read_text().splitlines()]


def _staged(output, fmt, level, kind="jsonl"):
    return _set(output, f"{fmt}-{level}", kind)


def test_preference_alone_grades_the_written_pairs_and_stages_them_by_execution_level(tmp_path, model):
    calls_before = len(weak_calls(model))
    output = _run(tmp_path, model, "a", CANNED, "--stage_by", "exec_difficulty", "--format", "sft-chat")
    pairs = {p["question"]: p for p in _pairs(output)}
    assert set(pairs) == set(CANNED)  # the pair whose gold failed now is written all the same
    for question, (rate, level) in EXPECTED.items():
        extra = pairs[question]["extra"]
        assert (extra["solve_rate"], extra["exec_difficulty"]) == (rate, level)
        assert (extra["weak_solve_rate"], extra["weak_exec_difficulty"]) == (rate, level)
    assert not {"solve_rate", "exec_difficulty", "weak_solve_rate"} & set(pairs[Q_FAIL]["extra"])
    # requests = samples x pairs: no second sampling for the exports or the DPO pairs
    assert len(weak_calls(model)) - calls_before == SAMPLES * len(CANNED)
    report = json.loads((output.parent / "pairs-report.json").read_text())
    assert report["ok"] and report["accounting"]["records_read"] == report["accounting"]["pairs_written"] == 4
    assert report["llm"]["stages"]["weak_sql"]["requests"] == SAMPLES * len(CANNED)
    assert report["preference"]["questions"]["gold_failed"] == 1
    assert report["preference"]["difficulty_vs_exec"] == {"easy/easy": 1, "easy/hard": 1, "easy/medium": 1}
    for level in ("easy", "medium", "hard"):  # --stage_by exec_difficulty, from --preference alone
        assert [p["question"] for p in _staged(output, "pairs", level)] == [q for q, (_, lv) in EXPECTED.items()
                                                                            if lv == level]
        assert [r["meta"]["exec_difficulty"] for r in _staged(output, "sft-chat", level)] == [level]
    assert _staged(output, "pairs", "extra") == []
    assert "extra.weak_exec_difficulty</code> says" in (output.parent / "pairs-report.html").read_text()


#: The questions with DPO pairs (a correct and a wrong sample; the default one pair each) by weak level:
#: Q_EASY's samples are all correct (no rejected answer), Q_FAIL's unlabelled.
DPO_BY_LEVEL = {"medium": [Q_MEDIUM], "hard": [Q_HARD]}


def test_the_dpo_sets_are_staged_by_execution_level_and_load_with_it(tmp_path, model, monkeypatch):
    output = _run(tmp_path, model, "dpo", CANNED, "--stage_by", "exec_difficulty", "--format", "dpo,dpo-chat,parquet")
    dpo = _set(output, "dpo")
    assert {r["meta"]["question"]: r["meta"]["exec_difficulty"] for r in dpo} == {
        Q_MEDIUM: "medium", Q_HARD: "hard"}  # the level its pair is written with (EXPECTED)
    assert len(dpo) == 2
    for fmt in ("dpo", "dpo-chat"):
        for level in ("easy", "medium", "hard", "extra"):
            for kind in ("jsonl", "parquet"):
                staged = _staged(output, fmt, level, kind)
                assert [r["meta"]["question"] for r in staged] == DPO_BY_LEVEL.get(level, []), (fmt, level, kind)
                assert {r["meta"]["exec_difficulty"] for r in staged} <= {level}
    assert pq.read_table(output.parent / "pairs-dataset" / "parquet" / "dpo" / "train-00000-of-00001.parquet"
                         ).to_pylist() == dpo  # the new column included, typed
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # never download anything, whatever the card says
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    dataset = str(output.parent / "pairs-dataset")
    loaded = datasets.load_dataset(dataset, "dpo", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.features["meta"]["exec_difficulty"].dtype == "string"
    assert sorted(row["meta"]["exec_difficulty"] for row in loaded) == ["hard", "medium"]
    hard = datasets.load_dataset(dataset, "dpo-hard", split="train", cache_dir=str(tmp_path / "cache"))
    assert [row["meta"]["question"] for row in hard] == [Q_HARD]
    report = json.loads((output.parent / "pairs-report.json").read_text())
    assert {name: n for name, n in report["exports"]["sets"].items() if name.startswith("dpo") and n} == {
        "dpo": 2, "dpo-medium": 1, "dpo-hard": 1, "dpo-chat": 2, "dpo-chat-medium": 1, "dpo-chat-hard": 1}


def test_the_graded_pairs_are_byte_identical_across_runs(tmp_path, model):
    questions = (Q_MEDIUM, Q_EASY, Q_HARD)
    first, second = (_run(tmp_path, model, name, questions) for name in ("one", "two"))
    for output in (first, second):
        assert len(_pairs(output)) == 3
    text = [(o.parent / "pairs-00000-of-00001.jsonl").read_text().replace(o.parent.name + ".sqlite", "")
            for o in (first, second)]
    assert text[0] == text[1]


def test_with_cot_its_solve_rate_stays_and_the_weak_models_is_beside_it(tmp_path, model):
    calls_before = len(model.calls)
    output = _run(tmp_path, model, "both", (Q_MEDIUM, Q_HARD), "--cot", str(COT_N), "--cot_llm", "openai",
                  "--cot_llm_endpoint", model.url, "--stage_by", "exec_difficulty", "--format", "dpo")
    extras = {p["question"]: p["extra"] for p in _pairs(output)}
    assert {q: (e["solve_rate"], e["exec_difficulty"], e["weak_solve_rate"], e["weak_exec_difficulty"])
            for q, e in extras.items()} == {Q_MEDIUM: ("1.0", "easy", "0.75", "medium"),
                                            Q_HARD: ("0.6", "medium", "0.25", "hard")}
    calls = model.calls[calls_before:]
    cot = [c for c in calls if '"reasoning"' in c.prompt]
    assert (len(cot), len(calls) - len(cot)) == (COT_N * 2, SAMPLES * 2)
    assert [p["question"] for p in _staged(output, "pairs", "easy")] == [Q_MEDIUM]  # staged by --cot's level
    assert [r["meta"]["question"] for r in _staged(output, "dpo", "easy")] == [Q_MEDIUM]  # the DPO rows too
    assert [r["meta"]["question"] for r in _staged(output, "dpo", "medium")] == [Q_HARD]
    assert _staged(output, "dpo", "hard") == []  # not the weak level
    report = json.loads((output.parent / "pairs-report.json").read_text())
    assert report["ok"] and report["preference"]["difficulty_vs_exec"] == {"easy/hard": 1, "easy/medium": 1}


def test_stage_by_exec_difficulty_needs_samples(tmp_path, capsys):
    seeds = str(_seed_file(tmp_path, (Q_MEDIUM,)))
    assert main(["run", "--seed_pairs", seeds, "--output", str(tmp_path / "p"), "--database",
                 f"sqlite:///{make_database(tmp_path / 'db.sqlite')}", "--stage_by", "exec_difficulty"]) == 2
    error = capsys.readouterr().err
    assert "--cot" in error and "--preference" in error
