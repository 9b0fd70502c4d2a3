"""``--cot`` with a real model: SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server.

SmolLM2-135M reasons poorly; the test checks the plumbing, not its answers: every pair comes
out kept (with a reasoning trace whose SQL gave the gold's result) or as a dead letter whose
reason the stage documents and whose detail explains it, N requests per pair are metered
(plus at most one repair each), every solution is accounted for in the vote table, and no
request failed. Skipped where the model is not installed (``pip install -e '.[llm-local]'``);
run in CI, where it is.
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
from transforms.publish.cot import INVALID, CotSettings, ExecutionVotedCot
from transforms.publish.exports import SchemaSource

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
PAIRS = [
    ("How many artists are there?", "SELECT COUNT(*) FROM Artist"),
    ("How many tracks last longer than five minutes?", "SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000"),
]
REASONS = {"majority_disagrees", "too_few_valid"}
N = 3


def test_smollm2_solutions_are_voted_and_every_pair_is_kept_or_explained(llama_server):  # noqa: F811
    # one server answers one request at a time: a long timeout, so no retry queues behind a slow first try
    llm = LlmSettings(backend="openai", endpoint=llama_server, max_in_flight=2, retries=1, backoff_s=0.5,
                      timeout_s=300, temperature=0.8, max_output_tokens=192)
    settings = CotSettings(llm=llm, database=DATABASE, samples=N, min_valid=1,
                           database_settings={"timeout_s": 5.0, "max_rows": 1000}, max_connections=2,
                           schema=SchemaSource(dialect="sqlite", database=DATABASE))
    pipeline = make_pipeline()
    out = pipeline | beam.Create([validated(q, s) for q, s in PAIRS]) | ExecutionVotedCot(settings)
    found = collect(pipeline, records=out.records, dead=out.dead)
    records, dead = found["records"], found["dead"]
    assert len(records) + len(dead) == len(PAIRS)
    for record in records:
        table = json.loads(record.extra["cot"])
        assert record.reasoning and record.extra["cot_sql"] and table["solved"] > max(
            [n for key, n in table["votes"].items() if key != table["gold"]] or [0])
    for letter in dead:
        assert letter.stage == "cot" and letter.reason in REASONS and letter.detail, letter
        table = json.loads(letter.record.extra["cot"])
        assert table["valid"] + sum(table["invalid"].values()) == N and set(table["invalid"]) <= set(INVALID)
    counters = {c.key.metric.name: c.committed
                for c in found["_result"].metrics().query(MetricsFilter().with_namespace("sqlpairs"))["counters"]}
    assert counters["llm.cot.records"] == len(PAIRS)
    assert N * len(PAIRS) <= counters["llm.cot.requests"] <= 2 * N * len(PAIRS)
    assert counters.get("llm.cot.failures", 0) <= counters.get("llm.cot.repairs", 0)  # none failed over HTTP
