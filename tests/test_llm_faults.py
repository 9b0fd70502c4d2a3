"""The model server goes away mid-run: bounded retries, then recovery or dead letters — never a hang
and never a lost record."""

import json
import threading
import time

from tests.llm_fake_server import Action, FakeLlmServer
from tests.test_llm_questions import _question_for, _records, _run, _settings


def _answer(call):
    return Action(text=json.dumps({"question": _question_for(call)}))


def test_a_server_that_comes_back_within_the_retries_loses_nothing():
    server = FakeLlmServer(_answer)  # bound and listening, but not answering yet: as if restarting
    threading.Timer(0.6, server.start).start()
    try:
        written, dead = _run(_records(), _settings(server, llm={"timeout_s": 0.3, "retries": 6, "backoff_s": 0.1}))
    finally:
        time.sleep(0.7)
        server.stop()
    assert (len(written), dead) == (len(_records()), [])
    assert all(record.question_source == "llm" for record in written)


def test_a_killed_server_turns_records_into_dead_letters_after_bounded_retries():
    server = FakeLlmServer(_answer).start()
    server.stop()  # killed: connections are refused from now on
    started = time.monotonic()
    written, dead = _run(_records(), _settings(server, llm={"timeout_s": 0.3, "retries": 2, "backoff_s": 0.05}))
    assert written == []
    assert [d.reason for d in dead] == ["request_failed"] * len(_records())
    assert all("connection" in d.detail.lower() or "refused" in d.detail.lower() for d in dead)
    assert time.monotonic() - started < 60
