"""--judge and --evidence with a real model: SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server.

SmolLM2-135M is no judge and no annotator; the test checks the plumbing, not its opinions:
every pair comes out kept or as a dead letter whose reason is one the stage documents, kept
pairs carry scores in range (judge) or evidence that is absent or grounded (evidence), one
request per pair is metered, and no request failed.
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from tests.stages.generate.test_evolve import validated
from tests.integration.test_llm_local_model import llama_server  # noqa: F401 - the module-scoped server fixture

from adapters.llm import LlmSettings
from transforms.generate.evidence import EvidenceSettings, WriteEvidence
from transforms.validate.judge import JudgePairs, JudgeSettings

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
PAIRS = [
    ("How many artists are there?", "SELECT COUNT(*) FROM Artist"),
    ("How many long tracks are there?", "SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000"),
    ("Which customers live in Brazil?", "SELECT FirstName, LastName FROM Customer WHERE Country = 'Brazil'"),
]
JUDGE_REASONS = {"below_min", "bad_reply"}
EVIDENCE_REASONS = {"bad_reply", "ungrounded", "leaks_sql"}


def _llm(url: str) -> LlmSettings:
    return LlmSettings(backend="openai", endpoint=url, max_in_flight=2, retries=1, backoff_s=0.5, timeout_s=120,
                       temperature=0.0)


def _counters(result) -> dict[str, int]:
    return {c.key.metric.name: c.committed
            for c in result.metrics().query(MetricsFilter().with_namespace("sqlpairs"))["counters"]}


def test_smollm2_judges_every_pair_and_every_rejection_is_explained(llama_server):  # noqa: F811
    settings = JudgeSettings(llm=_llm(llama_server), database=DATABASE, database_settings={"timeout_s": 5.0},
                             min_score=2, max_prompt_tables=2)
    pipeline = make_pipeline()
    out = pipeline | beam.Create([validated(q, s) for q, s in PAIRS]) | JudgePairs(settings)
    found = collect(pipeline, records=out.records, dead=out.dead)
    records, dead = found["records"], found["dead"]
    assert len(records) + len(dead) == len(PAIRS)
    for record in records:
        scores = json.loads(record.extra["judge"])
        assert set(scores) == {"fluency", "alignment", "schema_use"} and min(scores.values()) >= 2
    for letter in dead:
        assert letter.stage == "judge" and letter.reason in JUDGE_REASONS and letter.detail, letter
    counters = _counters(found["_result"])
    assert counters["llm.judge.records"] == len(PAIRS) <= counters["llm.judge.requests"] <= 2 * len(PAIRS)


def test_smollm2_writes_evidence_or_none_and_every_rejection_is_explained(llama_server):  # noqa: F811
    settings = EvidenceSettings(llm=_llm(llama_server), database=DATABASE, database_settings={"timeout_s": 5.0},
                                max_prompt_tables=2)
    pipeline = make_pipeline()
    pairs = pipeline | "Pairs" >> beam.Create([validated(q, s) for q, s in PAIRS])
    taught = pipeline | "Teachings" >> beam.Create([])
    out = (pairs, taught) | WriteEvidence(settings)
    found = collect(pipeline, records=out.records, dead=out.dead)
    records, dead = found["records"], found["dead"]
    assert len(records) + len(dead) == len(PAIRS)
    assert all(r.evidence is None or r.evidence.strip() for r in records)
    for letter in dead:
        assert letter.stage == "evidence" and letter.reason in EVIDENCE_REASONS and letter.detail, letter
    counters = _counters(found["_result"])
    assert counters["llm.evidence.records"] == len(PAIRS) <= counters["llm.evidence.requests"] <= 2 * len(PAIRS)
