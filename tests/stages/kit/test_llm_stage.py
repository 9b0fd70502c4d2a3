"""AskModel, the shared shape of a model stage: tasks → RunInference → replies → outputs, dead letters joined."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from tests.fakes.beam_collect import collect
from tests.conftest import make_pipeline

from adapters.llm import LlmBackend, LlmError, LlmReply, LlmRequest, LlmSettings
from adapters.llm.handler import LlmModelHandler, LlmOutcome, LlmTask
from transforms.kit.stage import DEAD, reject
from transforms.core.record import new_record
from transforms.kit.llm_stage import AskModel, ModelReply, failed_reply

STAGE = "judge"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


class EchoBackend(LlmBackend):
    """Answers ``{"answer": PROMPT}`` in capitals; a prompt that says ``fail`` is refused, ``prose`` gets prose."""

    name = "echo"

    def complete(self, request: LlmRequest) -> LlmReply:
        if "fail" in request.prompt:
            raise LlmError("the model refused", retryable=False)
        if "prose" in request.prompt:
            return LlmReply(text="I would rather not answer in JSON.")
        return LlmReply(text=json.dumps({"answer": request.prompt.upper()}))


def _handler(requests_per_task: int = 1) -> LlmModelHandler:
    settings = LlmSettings(backend="echo", retries=0, max_in_flight=2)
    return LlmModelHandler(settings, requests_per_task=requests_per_task, backend_factory=EchoBackend)


class _TasksFn(beam.DoFn):
    """Two requests per record; a record without a question cannot be prompted (a dead letter here)."""

    def process(self, record):
        if not record.question:
            yield reject(STAGE, "no_question", "nothing to ask", record)
            return
        requests = tuple(LlmRequest(prompt=f"{record.question} {i}", schema=SCHEMA, stage=STAGE, sample=i)
                         for i in range(2))
        yield LlmTask(requests, record)


def _apply(reply: ModelReply):
    record = reply.context
    failed = [outcome for outcome in reply.outcomes if outcome.error]
    if failed:
        yield failed_reply(STAGE, failed[0], record)
        return
    yield beam.pvalue.TaggedOutput("notes", f"answered:{record.question}")
    yield record._replace(extra={"answers": " | ".join(o.value["answer"] for o in reply.outcomes)})


def _run(records, **options):
    pipeline = make_pipeline()
    asked = (pipeline | beam.Create(records)
             | "Judge" >> AskModel(_TasksFn(), _handler(2), _apply, tags=(DEAD, "notes"), **options))
    return collect(pipeline, records=asked["records"], dead=asked[DEAD], notes=asked["notes"])


def test_replies_come_back_with_their_record_and_outcomes_in_request_order():
    found = _run([new_record("SELECT 1", "how many")])
    assert [r.extra["answers"] for r in found["records"]] == ["HOW MANY 0 | HOW MANY 1"]
    assert found["notes"] == ["answered:how many"]
    assert found["dead"] == []


def test_dead_letters_of_both_steps_come_out_as_one_collection():
    records = [new_record("SELECT 1", "fail me"), new_record("SELECT 2", None), new_record("SELECT 3", "prose")]
    dead = sorted(_run(records)["dead"], key=lambda d: d.record.sql)
    assert [(d.stage, d.reason, d.record.sql) for d in dead] == [
        (STAGE, "request_failed", "SELECT 1"), (STAGE, "no_question", "SELECT 2"), (STAGE, "invalid_reply", "SELECT 3")]
    assert "the model refused" in dead[0].detail
    assert "I would rather not answer in JSON." in dead[2].detail  # the raw reply, for whoever reads the rejects


def _counters(result) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    return {c.key.metric.name: c.committed for c in
            result.metrics().query(MetricsFilter().with_namespace("sqlpairs"))["counters"]}


def test_requests_are_counted_per_stage_and_records_only_when_asked():
    records = [new_record(f"SELECT {i}", f"question {i}") for i in range(3)]
    counted = _counters(_run(records, count_records=True)["_result"])
    assert counted["llm.judge.requests"] == 6
    assert counted["llm.judge.records"] == 3
    assert "llm.judge.records" not in _counters(_run(records)["_result"])


def test_settings_alone_make_a_one_request_handler():
    stage = AskModel(_TasksFn(), LlmSettings(backend="openai"), _apply)
    assert isinstance(stage.handler, LlmModelHandler) and stage.handler.requests_per_task == 1


def test_the_main_output_cannot_share_a_name_with_a_side_tag():
    with pytest.raises(ValueError, match="records"):
        AskModel(_TasksFn(), _handler(), _apply, tags=(DEAD, "records"))


def test_a_failed_reply_is_a_dead_letter_with_the_stage_and_the_outcomes_reason():
    record = new_record("SELECT 1", "q")
    outcome = LlmOutcome(error="request_failed", detail="HTTP 500")
    plain = failed_reply("synthesize", outcome, record).value
    assert (plain.stage, plain.reason, plain.detail) == ("synthesize", "request_failed", "HTTP 500")
    assert plain.record == record
    framed = failed_reply("synthesize", outcome, record, reason_prefix="repair_", detail_prefix="repairing: ",
                          detail_suffix="; the SQL had failed").value
    assert (framed.reason, framed.detail) == ("repair_request_failed", "repairing: HTTP 500; the SQL had failed")


def test_a_reply_of_one_request_has_its_outcome_at_hand():
    outcome = LlmOutcome(value={"answer": "x"})
    assert ModelReply("context", (outcome,)).outcome is outcome
