"""Preference sampling with a real weak model: SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server.

SmolLM2-135M writes mostly wrong SQL, which is what a weak model is for. The test checks
the plumbing, not the model: every sample comes back labelled, the labels add up, and the
pairs written are exactly what ``build_pairs`` makes of the labelled samples.
"""

from __future__ import annotations

import apache_beam as beam
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from tests.integration.test_llm_local_model import llama_server  # noqa: F401 - the module-scoped server fixture

from adapters.llm import LlmSettings
from transforms.core.record import new_record
from transforms.validate.classify import ClassifyDifficulty
from transforms.validate.execute import ExecuteQueries
from transforms.publish.exports import SchemaSource
from transforms.validate.normalize import NormalizeSql
from transforms.publish.preference import LABELS, PairKnobs, PreferenceSettings, SamplePreferencePairs, build_pairs

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
GOLD = [
    ("How many artists are there?", "SELECT COUNT(*) FROM Artist"),
    ("What are the names of all genres?", "SELECT Name FROM Genre"),
    ("List the titles of albums by AC/DC.",
     "SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'"),
]
SAMPLES = 3


def test_smollm2_samples_are_all_labelled_and_paired_by_the_rules(llama_server):  # noqa: F811
    knobs = PairKnobs(neg_limit=0, keep_gold=True)
    settings = PreferenceSettings(
        llm=LlmSettings(backend="openai", endpoint=llama_server, max_in_flight=2, max_output_tokens=128,
                        temperature=0.8, retries=1, backoff_s=0.5, timeout_s=120),
        database=DATABASE, samples=SAMPLES, knobs=knobs, database_settings={"timeout_s": 2.0, "max_rows": 1000},
        max_connections=2, schema=SchemaSource(dialect="sqlite", database=DATABASE))
    pipeline = make_pipeline()
    records = [new_record(sql, question, source="seed") for question, sql in GOLD]
    normalized = pipeline | beam.Create(records) | NormalizeSql("sqlite", "sqlite")
    classified = normalized.records | ClassifyDifficulty()
    ran = classified.records | ExecuteQueries(DATABASE, timeout_s=5.0)
    out = ran.records | SamplePreferencePairs(settings)
    found = collect(pipeline, samples=out.samples, pairs=out.pairs)

    questions = found["samples"]
    assert len(questions) == len(GOLD)
    labels = [s.label for q in questions for s in q.samples]
    assert len(labels) == len(GOLD) * SAMPLES and set(labels) <= set(LABELS) - {"unlabelled"}
    expected = sorted(r["id"] for q in questions for r in build_pairs(q, knobs, settings.weak_model))
    assert sorted(r["id"] for r in found["pairs"]) == expected


def test_smollm2_on_defog_questions_in_postgresql_every_sample_is_accounted_for(llama_server, tmp_path):  # noqa: F811
    """The real run in miniature: Defog sql-eval questions, their PostgreSQL databases, SmolLM2 as the weak model."""
    import csv
    import json

    from tests.conftest import require_shared_data

    from pipeline.main import main
    from tests.fakes import db_fixtures

    questions_csv = require_shared_data("defog", "questions_gen_postgres.csv")
    template = db_fixtures.load_defog_databases()
    with open(questions_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    picked = [next(r for r in rows if r["db_name"] == db) for db in ("restaurants", "geography", "yelp")]
    subset = tmp_path / "defog.csv"
    with open(subset, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(picked)
    output = tmp_path / "out" / "p"
    status = main(["run", "--seed_pairs", str(subset), "--database", template, "--dedup", "question-only",
                   "--output", str(output), "--preference", "--weak_llm", "openai", "--weak_llm_endpoint", llama_server,
                   "--samples", "2", "--llm_max_in_flight", "2", "--llm_timeout_s", "120", "--dpo_keep_gold"])
    assert status == 0
    report = json.loads((tmp_path / "out" / "p-report.json").read_text())
    preference = report["preference"]
    assert preference["questions_sampled"] == len(picked) and preference["samples"] == 2 * len(picked)
    assert sum(preference["labels"].values()) == preference["samples"]
    dpo = (tmp_path / "out" / "p-dataset" / "jsonl" / "dpo" / "train-00000-of-00001.jsonl").read_text().splitlines()
    assert len(dpo) == preference["pairs"] == sum(preference["pairs_by_negative"].values())
