"""WriteQuestions: a model writes the question for logged SQL, grounded in the tables' schema.

For every record with SQL but no question, ``questions_per_sql`` candidate questions
are asked for, each prompt carrying the referenced tables' columns, types, keys and —
when a database is given — a few sample rows (``transforms.sql.table_schema``), optionally
in the record's persona's voice and in one of OmniSQL's nine styles (picked from the
record id, so a re-run picks the same). The most central candidate is kept, as OmniSQL
does: the one with the highest mean token-Jaccard similarity to the others (ties: the
alphabetically first), after dropping candidates that are empty, too long or contain
SQL. A record whose candidates all fail becomes a dead letter (stage ``llm``) saying why.

With ``context='segmented'``, chat records (a question plus earlier turns) are asked
instead whether the question starts a new topic; a follow-up is rewritten as a
standalone question. Either way the pair comes out standalone (``context`` empty).

Calls go through ``transforms.kit.llm_stage.AskModel`` (``RunInference`` with
``adapters.llm.handler.LlmModelHandler``): concurrent, retried, throttled, cached and
metered there. Records that already have a
question pass straight through.

The graph runs this after execute → filter → dedup (``transforms.label.describe``), so it sees
each distinct validated pair once: ``questions_per_sql`` requests per record that reaches
it, never one for SQL that failed or for a repeat that dedup merged. Each record reaching
a model stage counts ``llm.<stage>.records``; the report's ``llm`` section shows it next to
the requests (retries and repairs are counted apart, as ``calls`` and ``repairs``).
"""

from __future__ import annotations

import collections
import hashlib
import logging
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam

from adapters.llm import LlmSettings
from adapters.llm.handler import LlmModelHandler, LlmOutcome, LlmTask
from adapters.llm.prompting import load_prompt
from transforms.core.vocab import STYLES, dialect_name
from transforms.core.record import Record
from transforms.sql import table_schema
from transforms.kit.ddl_files import load_ddl
from transforms.sql.question_text import clean_question, question_problem, words
from transforms.kit.stage import DEAD, count, reject
from transforms.kit.llm_stage import AskModel, ModelReply, failed_reply
from transforms.label.rules_backend import RulesBackend

_LOGGER = logging.getLogger(__name__)

#: Dead-letter stage of this transform.
STAGE = "llm"
#: What the chat reader keeps with ``--context segmented``: the model decides from the last few
#: turns whether a question follows on from them (bounded: never the whole conversation).
SEGMENT_CONTEXT = "window:6"
#: Order in which candidate failure reasons win when several are equally common.
_REASON_PRIORITY = ("request_failed", "invalid_reply", "question_contains_sql", "empty_question", "question_too_long")


class QuestionSettings(NamedTuple):
    """What ``WriteQuestions`` needs, resolved from the options."""

    llm: LlmSettings
    per_sql: int = 1
    styles: tuple[str, ...] = ()
    schema_patterns: tuple[str, ...] = ()
    schema_dialect: Optional[str] = None
    database: Optional[str] = None
    database_settings: Mapping[str, Any] = {}
    context: str = "full"


# ---------------------------------------------------------------------------------------------
# Pure functions: filters and the choice of a candidate
# ---------------------------------------------------------------------------------------------

def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity of two texts (lowercased words).

    >>> jaccard("How many tracks?", "how many albums")
    0.5
    """
    left, right = set(words(a)), set(words(b))
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def most_central(candidates: Sequence[str]) -> str:
    """The candidate most similar on average to the others; ties go to the alphabetically first.

    >>> most_central(["How many tracks are there?", "Count the tracks.", "How many tracks exist?"])
    'How many tracks exist?'
    >>> most_central(["B?", "A?"])
    'A?'
    """
    if not candidates:
        raise ValueError("no candidates")
    if len(candidates) == 1:
        return candidates[0]
    scores = []
    for i, text in enumerate(candidates):
        similarity = sum(jaccard(text, other) for j, other in enumerate(candidates) if j != i)
        scores.append((-round(similarity / (len(candidates) - 1), 12), text))
    return min(scores)[1]


def pick_style(record_id: str, styles: Sequence[str]) -> Optional[str]:
    """One of ``styles`` chosen by a hash of the record id (stable across runs), or None."""
    if not styles:
        return None
    digest = int(hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:8], 16)
    return styles[digest % len(styles)]


def failure_reason(reasons: Sequence[str]) -> str:
    """The most common failure among candidates; ties by ``_REASON_PRIORITY``.

    >>> failure_reason(["question_contains_sql", "request_failed", "question_contains_sql"])
    'question_contains_sql'
    """
    counts = collections.Counter(reasons)
    return min(counts, key=lambda r: (-counts[r], _REASON_PRIORITY.index(r) if r in _REASON_PRIORITY else 99, r))


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def _style_line(style: Optional[str]) -> str:
    return f"\n- be written in a {style} style: {STYLES[style]}." if style else ""


def _persona_line(persona: Optional[str]) -> str:
    return f"\n- sound like this person asking: {persona.strip()}" if persona and persona.strip() else ""


def question_task(record: Record, tables: Sequence[table_schema.Table], settings: QuestionSettings) -> LlmTask:
    """The ``per_sql`` sample requests asking for ``record``'s question."""
    prompt = load_prompt("question")
    sql = record.normalized_sql or record.sql
    style = pick_style(record.id, settings.styles)
    values = dict(
        dialect=dialect_name(record.dialect),
        schema=table_schema.render_tables(tables),
        sql=sql,
        style=_style_line(style),
        persona=_persona_line(record.persona),
    )
    inputs = {"sql": sql, "dialect": record.dialect or ""}
    requests = tuple(
        prompt.request(stage="questions", sample=i, inputs=inputs, **values) for i in range(settings.per_sql)
    )
    return LlmTask(requests, ("question", record, style))


