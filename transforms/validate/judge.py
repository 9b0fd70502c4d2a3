"""Judge: a model scores every final pair 0–4 on fluency, alignment and schema use (``--judge``).

A pair can execute, survive dedup and still teach the wrong thing: a stilted question,
a question that forgets the SQL's second filter, a join on the wrong column. Execution
cannot see those; a reader can. ``--judge`` asks a model (``--judge_llm*``, by default the
``--llm`` model, at temperature 0) to read each final pair — its question, its SQL and the
focused schema with sample rows — and score three criteria from 0 (unusable) to 4
(flawless), after OpenDCAI DataFlow's correspondence filter and NVIDIA Data Designer's
judges:

* ``fluency``: a clear, natural question a person would ask;
* ``alignment``: every condition of the SQL asked for, nothing extra asked;
* ``schema_use``: the tables, columns, joins and values the question means.

The prompt is ``adapters/llm/prompts/judge.txt``; the reply is JSON checked against
``judge.schema.json`` beside it (integers 0–4). The judge sees the pair and the schema
only: never another judge's scores, the round-trip verdict or anything else in ``extra``,
so each score is its own opinion.

Each kept pair carries ``extra['judge']`` — the scores as JSON text with sorted keys
(``{"alignment": 4, "fluency": 3, "schema_use": 4}``: ``extra`` maps strings to strings) —
with the model's one-sentence ``extra['judge_reason']`` and ``extra['judge_model']``.
``--judge_min S`` turns a pair whose *lowest* score is under S into a dead letter (stage
``judge``, reason ``below_min``, the scores in the detail): the minimum, not the mean,
because one bad criterion (a misaligned question) spoils a pair however fluent it is.
Other reasons: ``bad_reply`` (no schema-valid JSON after the one repair request),
``request_failed``, ``no_question``, ``no_database``, ``database_unavailable``.

One request per final pair (plus at most one repair request for an unusable reply),
counted as ``llm.judge.*`` in the report's ``llm`` section; the report's ``judge`` section
holds the score histograms (``lowest:<n>``, ``<criterion>:<n>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple, Optional

import apache_beam as beam

from adapters.llm import LlmRequest, LlmSettings
from adapters.llm.handler import LlmTask
from adapters.llm.prompting import load_prompt
from transforms.kit import catalog as catalogs
from transforms.kit.stage import DEAD, count, reject
from transforms.core.record import Record
from transforms.core.vocab import dialect_name
from transforms.kit.llm_stage import AskModel, ModelReply

#: Dead-letter stage, request stage (``llm.judge.*``) and report-note section.
STAGE = "judge"
#: What the judge scores, in the order the detail of a dead letter lists them.
CRITERIA = ("fluency", "alignment", "schema_use")
#: The score range (the reply schema's enum says the same).
LOWEST_SCORE, HIGHEST_SCORE = 0, 4
#: Report notes side output.
NOTES = "notes"
#: Reply budget: three integers and a sentence.
REPLY_TOKENS = 256


@dataclass(frozen=True)
class JudgeSettings:
    """What the judge stage needs (plain values: it pickles into the graph without a client)."""

    llm: LlmSettings
    database: str  # the --database spec the pairs ran on (their schema is shown to the judge)
    database_settings: Mapping[str, Any] = field(default_factory=dict)
    schema_patterns: tuple[str, ...] = ()
    schema_dialect: Optional[str] = None
    min_score: Optional[int] = None  # --judge_min: a lower lowest score is a dead letter
    max_prompt_tables: int = catalogs.MAX_PROMPT_TABLES

    @property
    def model_label(self) -> str:
        return f"{self.llm.backend}:{self.llm.model_name}"


class Scores(NamedTuple):
    """One judge's scores of one pair, and its reason."""

    fluency: int
    alignment: int
    schema_use: int
    reason: str = ""

    @property
    def lowest(self) -> int:
        return min(self.fluency, self.alignment, self.schema_use)

    def as_text(self) -> str:
        """The scores as ``extra['judge']`` holds them: JSON text, keys sorted.

        >>> Scores(3, 4, 2).as_text()
        '{"alignment": 4, "fluency": 3, "schema_use": 2}'
        """
        return json.dumps({name: getattr(self, name) for name in sorted(CRITERIA)}, separators=(", ", ": "))

    def describe(self) -> str:
        """The scores in words, for a dead letter's detail.

        >>> Scores(4, 1, 3).describe()
        'fluency 4, alignment 1, schema_use 3'
        """
        return ", ".join(f"{name} {getattr(self, name)}" for name in CRITERIA)


def parse_scores(value: Any) -> Optional[Scores]:
    """The scores of a reply (already checked against ``judge.schema.json``), or None if unusable.

    Checked again here, because a reply is data: whole numbers 0–4 only (``4.0`` is 4).

    >>> parse_scores({"fluency": 4, "alignment": 1.0, "schema_use": 3, "reason": " Drops  a filter. "})
    Scores(fluency=4, alignment=1, schema_use=3, reason='Drops a filter.')
    >>> parse_scores({"fluency": 5, "alignment": 1, "schema_use": 3}) is None
    True
    """
    if not isinstance(value, Mapping):
        return None
    scores = []
    for name in CRITERIA:
        score = value.get(name)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or score != int(score):
            return None
        if not LOWEST_SCORE <= int(score) <= HIGHEST_SCORE:
            return None
        scores.append(int(score))
    reason = " ".join(str(value.get("reason") or "").split())[:500]
    return Scores(*scores, reason=reason)


def below_min(scores: Scores, min_score: Optional[int]) -> Optional[str]:
    """The dead letter's detail when the lowest score is under ``min_score``, else None.

    >>> below_min(Scores(4, 1, 4, "asks for no year"), 3)
    'lowest score 1 < --judge_min 3: fluency 4, alignment 1, schema_use 4; reason: asks for no year'
    >>> below_min(Scores(4, 3, 4), 3) is None, below_min(Scores(0, 0, 0), None) is None
    (True, True)
    """
    if min_score is None or scores.lowest >= min_score:
        return None
    detail = f"lowest score {scores.lowest} < --judge_min {min_score}: {scores.describe()}"
    return f"{detail}; reason: {scores.reason}" if scores.reason else detail


def judge_request(record: Record, schema: str) -> LlmRequest:
    """The judge's request for one pair: the pair and its schema, nothing else of the record."""
    request = load_prompt("judge").request(
        stage=STAGE, dialect=dialect_name(record.dialect), schema=schema, question=record.question or "",
        sql=" ".join((record.normalized_sql or record.sql).split()))
    return request._replace(max_output_tokens=REPLY_TOKENS, temperature=0.0)


def score_notes(scores: Scores) -> list[str]:
    """Report notes of one judged pair (``note:judge:lowest:<n>``, ``note:judge:<criterion>:<n>``)."""
    return [f"note:{STAGE}:lowest:{scores.lowest}", *(f"note:{STAGE}:{name}:{getattr(scores, name)}"
                                                      for name in CRITERIA)]


class _JudgeTasksFn(beam.DoFn):
    """Pair → ``LlmTask`` with the judge's request (or a dead letter when there is nothing to judge)."""

    def __init__(self, settings: JudgeSettings):
        self.settings = settings

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, record: Record) -> Iterator:
        catalog, dead = self._bench.pair_catalog(record, STAGE, "a pair without a question cannot be judged")
        if dead is not None:
            yield dead
            return
        tables = catalogs.focus(catalog, record.tables, limit=self.settings.max_prompt_tables)
        yield LlmTask((judge_request(record, catalogs.render(tables)),), record)


class _ApplyScoresFn(beam.DoFn):
    """The judge's reply → the pair with its scores, or a dead letter."""

    def __init__(self, settings: JudgeSettings):
        self.settings = settings

    def process(self, reply: ModelReply) -> Iterator:
        record: Record = reply.context
        outcome = reply.outcome
        extra = dict(record.extra, judge_model=self.settings.model_label)
        if outcome.error:
            reason = "bad_reply" if outcome.error == "invalid_reply" else outcome.error
            yield reject(STAGE, reason, outcome.detail, record._replace(extra=extra))
            return
        scores = parse_scores(outcome.value)
        if scores is None:
            yield reject(STAGE, "bad_reply", f"scores outside {LOWEST_SCORE}-{HIGHEST_SCORE}: "
                                             f"{str(outcome.text)[:500]!r}", record._replace(extra=extra))
            return
        extra["judge"] = scores.as_text()
        if scores.reason:
            extra["judge_reason"] = scores.reason
        record = record._replace(extra=extra)
        count(f"{STAGE}.scored")
        for note in score_notes(scores):
            yield beam.pvalue.TaggedOutput(NOTES, note)
        detail = below_min(scores, self.settings.min_score)
        if detail is not None:
            yield reject(STAGE, "below_min", detail, record)
            return
        yield record


class JudgeOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class JudgePairs(beam.PTransform):
    """Final pairs → the pairs with ``extra['judge']`` scores (``--judge_min``: only those scoring enough)."""

    def __init__(self, settings: JudgeSettings):
        super().__init__()
        self.settings = settings

    def expand(self, records):
        settings = self.settings
        judged = records | "AskJudge" >> AskModel(_JudgeTasksFn(settings), settings.llm, _ApplyScoresFn(settings),
                                                  tags=(DEAD, NOTES), count_records=True)
        return JudgeOutputs(judged["records"], judged[DEAD], judged[NOTES])
