"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint: OpenAI, vLLM, Ollama, llama.cpp server.

Structured output is asked for with ``response_format: {type: json_schema, json_schema:
{name, schema, strict}}``; a server that rejects that form (llama-cpp-python's) is asked
with ``{type: json_object, schema}`` from then on, and the handler validates every reply
anyway. No retries here: the handler retries, so each attempt is counted once.

HTTP goes through the standard library's ``http.client`` with one keep-alive connection
per handler thread, not httpx: at 64 requests in flight httpx spent 1.57 ms of CPU per
request against 0.30 ms here (measured on this project's 2-core machine), and that CPU
is taken from the pipeline running in the same process.

``--llm_timeout_s`` bounds the whole request, not each socket read: every send and
receive on the connection is given only the time left before the request's deadline
(:class:`_DeadlineSocket`), so a server that drips its reply a byte a second is cut off
on time, and the connection is closed and replaced rather than left reading.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import threading
import time
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from adapters.llm import (LlmBackend, LlmError, LlmReply, LlmRequest, LlmSettings, is_retryable_status,
                          operation_timeout, parse_retry_after)

DEFAULT_ENDPOINT = "https://api.openai.com/v1"


def chat_completions_url(endpoint: Optional[str]) -> str:
    """The chat-completions URL for a base URL given with or without its ``/v1``.

    >>> chat_completions_url("http://127.0.0.1:8080")
    'http://127.0.0.1:8080/v1/chat/completions'
    >>> chat_completions_url("http://localhost:11434/v1/")
    'http://localhost:11434/v1/chat/completions'
    >>> chat_completions_url("http://h/v1/chat/completions")
    'http://h/v1/chat/completions'
    """
    base = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


def request_body(model: str, request: LlmRequest, temperature: float, max_tokens: int,
                 schema_format: str = "json_schema") -> dict[str, Any]:
    """The JSON body of one chat-completions call.

    ``schema_format`` is ``json_schema`` (OpenAI, vLLM, Ollama) or ``json_object`` with the
    schema beside it (llama-cpp-python's server, which rejects ``json_schema``).
    """
    messages = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": request.sample,
    }
    if request.schema is not None and schema_format == "json_object":
        body["response_format"] = {"type": "json_object", "schema": dict(request.schema)}
    elif request.schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": dict(request.schema), "strict": True},
        }
    return body


def rejects_json_schema(status: int, text: str) -> bool:
    """Whether an error says the server does not know ``response_format: json_schema``.

    llama-cpp-python answers such a request with HTTP 500 and a validation message
    ("Input should be 'text' or 'json_object'"); others use 400 or 422.
    """
    return status in (400, 422, 500) and "response_format" in text and "json_schema" in text


def _error_text(body: bytes, limit: int = 300) -> str:
    return body[:limit].decode("utf-8", errors="replace")


class _DeadlineSocket:
    """A connected (plain or TLS) socket whose every send and receive ends by its connection's deadline.

    ``http.client`` reads the status line, headers and body through ``makefile('rb')``
    and sends with ``sendall``; both come here, and each sets the socket's timeout to
    what is left of the request first. ``makefile`` and ``close`` keep the socket's
    reference counting, so a response read after ``http.client`` closed its connection
    (``Connection: close``) still reads.
    """

    def __init__(self, sock: socket.socket, connection: "_DeadlineMixin"):
        self._sock = sock
        self._connection = connection
        self._io_refs = 0
        self._closed = False

    def _arm(self) -> None:
        timeout = operation_timeout(self._connection.timeout, self._connection.deadline)
        if timeout is not None and timeout <= 0:
            raise TimeoutError("the request's deadline passed")
        self._sock.settimeout(timeout)

    def sendall(self, data: Any) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", buffering: Optional[int] = None, **_: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        self._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"),  # type: ignore[arg-type]
                                 buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE)

    def _decref_socketios(self) -> None:
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineMixin:
    """An ``http.client`` connection whose requests end by ``deadline`` (a ``time.monotonic()`` value).

    ``timeout`` stays the per-operation limit (as in ``http.client``); ``deadline`` is set
    before each request and cuts every operation of it, connecting included.
    """

    timeout: Any
    sock: Any
    deadline: Optional[float] = None

    def connect(self) -> None:
        per_operation = self.timeout
        self.timeout = operation_timeout(per_operation, self.deadline)
        if self.timeout is not None and self.timeout <= 0:
            self.timeout = per_operation
            raise TimeoutError("the request's deadline passed")
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self.timeout = per_operation
        self.sock = _DeadlineSocket(self.sock, self)


