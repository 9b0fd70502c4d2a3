"""The RunInference handler: concurrency, per-request retries, repair, throttling, rate limit, cache, metrics."""

from __future__ import annotations

import json
import weakref

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.util import assert_that, equal_to
from tests.conftest import make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from adapters.llm import LlmRequest, LlmSettings
from adapters.llm import handler as handler_module
from adapters.llm.handler import LlmModelHandler, LlmTask, PerWorkerRateLimiter, usage_report

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"],
          "additionalProperties": False}
GOOD = json.dumps({"question": "How many artists are there?"})


def _settings(server, **overrides) -> LlmSettings:
    values = dict(backend="openai", endpoint=server.url, retries=3, backoff_s=0.01, backoff_max_s=0.05,
                  timeout_s=0.5, max_in_flight=8)
    values.update(overrides)
    return LlmSettings(**values)


def _client(settings: LlmSettings):
    return LlmModelHandler(settings).create_client()


def _request(prompt: str = "Write a question", sample: int = 0) -> LlmRequest:
    return LlmRequest(prompt=prompt, schema=SCHEMA, schema_name="question", sample=sample, stage="questions")


def _scripted(*actions: Action):
    """The n-th call to a prompt gets actions[n] (the last one repeats)."""
    return lambda call: actions[min(call.index, len(actions) - 1)]


def test_the_client_is_weak_referenceable_as_runinference_needs():
    with FakeLlmServer() as server:
        client = _client(_settings(server))
        assert weakref.ref(client)() is client
        client.close()


def test_a_batch_is_sent_concurrently_up_to_max_in_flight():
    with FakeLlmServer(latency_s=0.2) as server:
        client = _client(_settings(server, max_in_flight=8, timeout_s=10))
        tasks = [LlmTask((_request(f"prompt {i}"),)) for i in range(16)]
        outcomes = client.answer_all(tasks)
        client.close()
    assert all(row[0].error is None for row in outcomes)
    assert server.max_in_flight == 8
    assert sum(row[0].usage.throttled_ms for row in outcomes) == 0  # a healthy service is not throttled


def test_429_with_retry_after_is_retried_and_the_retry_counted():
    script = _scripted(Action(kind="status", status=429, headers=(("Retry-After", "0"),)), Action(text=GOOD))
    with FakeLlmServer(script) as server:
        outcome = _client(_settings(server)).answer(_request())
    assert outcome.value == {"question": "How many artists are there?"}
    assert (outcome.usage.calls, outcome.usage.retries, outcome.usage.failures) == (2, 1, 0)


def test_500s_timeouts_and_garbage_bodies_are_each_retried():
    script = _scripted(Action(kind="status", status=500), Action(kind="stall"), Action(kind="garbage"),
                       Action(text=GOOD))
    with FakeLlmServer(script) as server:
        outcome = _client(_settings(server, timeout_s=0.3)).answer(_request())
    assert outcome.error is None
    assert (outcome.usage.calls, outcome.usage.retries) == (4, 3)


def test_a_permanent_server_error_fails_the_request_after_the_configured_retries():
    with FakeLlmServer(lambda call: Action(kind="status", status=503)) as server:
        outcome = _client(_settings(server, retries=2)).answer(_request())
    assert outcome.error == "request_failed" and "503" in outcome.detail
    assert (outcome.usage.calls, outcome.usage.retries, outcome.usage.failures) == (3, 2, 1)
    assert len(server.calls) == 3


def test_a_client_error_is_not_retried():
    with FakeLlmServer(lambda call: Action(kind="status", status=400)) as server:
        outcome = _client(_settings(server)).answer(_request())
    assert outcome.error == "request_failed" and len(server.calls) == 1


def test_a_reply_that_is_not_json_gets_one_repair_request_showing_the_problem():
    def answer(call):
        if "could not be used" in call.prompt:
            return Action(text=GOOD)
        return Action(text="Sure! The question is: how many artists?")

    with FakeLlmServer(answer) as server:
        outcome = _client(_settings(server)).answer(_request())
    assert outcome.value == {"question": "How many artists are there?"}
    assert outcome.usage.repairs == 1 and outcome.usage.requests == 2
    repair_prompt = server.calls[1].prompt
    assert "not JSON" in repair_prompt and "how many artists?" in repair_prompt and "Write a question" in repair_prompt


def test_a_reply_still_off_schema_after_the_repair_is_invalid_with_the_raw_reply_in_detail():
    with FakeLlmServer(lambda call: Action(text='{"answer": "forty-two"}')) as server:
        outcome = _client(_settings(server)).answer(_request())
    assert outcome.error == "invalid_reply"
    assert "missing required property question" in outcome.detail and "forty-two" in outcome.detail
    assert len(server.calls) == 2


