"""A local HTTP server that speaks Gemini's and OpenAI's REST APIs, with injectable faults.

Used by ``tests/test_llm_*.py`` (in a thread) and ``bench/bench_llm.py`` (as a
subprocess: ``python tests/fakes/llm_fake_server.py --latency 0.2`` prints its port; with
``--solutions FILE`` it answers the ``--cot``, ``--judge`` and ``--evidence`` prompts too,
see ``stage_answers``). It serves

* ``POST /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  (Vertex AI, what ``genai.Client(vertexai=True, project, location)`` calls),
* ``POST /v1beta/models/{m}:generateContent`` (the Gemini API with an API key; ``/v1/`` from
  google-genai 3),
* ``POST /v1/chat/completions`` (OpenAI-compatible),

and answers every request through ``answer(call) -> Action``: a normal reply (the text
becomes the model's reply, with token counts), an HTTP status (429 with Retry-After,
500...), a stall longer than the client's timeout, a body that is not JSON, or a reply
dripped one byte every ``delay_s`` seconds (``drip``: the headers at once, then the body;
``drip_headers``: the status line and headers too), as a slow or hostile server would.
Every call is recorded (path, headers, prompt, body) for the tests to inspect.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, NamedTuple, Optional

_GEMINI_VERTEX = re.compile(
    r"^/v1beta1/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):generateContent$")
_GEMINI_API = re.compile(r"^/v1(beta)?/models/([^/:]+):generateContent$")  # google-genai 3.x calls /v1
_OPENAI = re.compile(r"^(/v1)?/chat/completions$")
#: A dripping reply gives up after this long, so no server thread outlives a test for long.
DRIP_LIMIT_S = 60.0


class Call(NamedTuple):
    """One request the server received."""

    api: str  # vertex | gemini | openai
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    prompt: str
    index: int  # 0-based count of earlier calls with the same prompt


class Action(NamedTuple):
    """What the server does with a call."""

    kind: str = "reply"  # reply | status | stall | garbage | drip | drip_headers
    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


def default_question(prompt: str) -> str:
    """A plausible question, stable per prompt (no SQL in it)."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:6]
    return f"Which records match request {digest}?"


def default_answer(call: Call) -> Action:
    if "standalone_question" in call.prompt:
        return Action(text=json.dumps({"changes_topic": False, "standalone_question": default_question(call.prompt)}))
    return Action(text=json.dumps({"question": default_question(call.prompt)}))


#: How the prompts of the job's pair-checking stages begin (adapters/llm/prompts/{cot,judge}.txt) or what
#: they ask (evidence.txt): ``stage_answers`` tells them apart by these.
COT_PROMPT = "Solve this question with one"
JUDGE_PROMPT = "Grade this question/SQL pair"
EVIDENCE_PROMPT = "Write the evidence this question needs"


def stage_answers(solutions: Mapping[str, str]) -> Callable[[Call], Action]:
    """An ``answer`` that replies validly to the prompts of ``--cot``, ``--judge`` and ``--evidence`` too.

    For benchmarks of whole jobs (``bench/bench_llm.py``), where every request must succeed so
    that only the request machinery is measured: a ``--cot`` solution is ``solutions[question]``
    (the SQL the bench knows answers it; ``SELECT 1`` for a question it does not know) with a
    one-line reasoning; the judge gives every pair 4s; the evidence names the first table the
    pair's SQL reads (so it passes the grounding check), or none when it reads no table. Any other
    prompt gets ``default_answer``.
    """
    def answer(call: Call) -> Action:
        prompt = call.prompt
        if prompt.startswith(COT_PROMPT):
            found = re.search(r"^Question: (.*)$", prompt, re.MULTILINE)
            question = found.group(1).strip() if found else ""
            return Action(text=json.dumps({"reasoning": f"Find what the question asks for: {question}",
                                           "sql": solutions.get(question, "SELECT 1")}))
        if prompt.startswith(JUDGE_PROMPT):
            return Action(text=json.dumps({"fluency": 4, "alignment": 4, "schema_use": 4, "reason": ""}))
        if EVIDENCE_PROMPT in prompt:
            table = re.search(r"SQL that answers it:\n.*?\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", prompt,
                              re.DOTALL | re.IGNORECASE)
            evidence = f"the records refers to rows of {table.group(1)}" if table else ""
            return Action(text=json.dumps({"evidence": evidence}))
        return default_answer(call)

    return answer