def segment_task(record: Record) -> LlmTask:
    """The request asking whether a chat question starts a new topic, and its standalone form."""
    prompt = load_prompt("segment")
    context = "\n".join(f"- {' '.join(str(turn).split())}" for turn in record.context)
    request = prompt.request(stage="segment", inputs={"question": record.question or ""},
                             context=context, question=record.question or "")
    return LlmTask((request,), ("segment", record, None))


def _needs_segmenting(record: Record, settings: QuestionSettings) -> bool:
    return settings.context == "segmented" and bool(record.question) and bool(record.context)


# ---------------------------------------------------------------------------------------------
# DoFns
# ---------------------------------------------------------------------------------------------


class _BuildTasksFn(beam.DoFn):
    """Record → ``LlmTask``; loads DDL once per worker and samples tables once per database."""

    def __init__(self, settings: QuestionSettings):
        self.settings = settings

    def setup(self) -> None:
        self._ddl = load_ddl(self.settings.schema_patterns, self.settings.schema_dialect)
        self._live: dict[tuple[str, str], Optional[table_schema.Table]] = {}
        self._executors = None
        self._databases = None
        if self.settings.database:
            from adapters.db import DatabaseMap
            from transforms.kit.executors import ExecutorSet

            self._databases = DatabaseMap.parse(self.settings.database)
            self._executors = ExecutorSet(dict(self.settings.database_settings, max_connections=1))

    def _live_table(self, url: str, name: str) -> Optional[table_schema.Table]:
        key = (url, table_schema.table_key(name))
        if key not in self._live:
            try:
                self._live[key] = table_schema.introspect_table(self._executors.get(url), name)
            except Exception as error:  # noqa: BLE001 - the schema is context, not a requirement
                _LOGGER.warning("cannot describe table %s: %s", name, type(error).__name__)
                self._live[key] = None
        return self._live[key]

    def _tables(self, record: Record) -> list[table_schema.Table]:
        """The referenced tables: DDL columns and keys, plus live sample rows when a database is given."""
        url = self._databases.url_for(record.db_id) if self._databases is not None else None
        live = (lambda name: self._live_table(url, name)) if url is not None else None
        return table_schema.collect_tables(record.tables, self._ddl, live)

    def process(self, record: Record) -> Iterator:
        try:
            if _needs_segmenting(record, self.settings):
                yield segment_task(record)
            else:
                yield question_task(record, self._tables(record), self.settings)
        except Exception as error:  # noqa: BLE001 - never lose the record
            yield reject(STAGE, "prompt_failed", f"{type(error).__name__}: {str(error)[:300]}", record)

    def teardown(self) -> None:
        if self._executors is not None:
            self._executors.close()


class _ApplyRepliesFn(beam.DoFn):
    """``ModelReply(context, outcomes)`` → the record with its question, or a dead letter."""

    def __init__(self, settings: QuestionSettings):
        self.model_label = f"{settings.llm.backend}:{settings.llm.model_name}"

    def process(self, reply: ModelReply) -> Iterator:
        kind, record, style = reply.context
        outcomes = reply.outcomes
        if kind == "segment":
            yield from self._segment(record, outcomes[0])
            return
        sql = record.normalized_sql or record.sql
        candidates, failures = [], []
        for outcome in outcomes:
            if outcome.error:
                failures.append((outcome.error, outcome.detail))
                continue
            question = clean_question(str(outcome.value.get("question", "")))
            problem = question_problem(question, sql)
            if problem:
                failures.append((problem, f"candidate {question[:300]!r}"))
            else:
                candidates.append(question)
        for reason, _ in failures:
            count(f"{STAGE}.candidate_rejected.{reason}")
        if not candidates:
            reason = failure_reason([r for r, _ in failures])
            detail = next(d for r, d in failures if r == reason)
            yield reject(STAGE, reason, f"0 of {len(outcomes)} candidates usable; {detail}", record)
            return
        count(f"{STAGE}.questions_written")
        extra = dict(record.extra, question_model=self.model_label)
        if style:
            extra["question_style"] = style
        yield record._replace(question=most_central(candidates), question_source="llm", extra=extra)

    def _segment(self, record: Record, outcome: LlmOutcome) -> Iterator:
        if outcome.error:
            yield failed_reply(STAGE, outcome, record, detail_prefix="segmenting: ")
            return
        extra = dict(record.extra)
        if outcome.value.get("changes_topic"):
            count(f"{STAGE}.segment.new_topic")
            extra["segment"] = "new_topic"
            yield record._replace(context=(), extra=extra)
            return
        question = clean_question(str(outcome.value.get("standalone_question", "")))
        problem = question_problem(question, record.normalized_sql or record.sql)
        if problem:
            yield reject(STAGE, problem, f"segmenting: standalone question {question[:300]!r}", record)
            return
        count(f"{STAGE}.segment.rewritten")
        extra.update(segment="rewritten", original_question=record.question or "", question_model=self.model_label)
        yield record._replace(question=question, context=(), extra=extra)


