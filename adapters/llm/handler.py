"""Model calls on Beam's ``RunInference``: concurrent, retried, throttled, rate-limited, cached, metered.

``LlmModelHandler`` is a ``RemoteModelHandler`` whose example is an :class:`LlmTask`
(the requests one record needs, plus that record, carried through untouched) and whose
prediction is one :class:`LlmOutcome` per request. What it does differently from Beam's
built-in remote handlers, measured on Beam 2.77:

* ``request()`` sends every request of a batch **concurrently**, up to ``max_in_flight``
  on a thread pool, so throughput approaches in-flight ÷ latency rather than 1 ÷ latency
  (Beam's ``GeminiModelHandler`` sends a batch as one multi-part prompt and keeps only
  the first answer);
* each request retries on its own (429, 408, 5xx, timeouts, unreadable bodies) with
  ``backoff_s · 2^attempt`` capped at ``backoff_max_s`` and a server's ``Retry-After``
  honoured — the base class's batch-level retry (5 retries from 5 s, ~155 s on a
  permanent error) is switched off, and a failed request becomes an outcome, never an
  exception that would re-send the whole batch;
* Beam's ``ReactiveThrottler`` is consulted before every attempt (client-side
  throttling when most calls fail), fed each attempt's outcome when it finishes; the base
  class's throttle of whole batches is switched off (``_NoBatchThrottling``); a
  ``RateLimiter`` paces calls for ``--llm_rpm``;
* replies are parsed and validated against the request's schema; an unusable reply gets
  one repair request, then the outcome says ``invalid_reply`` with the raw text;
* replies are read from and written to the ``--llm_cache`` before any call;
* metrics (``llm.<stage>.requests/calls/cache_hits/retries/failures/repairs/throttled_ms/
  prompt_tokens/completion_tokens`` in the ``sqlpairs`` namespace) are incremented in
  the bundle's thread after the batch — Beam metrics updated from pool threads would be
  lost.

``create_client`` returns an :class:`LlmClient` (a plain object: RunInference keeps it
in ``shared.Shared``, which needs a weak-referenceable value — a dict fails), one per
worker process. ``max_batch_weight`` is never passed (it crashes RunInference on 2.77).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

from apache_beam.io.components.adaptive_throttler import ReactiveThrottler
from apache_beam.io.components.rate_limiter import RateLimiter
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RemoteModelHandler

from adapters.db.base import redact
from adapters.llm import LlmBackend, LlmError, LlmReply, LlmRequest, LlmSettings, open_backend
from adapters.llm.cache import LlmCache, cache_key
from adapters.llm.prompting import parse_reply, repair_request

_LOGGER = logging.getLogger(__name__)
#: Beam metrics namespace (the job's, so the report finds them with the other counters).
NAMESPACE = "sqlpairs"
#: Raw reply characters kept in an outcome's detail.
DETAIL_CHARS = 500


class LlmTask(NamedTuple):
    """The requests one element needs; ``context`` (the record) is carried through as is."""

    requests: tuple[LlmRequest, ...]
    context: Any = None


class LlmUsage(NamedTuple):
    """What answering requests cost: logical requests, HTTP calls, retries, tokens, waiting."""

    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    repairs: int = 0
    throttled_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: "LlmUsage") -> "LlmUsage":  # type: ignore[override]
        return LlmUsage(*(a + b for a, b in zip(self, other)))


class LlmOutcome(NamedTuple):
    """The answer to one request: a schema-valid ``value``, or ``error`` with ``detail``.

    ``error`` is ``request_failed`` (no usable HTTP answer after the retries) or
    ``invalid_reply`` (JSON or schema still wrong after the repair attempt); ``text`` is
    the last raw reply, if any.
    """

    value: Any = None
    text: Optional[str] = None
    error: Optional[str] = None
    detail: str = ""
    usage: LlmUsage = LlmUsage()


class PerWorkerRateLimiter(RateLimiter):
    """Paces calls to ``per_minute`` per worker process, evenly (no bursts).

    Beam 2.77 ships only ``EnvoyRateLimiter``, which needs an Envoy rate-limit service;
    this local one implements the same ``allow(hits_added)`` contract. A call reserves
    the next free slot and sleeps until it, so concurrent callers queue fairly.
    """

    def __init__(self, per_minute: float, namespace: str = NAMESPACE):
        super().__init__(namespace=namespace)
        self.interval_s = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, hits_added: int = 1) -> float:
        """Wait for the slot; returns the seconds waited."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + hits_added * self.interval_s
        wait = start - now
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)

    def allow(self, hits_added: int = 1, **_: Any) -> bool:
        self.acquire(hits_added)
        return True


