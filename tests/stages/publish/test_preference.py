"""Preference pairs: a canned weak model with a known mix of right and wrong SQL on Chinook (SQLite).

The weak model is the local OpenAI-compatible fake server; for each of four questions it
answers sample i (the request's ``seed``) with a fixed SQL, chosen so that every label
occurs. The expected labels, and the pair counts for every knob combination, are worked
out by hand below from that table — never computed by the code under test.
"""

from __future__ import annotations

import json
import re

import apache_beam as beam
import pytest
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from adapters.llm import LlmSettings
from adapters.llm.handler import LlmOutcome
from pipeline.main import main
from transforms.core.record import new_record
from transforms.validate.classify import ClassifyDifficulty
from transforms.validate.execute import ExecuteQueries
from transforms.publish.exports import SchemaSource
from transforms.validate.normalize import NormalizeSql
from transforms.publish.preference import (
    PairKnobs,
    PreferenceSettings,
    QuestionSamples,
    Sample,
    SamplePreferencePairs,
    build_pairs,
    parse_sample,
    question_outcome,
)

CHINOOK = REPO / "examples" / "chinook.sqlite"
DATABASE = f"sqlite:///{CHINOOK}"
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
NOT_JSON = object()

#: question → (gold SQL, the weak model's answer for samples 0..3, and the label each must get)
CANNED = {
    "How many artists are there?": ("SELECT COUNT(*) FROM Artist", [
        ("SELECT COUNT(*) FROM artist", "correct"),
        ("SELECT COUNT(*) FROM album", "wrong_result"),
        ("SELECT COUNT(*) FROM artists", "exec_error"),  # no such table
        ("SELECT COUNT(*) FROM album", "wrong_result"),  # the same mistake as sample 1
    ]),
    "List the titles of albums by AC/DC.": (
        "SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'", [
            ("SELECT Title FROM Album WHERE ArtistId = 1", "correct"),
            ("SELECT title FROM album WHERE artistid = 1", "correct"),  # normalizes like sample 0
            ("SELECT Title FROM Album WHERE ArtistId = 2", "wrong_result"),
            (FOREVER, "timeout"),
        ]),
    "How many tracks are longer than five minutes?": ("SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000", [
        ("SELECT 1069", "wrong_result"),  # the gold's one row, hard-coded: right by coincidence only
        ("SELECT COUNT(*) FROM Track WHERE Length > 300000", "exec_error"),  # no such column
        (NOT_JSON, "no_reply"),  # not JSON, and not after the repair request either
        ("DELETE FROM Track", "unparseable"),  # not a read-only query
    ]),
    "What are the names of all genres?": ("SELECT Name FROM Genre", [
        ("SELECT Name FROM Genre", "correct"),
        ("SELECT name FROM genre", "correct"),  # normalizes like sample 0 (and like the gold)
        ("SELECT Name FROM Genre ORDER BY GenreId", "correct"),  # the gold has no ORDER BY: order is free
        ("SELECT DISTINCT Name FROM Genre", "correct"),
    ]),
}
SAMPLES = 4


def canned_answer(call) -> Action:
    question = re.search(r"Question: (.*)", call.prompt).group(1).strip()
    sql = CANNED[question][1][call.body["seed"]][0]
    if sql is NOT_JSON:
        return Action(text="Sure! Here is the query you asked for.")
    return Action(text=json.dumps({"sql": sql}))


@pytest.fixture(scope="module")
def weak_model():
    with FakeLlmServer(canned_answer) as server:
        yield server


def _settings(server, knobs: PairKnobs = PairKnobs()) -> PreferenceSettings:
    llm = LlmSettings(backend="openai", endpoint=server.url, retries=1, backoff_s=0.01, backoff_max_s=0.05,
                      timeout_s=5, max_in_flight=4)
    return PreferenceSettings(llm=llm, database=DATABASE, samples=SAMPLES, knobs=knobs,
                              database_settings={"timeout_s": 1.0, "max_rows": 1000}, max_connections=4,
                              schema=SchemaSource(dialect="sqlite", database=DATABASE))


def _gold_records():
    return [new_record(gold, question, source="seed") for question, (gold, _) in CANNED.items()]


@pytest.fixture(scope="module")
def labelled(weak_model):
    """Every question's labelled samples, from one pipeline run: normalize → classify → execute → sample."""
    pipeline = make_pipeline()
    normalized = pipeline | beam.Create(_gold_records()) | NormalizeSql("sqlite", "sqlite")
    classified = normalized.records | ClassifyDifficulty()
    executed = classified.records | ExecuteQueries(DATABASE, timeout_s=5.0)
    out = executed.records | SamplePreferencePairs(_settings(weak_model))
    found = collect(pipeline, samples=out.samples, pairs=out.pairs)
    return {q.question: q for q in found["samples"]}, found["pairs"]