class _HTTPConnection(_DeadlineMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, http.client.HTTPSConnection):
    pass


class _Connections:
    """Keep-alive connections to one server, one per calling thread (``http.client`` is not thread-safe)."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LlmError(f"--llm_endpoint must be an http(s) URL, got {url!r}", retryable=False)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context() if self.https else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection: http.client.HTTPConnection
        if self.https:
            connection = _HTTPSConnection(self.host, self.port, timeout=self.timeout_s, context=self._context)
        else:
            connection = _HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        self._local.connection = connection
        with self._lock:
            self._open.append(connection)
        return connection, False

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._open:
                    self._open.remove(connection)

    def post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        """Status, headers and body of one POST, all within ``timeout_s``; a stale kept-alive
        connection is replaced (within the same deadline)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            connection, reused = self._connection()
            connection.deadline = deadline  # type: ignore[attr-defined]
            try:
                connection.request("POST", self.path, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = response.read()
            except TimeoutError:
                self._drop()  # a connection cut mid-reply cannot be reused
                raise LlmError(f"timed out after {self.timeout_s} s (connect, send and the whole reply)",
                               retryable=True) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self._drop()
                if reused:
                    continue  # the server closed an idle connection; this one is fresh
                raise LlmError(f"connection failed: {type(error).__name__}: {error}", retryable=True) from None
            except (OSError, http.client.HTTPException) as error:
                self._drop()
                raise LlmError(f"connection failed: {type(error).__name__}: {error}", retryable=True) from None
            if response.will_close:
                self._drop()
            return response.status, response.headers, data

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
        for connection in connections:
            connection.close()


class OpenAiBackend(LlmBackend):
    """``--llm openai``: chat completions over HTTP with an optional bearer key."""

    name = "openai"

    def __init__(self, settings: LlmSettings):
        super().__init__(settings)
        self.url = chat_completions_url(settings.endpoint)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self.api_key()
        self._key = key
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._connections = _Connections(self.url, settings.timeout_s)
        self._schema_format = "json_schema"

    def complete(self, request: LlmRequest) -> LlmReply:
        schema_format = self._schema_format
        status, headers, body = self._post(request, schema_format)
        if (request.schema is not None and schema_format == "json_schema"
                and rejects_json_schema(status, _error_text(body, 2000))):
            # Negotiated once per backend: later requests use the form this server accepts.
            self._schema_format = "json_object"
            status, headers, body = self._post(request, "json_object")
        if status != 200:
            message = f"HTTP {status}: {_error_text(body)}"
            if self._key:  # gateways quote a rejected key back: never let it reach a dead letter
                message = message.replace(self._key, "***")
            raise LlmError(
                message,
                retryable=is_retryable_status(status),
                status=status,
                retry_after_s=parse_retry_after(headers.get("retry-after")),
            )
        return parse_response(body)

    def _post(self, request: LlmRequest, schema_format: str) -> tuple[int, Mapping[str, str], bytes]:
        body = request_body(self.model, request, self.temperature(request), self.max_output_tokens(request),
                            schema_format)
        return self._connections.post(json.dumps(body).encode("utf-8"), self._headers)

    def close(self) -> None:
        self._connections.close()


def parse_response(content: bytes) -> LlmReply:
    """Text and token counts from a chat-completions response body.

    An unreadable body (a proxy's HTML page, a cut connection) is retryable; a readable
    body without a message is not.
    """
    try:
        data = json.loads(content)
    except ValueError:
        raise LlmError(f"response is not JSON: {content[:200]!r}", retryable=True) from None
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise LlmError(f"response has no choices[0].message: {str(data)[:200]}", retryable=False) from None
    text = message.get("content") if isinstance(message, dict) else None
    if text is None:
        refusal = message.get("refusal") if isinstance(message, dict) else None
        raise LlmError(f"no content in reply{': refused: ' + str(refusal)[:200] if refusal else ''}", retryable=False)
    usage = data.get("usage") or {}
    return LlmReply(
        text=str(text),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )
