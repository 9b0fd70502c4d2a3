"""Gemini through google-genai: on Vertex AI (project + location) or with an API key.

* ``--llm_project`` given: ``genai.Client(vertexai=True, project, location)`` with
  Application Default Credentials (on Dataflow, the worker's service account).
* otherwise ``--llm_api_key_env`` names the variable holding a Gemini API key
  (``genai.Client(api_key=...)``, the Gemini Developer API).

``--llm_endpoint`` becomes ``HttpOptions(base_url=...)``: a regional endpoint, a
gateway, or a local emulator. A loopback endpoint in Vertex AI mode gets a stub bearer
token instead of ADC, so tests and local emulators need no Google credentials.

Replies are constrained with ``response_mime_type='application/json'`` and
``response_json_schema`` (plain JSON Schema, accepted by both APIs). google-genai's own
retries are off: the handler retries, so each attempt is counted once. Not
``vertexai.generative_models`` (deprecated) and not Beam's ``GeminiModelHandler``,
which sends a batch as one multi-part request and keeps only the first answer.

``--llm_timeout_s`` bounds the whole request. google-genai passes ``HttpOptions(timeout)``
to httpx as one number, which httpx applies to each connect, write and read on its own:
a server that sends a byte a second never trips it. So the client's connection pools get
a network backend (:class:`DeadlineNetworkBackend`) that cuts every socket operation to
the time left before the calling thread's request deadline; past it, httpcore raises its
timeout and closes the connection, freeing it.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

import httpcore
import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from adapters.llm import (LlmBackend, LlmError, LlmReply, LlmRequest, LlmSettings, is_retryable_status,
                          operation_timeout, parse_retry_after)

DEFAULT_LOCATION = "us-central1"
_LOGGER = logging.getLogger(__name__)
#: The deadline (``time.monotonic()``) of the request the current thread is making, if any.
_REQUEST = threading.local()


def _cut(timeout: Optional[float], error: type[Exception]) -> Optional[float]:
    """``timeout`` cut to what is left of this thread's request; ``error`` once nothing is left."""
    left = operation_timeout(timeout, getattr(_REQUEST, "deadline", None))
    if left is not None and left <= 0:
        raise error("the request's deadline passed")
    return left


class DeadlineNetworkStream(httpcore.NetworkStream):
    """One connection's stream; every read and write ends by the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        return self._stream.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        self._stream.write(buffer, _cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: Optional[str] = None,
                  timeout: Optional[float] = None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _cut(timeout, httpcore.ConnectTimeout))
        return DeadlineNetworkStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineNetworkBackend(httpcore.NetworkBackend):
    """httpcore's network backend with connects, reads and writes cut to the request's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend):
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: Optional[float] = None, local_address: Optional[str] = None,
                    socket_options: Optional[Iterable[Any]] = None) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, _cut(timeout, httpcore.ConnectTimeout), local_address,
                                           socket_options)
        return DeadlineNetworkStream(stream)

    def connect_unix_socket(self, path: str, timeout: Optional[float] = None,
                            socket_options: Optional[Iterable[Any]] = None) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _cut(timeout, httpcore.ConnectTimeout), socket_options)
        return DeadlineNetworkStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound_whole_requests(client: "genai.Client") -> int:
    """Give the client's httpx connection pools a :class:`DeadlineNetworkBackend`; returns how many.

    google-genai builds its httpx client itself (keeping its TLS and mTLS set-up and the
    environment's proxies), so the pools are reached through private attributes of
    google-genai, httpx and httpcore; the versions are pinned, and a test checks that a
    dripping server is cut off. Zero means this client is not on httpx (``httpx2``, or
    google-auth's session for mTLS): requests are then bounded per read only.
    """
    http = getattr(getattr(client, "_api_client", None), "_httpx_client", None)
    transports = [getattr(http, "_transport", None), *(getattr(http, "_mounts", None) or {}).values()]
    bounded = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            continue
        if not isinstance(backend, DeadlineNetworkBackend):
            pool._network_backend = DeadlineNetworkBackend(backend)  # type: ignore[union-attr]
        bounded += 1
    return bounded