def test_every_sample_gets_the_label_its_sql_deserves(labelled):
    questions, _ = labelled
    assert set(questions) == set(CANNED)
    for text, (_, answers) in CANNED.items():
        got = [(s.index, s.label) for s in sorted(questions[text].samples, key=lambda s: s.index)]
        assert got == [(i, label) for i, (_, label) in enumerate(answers)], (text, questions[text].samples)


def test_label_mix_adds_up_to_every_sample(labelled):
    questions, _ = labelled
    mix: dict[str, int] = {}
    for question in questions.values():
        for sample in question.samples:
            mix[sample.label] = mix.get(sample.label, 0) + 1
    # by hand from CANNED: correct 1+2+0+4, wrong 2+1+1, exec_error 1+1, one each of the rest
    assert mix == {"correct": 7, "wrong_result": 4, "exec_error": 2, "timeout": 1, "unparseable": 1, "no_reply": 1}


def test_the_pipeline_pairs_are_the_default_knobs_pairs(labelled):
    questions, pairs = labelled
    # default (dedup, all, limit 1, no gold): artists 1, AC/DC 1, tracks 0 (no correct sample), genres 0 (no mistake)
    assert len(pairs) == 2
    by_question = {p["meta"]["question"]: p for p in pairs}
    artists = by_question["How many artists are there?"]
    assert (artists["chosen"], artists["rejected"]) == ("SELECT COUNT(*) FROM artist", "SELECT COUNT(*) FROM album")
    assert artists["meta"]["neg_kind"] == "wrong_result" and artists["meta"]["sample_index"] == 1
    assert "CREATE TABLE" in artists["prompt"] and "How many artists are there?" in artists["prompt"]


# Pairs per question (artists, AC/DC, tracks, genres), worked out by hand from CANNED:
#   artists: positives [s0]; negatives all = [s1 wrong, s2 exec, s3 wrong (= s1)]
#   AC/DC:   positives [s0, s1 (= s0)]; negatives all = [s2 wrong, s3 timeout]
#   tracks:  positives none (gold only with keep_gold); negatives all = [s0 wrong (hard-coded), s1 exec, s3 unparseable]
#   genres:  positives [gold?, s0, s1 (= s0 = gold), s2, s3]; no negatives -> never any pair
KNOB_CASES = [
    (PairKnobs(), (1, 1, 0, 0)),
    (PairKnobs(neg_limit=0), (2, 2, 0, 0)),
    (PairKnobs(neg_limit=0, dedup=False), (3, 2, 0, 0)),
    (PairKnobs(neg_limit=0, keep_gold=True), (2, 2, 3, 0)),
    (PairKnobs(neg_limit=2, keep_gold=True, dedup=False), (2, 2, 2, 0)),
    (PairKnobs(neg_filter="exec_error", neg_limit=0), (1, 1, 0, 0)),
    (PairKnobs(neg_filter="exec_error", neg_limit=0, keep_gold=True), (1, 1, 2, 0)),
    (PairKnobs(neg_filter="wrong_result", neg_limit=0, dedup=False), (2, 1, 0, 0)),
    (PairKnobs(neg_filter="wrong_result", neg_limit=0), (1, 1, 0, 0)),
    (PairKnobs(neg_filter="wrong_result", keep_gold=True), (1, 1, 1, 0)),
]
ORDER = list(CANNED)


@pytest.mark.parametrize("knobs,expected", KNOB_CASES, ids=[str(tuple(k)) for k, _ in KNOB_CASES])
def test_pair_counts_per_knob_combination(labelled, knobs, expected):
    questions, _ = labelled
    counts = tuple(len(build_pairs(questions[text], knobs)) for text in ORDER)
    assert counts == expected


def test_question_outcomes_say_why_a_question_gave_no_pairs(labelled):
    questions, _ = labelled
    outcomes = [question_outcome(questions[text], PairKnobs()) for text in ORDER]
    assert outcomes == ["with_pairs", "with_pairs", "no_positive", "no_usable_negative"]
    assert question_outcome(questions[ORDER[2]], PairKnobs(keep_gold=True)) == "with_pairs"