class _Ledger:
    """Usage of one request, accumulated by the thread that serves it."""

    def __init__(self) -> None:
        self.usage = LlmUsage()

    def add(self, **fields: int) -> None:
        self.usage = self.usage._replace(**{k: getattr(self.usage, k) + v for k, v in fields.items()})


class LlmClient:
    """One worker process's backend, cache, thread pool, throttler and rate limiter."""

    def __init__(self, settings: LlmSettings, throttler: ReactiveThrottler, throttle_delay_s: float,
                 backend: Optional[LlmBackend] = None):
        self.settings = settings
        self.backend = backend or open_backend(settings)
        self.cache = LlmCache(settings.cache) if settings.cache else None
        self.pool = ThreadPoolExecutor(max(1, settings.max_in_flight), thread_name_prefix="sqlpairs-llm")
        self.throttler = throttler
        self.throttle_delay_s = throttle_delay_s
        self.rate_limiter = PerWorkerRateLimiter(settings.rpm) if settings.rpm else None
        self._throttle_lock = threading.Lock()
        self._random = random.Random()

    # -- one request, start to finish ---------------------------------------------------
    def answer(self, request: LlmRequest) -> LlmOutcome:
        """Reply, validate, repair once if needed; never raises."""
        ledger = _Ledger()
        try:
            reply = self._reply(request, ledger)
            value, problem = parse_reply(reply.text, request.schema)
            if problem is None:
                return LlmOutcome(value=value, text=reply.text, usage=ledger.usage)
            ledger.add(repairs=1)
            repaired = self._reply(repair_request(request, reply.text, problem), ledger)
            value, second = parse_reply(repaired.text, request.schema)
            if second is None:
                return LlmOutcome(value=value, text=repaired.text, usage=ledger.usage)
            ledger.add(failures=1)
            detail = f"{second} (after one repair attempt); raw reply: {repaired.text[:DETAIL_CHARS]!r}"
            return LlmOutcome(text=repaired.text, error="invalid_reply", detail=detail, usage=ledger.usage)
        except LlmError as error:
            ledger.add(failures=1)
            return LlmOutcome(error="request_failed", detail=redact(str(error))[:DETAIL_CHARS], usage=ledger.usage)
        except Exception as error:  # noqa: BLE001 - a backend bug fails this request, not the batch
            _LOGGER.exception("LLM request failed unexpectedly")
            ledger.add(failures=1)
            return LlmOutcome(error="request_failed", detail=redact(f"{type(error).__name__}: {error}")[:DETAIL_CHARS],
                              usage=ledger.usage)

    def _reply(self, request: LlmRequest, ledger: _Ledger) -> LlmReply:
        """A reply from the cache, else from the model (with retries), then cached."""
        ledger.add(requests=1)
        backend = self.backend
        key = None
        if self.cache is not None:
            key = cache_key(backend.name, backend.model, request, backend.temperature(request),
                            backend.max_output_tokens(request))
            cached = self.cache.get(key)
            if cached is not None:
                ledger.add(cache_hits=1)
                return cached
        reply = self._call_with_retries(request, ledger)
        ledger.add(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        if self.cache is not None and key is not None:
            self.cache.put(key, reply, backend.name, backend.model)
        return reply

    def _call_with_retries(self, request: LlmRequest, ledger: _Ledger) -> LlmReply:
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            waited = self.rate_limiter.acquire() if self.rate_limiter else 0.0
            waited += self._wait_for_throttler()
            ledger.add(calls=1, throttled_ms=int(waited * 1000))
            try:
                reply = self.backend.complete(request)
            except LlmError as error:
                self._record_attempt(ok=False)
                if not error.retryable or attempt + 1 >= attempts:
                    raise
                ledger.add(retries=1)
                time.sleep(self._backoff(attempt, error.retry_after_s))
                continue
            self._record_attempt(ok=True)
            return reply
        raise AssertionError("unreachable")

    def _record_attempt(self, ok: bool) -> None:
        """Tell the throttler about a finished attempt (sent and answered now, as far as it knows).

        Beam's ``ReactiveThrottler.throttle()`` counts a request when it is *sent* and its
        success when it *returns*, which is right for one call at a time; with dozens in
        flight the unanswered ones look like failures and it throttles a healthy service
        (measured: 16 requests of 200 ms at 8 in flight took 2.4 s instead of 0.4 s). So
        attempts are counted when they finish, and the decision below reads the same
        statistics without adding to them.
        """
        now_ms = time.time() * 1000
        with self._throttle_lock:
            self.throttler.throttle_request(now_ms)  # records the attempt; its verdict is not used here
            if ok:
                self.throttler.successful_request(now_ms)

    def _wait_for_throttler(self) -> float:
        """Wait while the throttler's failure statistics say the service is overloaded."""
        waited = 0.0
        while True:
            with self._throttle_lock:
                probability = self.throttler._throttling_probability(time.time() * 1000)
            if self._random.random() >= probability:
                return waited
            time.sleep(self.throttle_delay_s)
            waited += self.throttle_delay_s

    def _backoff(self, attempt: int, retry_after_s: Optional[float]) -> float:
        base = min(self.settings.backoff_max_s, self.settings.backoff_s * (2 ** attempt))
        delay = base * (0.5 + 0.5 * self._random.random())
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.settings.backoff_max_s))
        return delay

    # -- a batch ------------------------------------------------------------------------
    def answer_all(self, tasks: Sequence[LlmTask]) -> list[tuple[LlmOutcome, ...]]:
        """Every request of every task, concurrently; outcomes in request order per task."""
        futures = [[self.pool.submit(self.answer, request) for request in task.requests] for task in tasks]
        return [tuple(future.result() for future in row) for row in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.backend.close()


def batch_size_for(max_in_flight: int, requests_per_task: int) -> int:
    """Tasks per batch: enough requests to keep the pool full for about four rounds.

    >>> batch_size_for(8, 1), batch_size_for(8, 3), batch_size_for(1, 5)
    (32, 11, 1)
    """
    return max(1, math.ceil(4 * max_in_flight / max(1, requests_per_task)))


class _NoBatchThrottling(ReactiveThrottler):
    """What ``RemoteModelHandler.run_inference`` throttles each *batch* on: never waits, records nothing.

    Beam counts a batch as one request when it is sent and as a success only when the whole batch
    returns. Batches run on several bundle threads at once, so at start-up the first batches in
    flight looked like failures, and every other batch slept ``throttle_delay_secs`` before it
    was sent (a healthy local server: ``throttled_s`` 7.0 for 60 requests). Each request is
    throttled instead, by ``LlmClient`` on the handler's ``request_throttler``, counted when it
    finishes. ``run_inference`` cannot be overridden (Beam forbids it), so its throttler is this.
    """

    def throttle(self) -> None:
        return None

    def successful_request(self, now: float) -> None:
        return None


class LlmModelHandler(RemoteModelHandler[LlmTask, PredictionResult, LlmClient]):
    """``RunInference(LlmModelHandler(settings))``: ``LlmTask`` → ``PredictionResult(task, outcomes)``."""

    def __init__(self, settings: LlmSettings, *, requests_per_task: int = 1, throttle_delay_s: float = 1.0,
                 backend_factory: Optional[Any] = None):
        super().__init__(
            namespace=NAMESPACE,
            num_retries=0,  # each request retries itself; the batch is never re-sent
            throttle_delay_secs=max(1, int(throttle_delay_s)),
            retry_filter=lambda _error: False,
        )
        self.settings = settings
        self.requests_per_task = requests_per_task
        self.throttle_delay_s = throttle_delay_s
        self._backend_factory = backend_factory  # tests inject a backend; must be picklable
        # Requests are throttled one by one on Beam's throttler (LlmClient); batches not at all.
        self.request_throttler = self.throttler
        self.throttler = _NoBatchThrottling(window_ms=1000, bucket_ms=1000, overload_ratio=2, namespace=NAMESPACE)

    def create_client(self) -> LlmClient:
        backend = self._backend_factory(self.settings) if self._backend_factory else None
        return LlmClient(self.settings, self.request_throttler, self.throttle_delay_s, backend=backend)

    def request(self, batch: Sequence[LlmTask], model: LlmClient,
                inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        outcomes = model.answer_all(batch)
        record_usage(pair for task, row in zip(batch, outcomes) for pair in zip(task.requests, row))
        return [PredictionResult(task, row, self.settings.model_name) for task, row in zip(batch, outcomes)]

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        size = batch_size_for(self.settings.max_in_flight, self.requests_per_task)
        return {"min_batch_size": size, "max_batch_size": size}

    def get_num_bytes(self, batch: Sequence[LlmTask]) -> int:
        return sum(len(request.prompt) for task in batch for request in task.requests)

    def get_metrics_namespace(self) -> str:
        return f"{NAMESPACE}.runinference"

    def __repr__(self) -> str:
        return f"LlmModelHandler({self.settings.backend}, model={self.settings.model_name!r})"


_counters: dict[str, Any] = {}


def _count(name: str, value: int) -> None:
    if not value:
        return
    counter = _counters.get(name)
    if counter is None:
        counter = _counters[name] = Metrics.counter(NAMESPACE, name)
    counter.inc(value)


def record_usage(pairs: Iterable[tuple[LlmRequest, LlmOutcome]]) -> None:
    """Add each outcome's usage to the ``llm.<stage>.<field>`` counters (call from the bundle thread)."""
    totals: dict[str, LlmUsage] = {}
    for request, outcome in pairs:
        totals[request.stage] = totals.get(request.stage, LlmUsage()) + outcome.usage
    for stage, usage in sorted(totals.items()):
        for field, value in zip(LlmUsage._fields, usage):
            _count(f"llm.{stage}.{field}", value)


USAGE_FIELDS = LlmUsage._fields


def usage_report(counters: Mapping[str, int], price_in: float = 0.0, price_out: float = 0.0) -> dict[str, Any]:
    """The report's ``llm`` section from ``llm.<stage>.<field>`` counter values.

    >>> usage_report({"llm.questions.prompt_tokens": 2_000_000, "llm.questions.completion_tokens": 10,
    ...               "llm.questions.requests": 3}, price_in=0.3, price_out=2.5)["total"]["estimated_cost_usd"]
    0.600025
    """
    stages: dict[str, dict[str, Any]] = {}
    for name, value in sorted(counters.items()):
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "llm" or parts[2] not in USAGE_FIELDS:
            continue
        stages.setdefault(parts[1], {field: 0 for field in USAGE_FIELDS})[parts[2]] = int(value)
    total = {field: sum(stage[field] for stage in stages.values()) for field in USAGE_FIELDS}

    def cost(row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        row["throttled_s"] = round(row.pop("throttled_ms") / 1000.0, 3)
        row["estimated_cost_usd"] = round(
            (row["prompt_tokens"] * price_in + row["completion_tokens"] * price_out) / 1_000_000, 6
        )
        return row

    return {
        "stages": {name: cost(row) for name, row in stages.items()},
        "total": cost(total),
        "price_per_million_tokens": {"input": price_in, "output": price_out},
    }