def _transport_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(timeouts, other transport errors) of httpx, and of httpx2 when google-genai may use it."""
    timeouts: list[type] = [httpx.TimeoutException]
    transports: list[type] = [httpx.TransportError]
    try:
        import httpx2  # type: ignore[import-not-found]

        timeouts.append(httpx2.TimeoutException)
        transports.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(timeouts), tuple(transports)


_TIMEOUTS, _TRANSPORT_ERRORS = _transport_errors()
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(url: Optional[str]) -> bool:
    """Whether ``url`` points at this machine (a local emulator or test server).

    >>> is_loopback("http://127.0.0.1:8080"), is_loopback("https://us-central1-aiplatform.googleapis.com")
    (True, False)
    """
    return bool(url) and (urlsplit(url).hostname or "") in _LOOPBACK


def _stub_credentials() -> Any:
    import google.oauth2.credentials

    return google.oauth2.credentials.Credentials(token="local-emulator")  # never expires, never refreshes


def make_client(settings: LlmSettings, api_key: Optional[str]) -> "genai.Client":
    """The google-genai client for these settings (no network until the first call)."""
    http_options = types.HttpOptions(timeout=int(settings.timeout_s * 1000))
    if os.environ.get("GOOGLE_GENAI_HTTP_CLIENT", "").strip().lower() in ("", "auto", "httpx"):
        # httpx's default pool (100 connections) would queue requests beyond it
        http_options.client_args = {"limits": httpx.Limits(max_connections=max(settings.max_in_flight, 10))}
    if settings.endpoint:
        http_options.base_url = settings.endpoint
    if settings.project:
        credentials = _stub_credentials() if is_loopback(settings.endpoint) else None
        return genai.Client(
            vertexai=True,
            project=settings.project,
            location=settings.location or DEFAULT_LOCATION,
            credentials=credentials,
            http_options=http_options,
        )
    if not api_key:
        raise LlmError("gemini needs --llm_project (Vertex AI) or --llm_api_key_env (Gemini API key)",
                       retryable=False)
    return genai.Client(vertexai=False, api_key=api_key, http_options=http_options)


def generate_config(request: LlmRequest, temperature: float, max_tokens: int) -> types.GenerateContentConfig:
    """The generation config of one request: sampling, seed and the reply's JSON schema."""
    config = types.GenerateContentConfig(
        temperature=temperature,
        max_output_tokens=max_tokens,
        seed=request.sample,
        system_instruction=request.system or None,
        candidate_count=1,
    )
    if request.schema is not None:
        config.response_mime_type = "application/json"
        config.response_json_schema = dict(request.schema)
    return config


def _api_error(error: genai_errors.APIError) -> LlmError:
    status = int(getattr(error, "code", 0) or 0)
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    retry_after = parse_retry_after(headers.get("retry-after") if hasattr(headers, "get") else None)
    message = str(error)[:300]
    return LlmError(f"HTTP {status}: {message}", retryable=is_retryable_status(status), status=status,
                    retry_after_s=retry_after)


class GeminiBackend(LlmBackend):
    """``--llm gemini``: one ``generate_content`` call per request, on one shared client."""

    name = "gemini"

    def __init__(self, settings: LlmSettings, client: Optional["genai.Client"] = None):
        super().__init__(settings)
        key = None if settings.project else self.api_key()
        self._client = client or make_client(settings, key)
        if not bound_whole_requests(self._client):
            _LOGGER.warning("gemini: this HTTP client cannot be given a whole-request deadline; "
                            "--llm_timeout_s bounds each network read only")

    def complete(self, request: LlmRequest) -> LlmReply:
        config = generate_config(request, self.temperature(request), self.max_output_tokens(request))
        _REQUEST.deadline = time.monotonic() + self.settings.timeout_s
        try:
            response = self._client.models.generate_content(model=self.model, contents=request.prompt, config=config)
        except genai_errors.APIError as error:
            raise _api_error(error) from None
        except (genai_errors.UnknownApiResponseError, json.JSONDecodeError) as error:
            raise LlmError(f"response is not JSON: {str(error)[:200]}", retryable=True) from None
        except _TIMEOUTS as error:
            message = (f"timed out after {self.settings.timeout_s} s (connect, send and the whole reply): "
                       f"{type(error).__name__}")
            raise LlmError(message, retryable=True) from None
        except _TRANSPORT_ERRORS as error:
            raise LlmError(f"connection failed: {type(error).__name__}: {error}", retryable=True) from None
        finally:
            _REQUEST.deadline = None
        text = _text_of(response)
        if text is None:
            finish = None
            if response.candidates:
                finish = response.candidates[0].finish_reason
            blocked = getattr(response.prompt_feedback, "block_reason", None) if response.prompt_feedback else None
            raise LlmError(f"no text in reply (finish_reason={finish}, block_reason={blocked})", retryable=False)
        usage = response.usage_metadata
        return LlmReply(
            text=text,
            prompt_tokens=int((usage.prompt_token_count if usage else 0) or 0),
            completion_tokens=int((usage.candidates_token_count if usage else 0) or 0),
        )

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


def _text_of(response: types.GenerateContentResponse) -> Optional[str]:
    """The concatenated text parts of the first candidate (thoughts excluded), or None."""
    if not response.candidates:
        return None
    content = response.candidates[0].content
    if content is None or not content.parts:
        return None
    texts = [part.text for part in content.parts if part.text is not None and not part.thought]
    return "".join(texts) if texts else None