def test_chosen_answers_cycle_through_the_positives_gold_first(labelled):
    questions, _ = labelled
    rows = build_pairs(questions[ORDER[1]], PairKnobs(neg_limit=0, keep_gold=True, dedup=False))
    assert [(r["meta"]["chosen_source"], r["meta"]["chosen_sample_index"], r["meta"]["sample_index"])
            for r in rows] == [("gold", None, 2), ("sample", 0, 3)]
    assert rows[1]["meta"]["neg_kind"] == "timeout" and rows[1]["meta"]["rejected_error"]


def test_chosen_and_rejected_are_both_whitespace_normalized(labelled):
    questions, _ = labelled
    rows = [row for text in ORDER
            for row in build_pairs(questions[text], PairKnobs(neg_limit=0, keep_gold=True, dedup=False))]
    assert len(rows) == 8  # artists 3, AC/DC 2, tracks 3 (the gold kept), genres 0: there is something to check
    for row in rows:
        for answer in (row["chosen"], row["rejected"]):
            assert answer == " ".join(answer.split()), answer


def test_a_gold_and_samples_laid_out_over_lines_give_single_spaced_pairs():
    """The canned SQL above is single-spaced already; here the layout is messy where it can be: the gold
    (kept as it was written), a parsed sample, and an unparseable one (never through the SQL printer)."""
    def sample(index, sql, label=None):
        parsed = parse_sample(index, LlmOutcome(value={"sql": sql}), "sqlite")
        return parsed._replace(label=label) if label else parsed

    samples = (sample(0, "SELECT COUNT(*)\n\tFROM artist", "correct"),
               sample(1, "SELECT  COUNT(*)  FROM\n album", "wrong_result"),
               sample(2, "DELETE\n   FROM  Track"))
    assert samples[2].label == "unparseable"
    question = QuestionSamples("r", "db", "Q?", "easy", (), "PROMPT", "SELECT COUNT(*)\n  FROM   Artist", samples)
    rows = build_pairs(question, PairKnobs(neg_limit=0, keep_gold=True, dedup=False))
    assert [(r["chosen"], r["rejected"]) for r in rows] == [
        ("SELECT COUNT(*) FROM Artist", "SELECT COUNT(*) FROM album"),
        ("SELECT COUNT(*) FROM artist", "DELETE FROM Track")]


# --- the pure rules, on hand-made samples -----------------------------------------------------


def _question(*samples: Sample, failure=None) -> QuestionSamples:
    return QuestionSamples("r", "db", "Q?", "easy", (), "PROMPT", "SELECT 1", samples, failure)


def test_samples_without_sql_are_never_rejected_answers():
    question = _question(Sample(0, "SELECT 1", "SELECT 1", "correct"), Sample(1, "", "", "no_reply", "empty_sql"))
    assert build_pairs(question, PairKnobs(neg_limit=0)) == []
    assert question_outcome(question, PairKnobs()) == "no_usable_negative"


def test_neg_limit_keeps_the_first_negatives_by_sample_index():
    question = _question(Sample(3, "c", "SELECT 3", "wrong_result"), Sample(0, "a", "SELECT 1", "correct"),
                         Sample(1, "b", "SELECT 2", "exec_error"))
    assert [r["meta"]["sample_index"] for r in build_pairs(question, PairKnobs(neg_limit=1))] == [1]


def test_a_question_whose_gold_failed_gives_no_pairs():
    question = _question(Sample(0, "a", "SELECT 1", "unlabelled"), failure="gold_failed")
    assert build_pairs(question, PairKnobs(keep_gold=True, neg_limit=0)) == []
    assert question_outcome(question, PairKnobs()) == "gold_failed"


def test_pair_ids_are_stable_and_distinct():
    question = _question(Sample(0, "a", "SELECT 1", "correct"), Sample(1, "b", "SELECT 2", "wrong_result"),
                         Sample(2, "c", "SELECT 3", "wrong_result"))
    first = build_pairs(question, PairKnobs(neg_limit=0))
    assert [r["id"] for r in first] == [r["id"] for r in build_pairs(question, PairKnobs(neg_limit=0))]
    assert len({r["id"] for r in first}) == 2


def test_a_hard_coded_answer_is_a_wrong_result_even_when_the_rows_match(labelled):
    questions, _ = labelled
    tracks = questions["How many tracks are longer than five minutes?"].samples
    hard_coded = next(s for s in tracks if s.index == 0)
    assert (hard_coded.label, hard_coded.tables) == ("wrong_result", ())
    assert "hard-coded" in hard_coded.detail