def _route(record: Record, settings: QuestionSettings):
    if not record.question or _needs_segmenting(record, settings):
        return beam.pvalue.TaggedOutput("ask", record)
    return record


class QuestionOutputs(NamedTuple):
    """``records`` (every record, now with a question) and ``dead`` (stage ``llm``)."""

    records: beam.PCollection
    dead: beam.PCollection


class WriteQuestions(beam.PTransform):
    """Records without a question get one written by the model ``settings.llm`` names."""

    def __init__(self, settings: QuestionSettings):
        super().__init__()
        if settings.per_sql < 1:
            raise ValueError("questions per SQL must be at least 1")
        unknown = [s for s in settings.styles if s not in STYLES]
        if unknown:
            raise ValueError(f"unknown question styles: {', '.join(unknown)}")
        self.settings = settings

    def expand(self, records):
        settings = self.settings
        routed = records | "NeedsModel" >> beam.Map(_route, settings).with_outputs("ask", main="keep")
        # The rules writer answers behind the model contract but is no adapter: built here, by class.
        factory = RulesBackend if settings.llm.backend == "rules" else None
        handler = LlmModelHandler(settings.llm, requests_per_task=settings.per_sql, backend_factory=factory)
        # Each record asked counts as llm.questions.records (llm.segment.records): the report's requests per record.
        asked = routed.ask | "CallModel" >> AskModel(_BuildTasksFn(settings), handler, _ApplyRepliesFn(settings),
                                                      count_records=True)
        out = (routed.keep, asked["records"]) | "AllRecords" >> beam.Flatten()
        return QuestionOutputs(out, asked[DEAD])


# ---------------------------------------------------------------------------------------------
# The ``--question_styles`` parser, and the report's usage section
# ---------------------------------------------------------------------------------------------


def parse_styles(value: Optional[str]) -> tuple[str, ...]:
    """``--question_styles``: names separated by commas, or ``all``.

    >>> parse_styles("all")[:2], parse_styles("vague,formal"), parse_styles(None)
    (('formal', 'colloquial'), ('vague', 'formal'), ())
    """
    if not value:
        return ()
    if value.strip() == "all":
        return tuple(STYLES)
    styles = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise ValueError(f"unknown question style(s) {', '.join(unknown)}; expected {', '.join(STYLES)} or all")
    return styles


def llm_usage(result: Any, settings: QuestionSettings) -> Optional[dict[str, Any]]:
    """The report's ``llm`` section from a finished pipeline's metrics (None if unavailable)."""
    from apache_beam.metrics.metric import MetricsFilter

    from adapters.llm.handler import NAMESPACE, usage_report

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        return None
    totals: dict[str, int] = {}
    for counter in counters:
        name = counter.key.metric.name
        if name.startswith("llm."):
            value = counter.committed if counter.committed is not None else counter.attempted
            totals[name] = totals.get(name, 0) + int(value or 0)
    usage = usage_report(totals, settings.llm.price_in, settings.llm.price_out)
    usage.update(backend=settings.llm.backend, model=settings.llm.model_name)
    return with_records(usage, totals)


def with_records(usage: dict[str, Any], counters: Mapping[str, int]) -> dict[str, Any]:
    """Put each stage's ``records`` (those that reached it) and ``requests_per_record`` beside its requests.

    >>> usage = {"stages": {"questions": {"requests": 6}}, "total": {"requests": 6}}
    >>> with_records(usage, {"llm.questions.records": 3})["stages"]["questions"]
    {'requests': 6, 'records': 3, 'requests_per_record': 2.0}
    """
    for name, value in sorted(counters.items()):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "llm" and parts[2] == "records" and value:
            row = usage["stages"].setdefault(parts[1], {})
            row["records"] = int(value)
            row["requests_per_record"] = round(row.get("requests", 0) / value, 3)
    return usage


def format_usage(usage: Mapping[str, Any]) -> str:
    """One line for the terminal: requests, calls, cache hits, tokens and the cost estimate."""
    total = usage["total"]
    return (
        f"sqlpairs: {usage.get('backend')}:{usage.get('model')}: {total['requests']} requests, "
        f"{total['calls']} calls, {total['cache_hits']} cached, {total['retries']} retries, "
        f"{total['failures']} failed, {total['prompt_tokens']} tokens in, {total['completion_tokens']} out, "
        f"~${total['estimated_cost_usd']:.4f}"
    )
