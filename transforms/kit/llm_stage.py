"""One shape for every stage that asks a model: build tasks → ``RunInference`` → apply the replies.

Nine stages ask a model something (questions, personas, teachings, synthesis, SQL repair,
depth and breadth evolution, the blind round trip, the weak model's samples). Each has its
own prompt and its own way of reading a reply, but the plumbing between is the same, and
:class:`AskModel` does it once:

1. ``make_tasks`` (a ``DoFn`` or a function) turns each input into :class:`LlmTask`\\ s —
   the requests one element needs, with the element carried along as ``context`` — or
   into tagged outputs (a dead letter when no prompt can be built, a report note);
2. ``RunInference(LlmModelHandler(...))`` answers them: concurrent, retried, throttled,
   cached, and metered per request (``llm.<stage>.requests``/``calls``/``cache_hits``/
   ``retries``/``failures``/``repairs``/tokens — the report's ``llm`` section);
   with ``count_records=True`` each task also counts ``llm.<stage>.records``, from which
   the report computes requests per record;
3. each answer comes back as a :class:`ModelReply` — ``context`` and one ``LlmOutcome``
   per request, in request order — and ``apply_reply`` (a ``DoFn`` or a function) turns
   it into the stage's output, with :func:`failed_reply` for an outcome that carries no
   usable value (``request_failed`` or ``invalid_reply``: a dead letter with the stage,
   that reason and the handler's detail);
4. every side tag both steps may emit (``dead``, ``notes``, ...) is flattened into one
   PCollection, and the result is a dict: the main output under ``main``, each side
   output under its tag.

Beam's ``ModelHandler`` is the model contract; this is the stage contract on top of it.
A stage module keeps what is its own — the prompt, the reply's meaning, its outputs
NamedTuple — and says the rest in one line. A new stage, with a ``DoFn`` that builds the
tasks and a function that reads the replies::

    class _JudgeTasksFn(beam.DoFn):
        def process(self, record):
            request = load_prompt("judge").request(stage="judge", question=record.question, sql=record.sql)
            yield LlmTask((request,), record)

    def _apply_verdict(reply: ModelReply):
        record, outcome = reply.context, reply.outcome
        if outcome.error:
            yield failed_reply("judge", outcome, record)
        elif outcome.value.get("correct"):
            yield record
        else:
            yield reject("judge", "judged_wrong", str(outcome.value.get("why", ""))[:500], record)

    judged = records | "JudgePairs" >> AskModel(_JudgeTasksFn(), settings.llm, _apply_verdict)
    kept, dead = judged["records"], judged[DEAD]

``tests/stages/kit/test_llm_stage.py`` runs that shape against a canned backend.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.ml.inference.base import PredictionResult, RunInference

from adapters.llm import LlmSettings
from adapters.llm.handler import LlmModelHandler, LlmOutcome, LlmTask
from transforms.kit.stage import DEAD, count, reject
from transforms.core.record import Record

#: What builds tasks or applies replies: a DoFn (for ``setup()``/state) or a generator function.
StepFn = Union[beam.DoFn, Callable[..., Iterable[Any]]]


class ModelReply(NamedTuple):
    """One task's answer: the ``context`` its task carried, and one outcome per request, in order."""

    context: Any
    outcomes: tuple[LlmOutcome, ...]

    @property
    def outcome(self) -> LlmOutcome:
        """The only outcome of a one-request task."""
        return self.outcomes[0]


def failed_reply(stage: str, outcome: LlmOutcome, record: Record, *, reason_prefix: str = "",
                 detail_prefix: str = "", detail_suffix: str = "") -> beam.pvalue.TaggedOutput:
    """The dead letter of an outcome with no usable value: reason ``<reason_prefix><outcome.error>``
    (``request_failed`` or ``invalid_reply``), detail the handler's (the last raw reply, or the
    error), between ``detail_prefix`` and ``detail_suffix``."""
    return reject(stage, f"{reason_prefix}{outcome.error}", f"{detail_prefix}{outcome.detail}{detail_suffix}",
                  record)


def model_reply(result: PredictionResult) -> ModelReply:
    """RunInference's ``PredictionResult(task, outcomes)`` as the stage reads it."""
    return ModelReply(result.example.context, tuple(result.inference))


def count_task_records(task: LlmTask) -> LlmTask:
    """Count ``llm.<stage>.records``: one element reached the stage its requests name."""
    count(f"llm.{task.requests[0].stage}.records")
    return task


def _step(fn: StepFn, **side_inputs: Any) -> beam.ParDo:
    return beam.ParDo(fn, **side_inputs) if isinstance(fn, beam.DoFn) else beam.FlatMap(fn, **side_inputs)


class AskModel(beam.PTransform):
    """Elements → ``make_tasks`` → ``RunInference`` → ``apply_reply`` → ``{main: ..., tag: ...}``.

    ``llm`` is the ``LlmModelHandler`` to use (built by the stage when it needs
    ``requests_per_task`` or a backend factory), or the ``LlmSettings`` of a handler for
    one-request tasks. ``tags`` are the side outputs either step may emit (both declare
    all of them; each comes out as one PCollection of both steps' elements);
    ``task_side_inputs`` are passed to ``make_tasks`` as keyword side inputs.
    """

    def __init__(self, make_tasks: StepFn, llm: Union[LlmModelHandler, LlmSettings], apply_reply: StepFn, *,
                 main: str = "records", tags: Sequence[str] = (DEAD,),
                 task_side_inputs: Optional[Mapping[str, Any]] = None, count_records: bool = False):
        super().__init__()
        if main in tags:
            raise ValueError(f"the main output {main!r} is also named as a side tag")
        self.make_tasks = make_tasks
        self.handler = llm if isinstance(llm, LlmModelHandler) else LlmModelHandler(llm)
        self.apply_reply = apply_reply
        self.main = main
        self.tags = tuple(tags)
        self.task_side_inputs = dict(task_side_inputs or {})
        self.count_records = count_records

    def expand(self, elements):
        tasks = elements | "BuildTasks" >> _step(self.make_tasks, **self.task_side_inputs).with_outputs(
            *self.tags, main="tasks")
        asked = tasks.tasks
        if self.count_records:
            asked = asked | "CountRecords" >> beam.Map(count_task_records)
        replies = (asked
                   | "RunInference" >> RunInference(self.handler)
                   | "Replies" >> beam.Map(model_reply))
        applied = replies | "ApplyReplies" >> _step(self.apply_reply).with_outputs(*self.tags, main=self.main)
        outputs = {self.main: applied[self.main]}
        for tag in self.tags:
            outputs[tag] = (tasks[tag], applied[tag]) | f"All{tag.title()}" >> beam.Flatten()
        return outputs