def test_a_fenced_or_unsafe_answer_is_parsed_or_labelled():
    fenced = parse_sample(0, LlmOutcome(value={"sql": "```sql\nselect  name from genre\n```"}), "sqlite")
    assert (fenced.normalized, fenced.label) == ("SELECT name FROM genre", None)
    dropping = parse_sample(1, LlmOutcome(value={"sql": "DROP TABLE genre"}), "sqlite")
    assert dropping.label == "unparseable" and dropping.detail.startswith("safety:")


# --- the whole job ---------------------------------------------------------------------------


def _seed_file(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"question": q, "sql": gold}) + "\n" for q, (gold, _) in CANNED.items()))
    return path


def _run_job(tmp_path, server, *extra):
    output = tmp_path / "out" / "pairs"
    status = main(["run", "--seed_pairs", str(_seed_file(tmp_path)), "--database", DATABASE, "--output", str(output),
                   "--preference", "--weak_llm", "openai", "--weak_llm_endpoint", server.url, "--samples", str(SAMPLES),
                   "--timeout_s", "1", "--llm_retries", "1", "--llm_backoff_s", "0.01", *extra])
    assert status == 0
    return output


def test_the_job_writes_dpo_pairs_samples_and_a_report_with_the_label_mix(tmp_path, weak_model):
    output = _run_job(tmp_path, weak_model, "--dpo_neg_limit", "0", "--dpo_keep_gold")
    dataset = tmp_path / "out" / "pairs-dataset"
    dpo = (dataset / "jsonl" / "dpo" / "train-00000-of-00001.jsonl").read_text().splitlines()
    assert len(dpo) == 2 + 2 + 3  # KNOB_CASES: limit 0 + keep_gold
    assert all(set(json.loads(line)) == {"id", "prompt", "chosen", "rejected", "meta"} for line in dpo)
    samples = (tmp_path / "out" / "pairs-dpo-samples-00000-of-00001.jsonl").read_text().splitlines()
    assert len(samples) == len(CANNED) and all(len(json.loads(line)["samples"]) == SAMPLES for line in samples)
    report = json.loads((tmp_path / "out" / "pairs-report.json").read_text())
    preference = report["preference"]
    assert preference["labels"] == {"correct": 7, "wrong_result": 4, "exec_error": 2, "timeout": 1,
                                    "unparseable": 1, "no_reply": 1}
    assert preference["pairs"] == 7 and preference["samples"] == 16
    assert preference["questions"] == {"with_pairs": 3, "no_usable_negative": 1}
    # samples are created records, outside the pairs' accounting
    assert report["ok"] and report["accounting"]["records_read"] == len(CANNED)
    assert report["llm"]["stages"]["weak_sql"]["requests"] >= len(CANNED) * SAMPLES
    assert (tmp_path / "out" / "pairs-report.html").exists() and (dataset / "README.md").exists()
    assert output.name == "pairs"


def test_preference_without_a_weak_model_or_database_is_a_usage_error(tmp_path, capsys):
    seeds = _seed_file(tmp_path)
    assert main(["run", "--seed_pairs", str(seeds), "--output", str(tmp_path / "p"), "--preference",
                 "--weak_llm", "openai", "--weak_llm_endpoint", "http://127.0.0.1:9"]) == 2
    assert "--database" in capsys.readouterr().err
    assert main(["run", "--seed_pairs", str(seeds), "--database", DATABASE, "--output", str(tmp_path / "p"),
                 "--preference"]) == 2
    assert "--weak_llm" in capsys.readouterr().err
    assert main(["run", "--seed_pairs", str(seeds), "--database", DATABASE, "--output", str(tmp_path / "p"),
                 "--format", "dpo"]) == 2
    assert "--preference" in capsys.readouterr().err


def test_the_weak_models_tokens_are_priced_at_its_own_prices():
    from adapters.llm.handler import usage_report
    from transforms.publish.preference import merge_weak_usage

    counters = {"llm.questions.prompt_tokens": 1_000_000, "llm.questions.requests": 10,
                "llm.weak_sql.prompt_tokens": 2_000_000, "llm.weak_sql.requests": 40}
    questions = usage_report(counters, price_in=1.0)  # the question writer prices every stage at its price
    weak = {k: v for k, v in counters.items() if k.startswith("llm.weak_sql.")}
    merged = merge_weak_usage(questions, weak, LlmSettings(backend="openai", model="smol", price_in=0.0))
    assert merged["stages"]["questions"]["estimated_cost_usd"] == 1.0
    assert merged["stages"]["weak_sql"]["estimated_cost_usd"] == 0.0
    assert merged["total"]["estimated_cost_usd"] == 1.0 and merged["total"]["requests"] == 50
