"""Language models behind one small contract, chosen by name: ``gemini``, ``openai``.

The shape follows Beam's ``ModelHandler``: a backend is one small class that turns one
:class:`LlmRequest` into one :class:`LlmReply` (``complete``) and raises :class:`LlmError`
when it cannot. Everything a production caller needs on top — concurrency, retries with
backoff, client-side throttling, a rate limit, the reply cache, schema validation with
one repair attempt, metrics — is done once, in :mod:`adapters.llm.handler`, so a backend
never re-implements it and a transform never knows which backend it talks to.

Settings travel with the pipeline as an :class:`LlmSettings` (plain values only); the
backend itself, its HTTP client and any API key are built on the worker
(``open_backend``), so no secret is ever pickled into the job graph.

``--llm rules`` (the default) names no service: its offline question writer answers
through the same contract but lives in ``transforms.label.rules_backend`` (it is the
question rules, and adapters import nothing from ``transforms``); the question stage
passes it to the handler itself, so ``open_backend`` does not build it.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any, Mapping, NamedTuple, Optional

#: backend name -> (module, class). Modules are imported on first use only.
BACKENDS: dict[str, tuple[str, str]] = {
    "gemini": ("adapters.llm.gemini", "GeminiBackend"),
    "openai": ("adapters.llm.openai_compat", "OpenAiBackend"),
}

#: The model a backend uses when ``--llm_model`` is not given.
DEFAULT_MODELS: dict[str, str] = {
    "rules": "describe_sql",
    "gemini": "gemini-2.5-flash",
    "openai": "gpt-4o-mini",
}


class LlmSettings(NamedTuple):
    """How to reach a model and how hard to push it (the ``--llm_*`` options, resolved).

    ``api_key_env`` names an environment variable read on the worker; the key itself is
    never stored here. ``rpm`` is a per-worker-process limit of model calls per minute.
    ``timeout_s`` bounds one whole attempt — connect, send and the full reply — not each
    socket read, so a server that sends a byte a second cannot hold a request longer.
    """

    backend: str = "rules"
    model: Optional[str] = None
    endpoint: Optional[str] = None
    project: Optional[str] = None
    location: Optional[str] = None
    api_key_env: Optional[str] = None
    temperature: float = 0.7
    max_output_tokens: int = 512
    max_in_flight: int = 16
    rpm: Optional[float] = None
    retries: int = 4
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    cache: Optional[str] = None
    price_in: float = 0.0
    price_out: float = 0.0

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.backend, "")


class LlmRequest(NamedTuple):
    """One prompt for one reply.

    ``schema`` is the JSON schema the reply must satisfy (``schema_name`` names it for
    APIs that want a name); ``inputs`` are the values the prompt was filled from, for
    backends that do not read prose (the ``rules`` writer reads ``inputs['sql']``).
    ``sample`` distinguishes independent samples of the same prompt: it is part of the
    cache key and is sent as the sampling seed where the API has one. ``stage`` labels
    the metrics (``llm.<stage>.requests``...).
    """

    prompt: str
    schema: Optional[Mapping[str, Any]] = None
    schema_name: str = "reply"
    system: Optional[str] = None
    inputs: Mapping[str, str] = {}
    sample: int = 0
    stage: str = "llm"
    temperature: Optional[float] = None
    max_output_tokens: Optional[int] = None


class LlmReply(NamedTuple):
    """The model's text and what it cost, in tokens as the API counted them."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LlmError(Exception):
    """A model call that failed; ``retryable`` says whether trying again may help.

    429, 408, 5xx, timeouts, dropped connections and unreadable response bodies are
    retryable; other 4xx (a bad request, a wrong key, an unknown model) are not.
    ``retry_after_s`` carries a server's ``Retry-After`` hint when it gave one.
    """

    def __init__(self, message: str, *, retryable: bool, status: Optional[int] = None,
                 retry_after_s: Optional[float] = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


def is_retryable_status(status: int) -> bool:
    """HTTP statuses worth retrying: rate limits, timeouts and server errors.

    >>> [s for s in (200, 400, 401, 404, 408, 429, 500, 503) if is_retryable_status(s)]
    [408, 429, 500, 503]
    """
    return status in (408, 429) or 500 <= status <= 599


def operation_timeout(timeout: Optional[float], deadline: Optional[float],
                      now: Optional[float] = None) -> Optional[float]:
    """The timeout for one socket operation of a request: its own, cut to what is left of the request.

    HTTP clients apply a timeout to each connect, send and read, so a server that sends
    one byte a second keeps a request alive for ever; cutting every operation to the
    time left before the request's ``deadline`` (a ``time.monotonic()`` value) bounds the
    whole request instead. ``0.0`` means the deadline has passed: the caller raises its
    timeout error rather than wait (a zero socket timeout would mean non-blocking).

    >>> operation_timeout(5.0, None), operation_timeout(5.0, 110.0, now=100.0)
    (5.0, 5.0)
    >>> operation_timeout(5.0, 102.5, now=100.0), operation_timeout(None, 102.5, now=100.0)
    (2.5, 2.5)
    >>> operation_timeout(5.0, 99.0, now=100.0)
    0.0
    """
    if deadline is None:
        return timeout
    left = max(0.0, deadline - (time.monotonic() if now is None else now))
    return left if timeout is None else min(timeout, left)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header given in seconds (HTTP dates are ignored).

    >>> parse_retry_after("2"), parse_retry_after(None), parse_retry_after("Wed, 21 Oct 2015")
    (2.0, None, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class LlmBackend:
    """One way of calling a model. Subclasses set ``name`` and implement ``complete``.

    Constructed on the worker from ``LlmSettings``; must be safe to call from several
    threads at once (the handler keeps ``max_in_flight`` calls running).
    """

    name: str = ""

    def __init__(self, settings: LlmSettings):
        self.settings = settings
        self.model = settings.model_name

    def complete(self, request: LlmRequest) -> LlmReply:
        """Send one request; raise ``LlmError`` on failure (never return partial text).

        The request ends within ``settings.timeout_s`` (connect, send and the whole reply);
        one that does not is a retryable ``LlmError`` saying "timed out".
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def temperature(self, request: LlmRequest) -> float:
        return self.settings.temperature if request.temperature is None else request.temperature

    def max_output_tokens(self, request: LlmRequest) -> int:
        return request.max_output_tokens or self.settings.max_output_tokens

    def api_key(self) -> Optional[str]:
        """The key from the environment variable named by ``api_key_env`` (read now, on the worker)."""
        name = self.settings.api_key_env
        if not name:
            return None
        value = os.environ.get(name)
        if not value:
            raise LlmError(f"environment variable {name} (--llm_api_key_env) is not set on this worker",
                           retryable=False)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


def open_backend(settings: LlmSettings) -> LlmBackend:
    """Build the backend ``settings.backend`` names (imports its module on first use)."""
    try:
        module_name, class_name = BACKENDS[settings.backend]
    except KeyError:
        if settings.backend == "rules":
            raise ValueError("the rules writer is not a model service: pass "
                             "transforms.label.rules_backend.RulesBackend as the backend factory") from None
        raise ValueError(f"unknown LLM backend {settings.backend!r}; expected one of {', '.join(BACKENDS)}") from None
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(settings)


__all__ = [
    "BACKENDS",
    "DEFAULT_MODELS",
    "LlmBackend",
    "LlmError",
    "LlmReply",
    "LlmRequest",
    "LlmSettings",
    "is_retryable_status",
    "open_backend",
    "operation_timeout",
    "parse_retry_after",
]