def test_a_fenced_json_reply_is_accepted_without_repair():
    with FakeLlmServer(lambda call: Action(text="```json\n" + GOOD + "\n```")) as server:
        outcome = _client(_settings(server)).answer(_request())
    assert outcome.error is None and outcome.usage.repairs == 0


def test_cached_replies_are_served_without_calls(tmp_path):
    with FakeLlmServer(lambda call: Action(text=GOOD)) as server:
        settings = _settings(server, cache=str(tmp_path / "cache"))
        first = _client(settings).answer(_request())
        second = _client(settings).answer(_request())
        other_sample = _client(settings).answer(_request(sample=1))
    assert first.value == second.value
    assert (second.usage.calls, second.usage.cache_hits) == (0, 1)
    assert other_sample.usage.calls == 1
    assert len(server.calls) == 2


def test_the_rate_limiter_spaces_calls_evenly(monkeypatch):
    clock = {"now": 100.0}
    sleeps = []
    monkeypatch.setattr(handler_module.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(handler_module.time, "sleep", sleeps.append)
    limiter = PerWorkerRateLimiter(per_minute=120)  # one call every 0.5 s
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == [0.0, 0.5, 1.0, 1.5]
    assert limiter.allow(hits_added=2) is True and sleeps[-1] == 2.0


def test_the_reactive_throttler_delays_calls_while_it_says_so(monkeypatch):
    sleeps = []
    monkeypatch.setattr(handler_module.time, "sleep", sleeps.append)
    with FakeLlmServer(lambda call: Action(text=GOOD)) as server:
        client = _client(_settings(server))
        probabilities = iter([1.0, 1.0])  # overloaded twice, then healthy
        monkeypatch.setattr(client.throttler, "_throttling_probability", lambda now: next(probabilities, 0.0))
        outcome = client.answer(_request())
    assert outcome.error is None and outcome.usage.throttled_ms == 2000
    assert [s for s in sleeps if s] == [1.0, 1.0]


def test_runinference_yields_one_result_per_task_and_counts_usage_in_metrics():
    script = _scripted(Action(kind="status", status=429), Action(text=GOOD))
    with FakeLlmServer(script) as server:
        handler = LlmModelHandler(_settings(server), requests_per_task=2)
        tasks = [LlmTask((_request(f"p{i}a", 0), _request(f"p{i}b", 1)), context=i) for i in range(5)]
        pipeline = make_pipeline()
        results = (pipeline | beam.Create(tasks) | RunInference(handler)
                   | beam.Map(lambda r: (r.example.context, [o.value["question"] for o in r.inference])))
        assert_that(results, equal_to([(i, ["How many artists are there?"] * 2) for i in range(5)]))
        result = pipeline.run()
        result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in
                result.metrics().query(MetricsFilter().with_namespace("sqlpairs"))["counters"]}
    assert counters["llm.questions.requests"] == 10
    assert counters["llm.questions.retries"] == 10  # every prompt got one 429 first
    assert counters["llm.questions.calls"] == 20
    assert counters["llm.questions.prompt_tokens"] > 0 and counters["llm.questions.completion_tokens"] > 0


def test_usage_report_prices_tokens_per_stage_and_in_total():
    report = usage_report({"llm.questions.prompt_tokens": 1_000_000, "llm.questions.completion_tokens": 200_000,
                           "llm.segment.prompt_tokens": 500_000, "llm.questions.throttled_ms": 1500},
                          price_in=0.5, price_out=2.0)
    assert report["stages"]["questions"]["estimated_cost_usd"] == 0.9
    assert report["stages"]["questions"]["throttled_s"] == 1.5
    assert report["total"]["prompt_tokens"] == 1_500_000
    assert report["total"]["estimated_cost_usd"] == 1.15


def test_batches_are_not_throttled_as_a_whole_only_requests_are(monkeypatch):
    """Beam throttles each batch on ``handler.throttler`` and counted concurrent batches still in flight
    as failures, so at start-up half the batches slept a second; requests are throttled one by one
    (on ``request_throttler``, by the client), batches never."""
    sleeps = []
    monkeypatch.setattr("apache_beam.io.components.adaptive_throttler.time.sleep", sleeps.append)
    handler = LlmModelHandler(LlmSettings(backend="openai", endpoint="http://127.0.0.1:9", max_in_flight=4))
    for _ in range(50):  # fifty batches sent, none back yet: Beam's throttler would now refuse nearly all
        handler.throttler.throttle()
    assert sleeps == []
    assert handler.request_throttler is not handler.throttler
    client = handler.create_client()
    assert client.throttler is handler.request_throttler
    client.close()