def _prompt_of(api: str, body: dict[str, Any]) -> str:
    try:
        if api == "openai":
            return str(body["messages"][-1]["content"])
        return "".join(part.get("text", "") for part in body["contents"][-1]["parts"])
    except (KeyError, IndexError, TypeError):
        return ""


def _reply_body(api: str, text: str, prompt: str) -> bytes:
    prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(text) // 4)
    if api == "openai":
        data = {
            "id": "chatcmpl-local", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
    else:
        data = {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
                              "totalTokenCount": prompt_tokens + completion_tokens},
            "modelVersion": "fake",
        }
    return json.dumps(data).encode("utf-8")


class FakeLlmServer:
    """``with FakeLlmServer(answer) as server: server.url ...`` — a threaded server on 127.0.0.1."""

    def __init__(self, answer: Callable[[Call], Action] = default_answer, latency_s: float = 0.0):
        self.answer = answer
        self.latency_s = latency_s
        self.calls: list[Call] = []
        self.times: list[float] = []
        self.first_arrival: Optional[float] = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.dripping = 0  # replies being dripped now: a client that gave up closes its connection, ending one
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/stats":
                    self._send(404, b"{}")
                    return
                with server._lock:
                    stats = {"calls": len(server.calls), "first_arrival": server.first_arrival,
                             "last_reply": max(server.times) if server.times else None}
                self._send(200, json.dumps(stats).encode())

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                api = ("vertex" if _GEMINI_VERTEX.match(path) else "gemini" if _GEMINI_API.match(path)
                       else "openai" if _OPENAI.match(path) else None)
                if api is None:
                    self._send(404, b'{"error": {"code": 404, "message": "no such path", "status": "NOT_FOUND"}}')
                    return
                body = json.loads(raw or b"{}")
                prompt = _prompt_of(api, body)
                call = server._record(api, path, dict(self.headers), body, prompt)
                action = server.answer(call)
                if action.kind in ("drip", "drip_headers"):
                    self._drip(_reply_body(api, action.text or default_answer(call).text, prompt),
                               action.delay_s or 1.0, action.kind == "drip_headers")
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.latency_s + action.delay_s)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                if action.kind == "stall":
                    time.sleep(10)
                    return
                if action.kind == "garbage":
                    self._send(200, b"<html><body>Bad gateway, try later</body></html>", "text/html")
                elif action.kind == "status":
                    status = action.status
                    error = {"error": {"code": status, "message": action.text or f"injected {status}",
                                       "status": "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL"}}
                    self._send(status, json.dumps(error).encode(), headers=action.headers)
                else:
                    self._send(200, _reply_body(api, action.text, prompt), headers=action.headers)
                with server._lock:
                    server.times.append(time.monotonic())

            def _drip(self, payload: bytes, interval_s: float, headers_too: bool) -> None:
                """A 200 reply written one byte every ``interval_s`` (after the headers, or from the first byte)."""
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\n\r\n").encode()
                if not headers_too:
                    self.wfile.write(head)
                    self.wfile.flush()
                    head = b""
                self.close_connection = True
                ends = time.monotonic() + DRIP_LIMIT_S
                with server._lock:
                    server.dripping += 1
                try:
                    for byte in head + payload:
                        if time.monotonic() > ends:
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(interval_s)
                except OSError:  # the client gave up and closed the connection
                    return
                finally:
                    with server._lock:
                        server.dripping -= 1

            def _send(self, status: int, payload: bytes, content_type: str = "application/json",
                      headers: tuple[tuple[str, str], ...] = ()) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: Optional[threading.Thread] = None

    def _record(self, api: str, path: str, headers: dict[str, str], body: dict[str, Any], prompt: str) -> Call:
        with self._lock:
            if self.first_arrival is None:
                self.first_arrival = time.monotonic()
            index = self._seen.get(prompt, 0)
            self._seen[prompt] = index + 1
            call = Call(api, path, headers, body, prompt, index)
            self.calls.append(call)
            return call

    def start(self) -> "FakeLlmServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeLlmServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds before every reply")
    parser.add_argument("--solutions", type=argparse.FileType("r", encoding="utf-8"),
                        help="JSON object question -> SQL: answer every stage's prompt with stage_answers(it)")
    args = parser.parse_args(argv)
    answer = stage_answers(json.load(args.solutions)) if args.solutions else default_answer
    server = FakeLlmServer(answer, latency_s=args.latency)
    print(server.port, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
