"""The model server goes away mid-run: bounded retries, then recovery or dead letters — never a hang
and never a lost record."""

import json
import threading
import time

from tests.fakes.llm_fake_server import Action, FakeLlmServer
from tests.stages.label.test_llm_questions import _question_for, _records, _run, _settings


def _answer(call):
    return Action(text=json.dumps({"question": _question_for(call)}))


class _Restarting:
    """An answer for FakeLlmServer: down (each request hangs, unanswered) for the first ``down_for``
    requests, back when the next one arrives. The restart is an event the server sets on a request's
    arrival, not a timer; a hung request waits for it, bounded, and is answered once the server is back
    (its client has usually given up by then)."""

    def __init__(self, down_for: int, hang_limit_s: float = 20.0):
        self.down_for = down_for
        self.hang_limit_s = hang_limit_s
        self.back = threading.Event()
        self.hung = 0
        self._lock = threading.Lock()

    def __call__(self, call) -> Action:
        with self._lock:
            down = not self.back.is_set() and self.hung < self.down_for
            if down:
                self.hung += 1
            else:
                self.back.set()  # the first request after ``down_for`` hung ones finds the server back
        if down and not self.back.wait(self.hang_limit_s):
            return Action(kind="status", status=503)  # never came back: fail loudly, do not hang the test
        return _answer(call)


def test_a_server_that_comes_back_within_the_retries_loses_nothing():
    # down for as many requests as may be in flight at once: every first attempt can hang, and the
    # request that brings the server back is necessarily a retry (there are only len(_records()) firsts)
    restarting = _Restarting(down_for=len(_records()))
    started = time.monotonic()
    with FakeLlmServer(restarting) as server:
        try:
            written, dead = _run(_records(), _settings(server, llm={"timeout_s": 0.3, "retries": 6, "backoff_s": 0.1}))
        finally:
            back = restarting.back.is_set()
            restarting.back.set()  # release anything still hung, whatever happened
    assert back, "the server never came back: no request arrived after the hung ones (no retry?)"
    assert restarting.hung == len(_records())  # it really was down for that many requests
    assert len(server.calls) > len(_records()) and max(call.index for call in server.calls) >= 1  # retried
    assert (len(written), dead) == (len(_records()), [])
    assert all(record.question_source == "llm" for record in written)
    assert time.monotonic() - started < 30


def test_a_killed_server_turns_records_into_dead_letters_after_bounded_retries():
    server = FakeLlmServer(_answer).start()
    server.stop()  # killed: connections are refused from now on
    started = time.monotonic()
    written, dead = _run(_records(), _settings(server, llm={"timeout_s": 0.3, "retries": 2, "backoff_s": 0.05}))
    assert written == []
    assert [d.reason for d in dead] == ["request_failed"] * len(_records())
    assert all("connection" in d.detail.lower() or "refused" in d.detail.lower() for d in dead)
    assert time.monotonic() - started < 60
