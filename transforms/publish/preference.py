"""Preference pairs from a weak model's mistakes, verified by execution (SENSE, ACL 2024).

For every final pair (question, gold SQL) that executed, a small model is asked ``samples``
times for the SQL (``weak_sql`` prompt; each request has its own ``sample`` index, so cache
keys and sampling seeds differ). Each answer is normalized (``normalize_sql``) and run
read-only against the pair's database, and labelled against the gold result:

* ``correct`` — the same rows as the gold (``results_match``; row order counts only when the
  gold has a top-level ORDER BY);
* ``wrong_result`` — it ran and returned something else, or the gold's rows from no table at all
  (``SELECT 2`` when the answer happens to be 2: a hard-coded answer, right only by coincidence);
* ``exec_error`` / ``timeout`` — the database refused to run it, or stopped it;
* ``unparseable`` — not one read-only query sqlglot can parse (unsafe statements included);
* ``no_reply`` — the model gave no SQL (a failed request, a reply off the schema, an empty string);
* ``unlabelled`` — the gold itself could not be re-run, so nothing could be compared.

``build_pairs`` — a pure function — turns one question's labelled samples into
``{id, prompt, chosen, rejected, meta}`` rows with SENSE's knobs (``PairKnobs``):

* positives: the ``correct`` samples (plus the gold SQL first, with ``keep_gold``);
* negatives: the samples whose label ``neg_filter`` admits — ``all`` (every incorrect
  label), ``exec_error`` (did not run: exec_error, timeout, unparseable) or ``wrong_result``;
* ``dedup`` drops later positives and later negatives with the same normalized SQL;
* ``neg_limit`` keeps the first N negatives by sample index (0: all of them);
* each kept negative is one pair; its chosen answer cycles through the positives in order;
* a question yields pairs only when it has at least one usable negative and one positive;
* each row's ``meta.exec_difficulty`` is the level its pair is written with
  (``pair_exec_difficulty``), so ``--stage_by exec_difficulty`` stages the ``dpo`` sets too.

SENSE's released data used ``dedup, neg_filter=all, keep_gold=False, neg_limit=1``
("grouped-any-limit1"); those are the defaults. Chosen and rejected are both
whitespace-normalized SQL text, so a pair differs in meaning, never in layout.

Samples are records this stage creates: they are counted in the training report by label,
outside the main accounting (records read = written + dead letters + merged).

The samples also grade the pairs (``transforms.publish.exec_difficulty``): the stage gives back
every pair it was applied to, once, each whose samples were compared with the gold carrying
``extra["weak_solve_rate"]`` (``correct`` ÷ every sample but the ``unlabelled`` ones, as text)
and ``extra["weak_exec_difficulty"]`` (its level), and — unless it already has them, from
``--cot`` — the same values as ``extra["solve_rate"]`` and ``extra["exec_difficulty"]``. A pair
that was not sampled, or whose gold failed, is given back unchanged. The graph runs this stage
before it writes the pairs, so the pairs, their exports and ``--stage_by exec_difficulty`` see
these fields; each pair meets its own samples' counts in a join by record id (pairs sharing
an id, the same pair read twice, share the counts of all their samples).
"""

from __future__ import annotations

import hashlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.utils.shared import Shared

from adapters.db import DatabaseMap, DatabaseUnavailable, redact
from adapters.llm import LlmSettings
from adapters.llm.handler import LlmModelHandler, LlmOutcome, LlmTask
from adapters.llm.prompting import load_prompt
from transforms.core.record import Record, content_id
from transforms.sql import trees
from transforms.kit.stage import count
from transforms.kit.equivalence import has_top_level_order_by, results_match
from transforms.core.vocab import dialect_name
from transforms.publish.exports import SchemaLookup, SchemaSource, normalize_whitespace, training_prompt
from transforms.kit.llm_stage import AskModel, ModelReply
from transforms.publish.conversations import WithFullContext
from transforms.publish.exec_difficulty import exec_difficulty, solve_rate
from transforms.sql.normalize import SqlRejected, normalize_sql

_LOGGER = logging.getLogger(__name__)

#: Sample labels, in the order the reports list them.
LABELS = ("correct", "wrong_result", "exec_error", "timeout", "unparseable", "no_reply", "unlabelled")
#: ``--dpo_neg_filter`` → the labels a rejected answer may have.
NEGATIVE_LABELS: Mapping[str, tuple[str, ...]] = {
    "all": ("wrong_result", "exec_error", "timeout", "unparseable"),
    "exec_error": ("exec_error", "timeout", "unparseable"),
    "wrong_result": ("wrong_result",),
}
NEG_FILTERS = tuple(NEGATIVE_LABELS)
#: Labels that say nothing of the model (nothing was compared): left out of a solve rate's count.
NOT_COUNTED = ("unlabelled",)
#: How a question ended, in report order.
OUTCOMES = ("with_pairs", "no_usable_negative", "no_positive", "gold_failed", "database_unavailable")
#: Metrics stage of the weak model's requests (``llm.weak_sql.*``).
STAGE = "weak_sql"
#: A SQL answer needs far fewer tokens than a question writer's default allowance.
WEAK_MAX_OUTPUT_TOKENS = 384
#: Characters of an error kept in a sample's detail.
DETAIL_CHARS = 300
NOTES = "notes"
#: Terminal colour codes sqlglot puts around the offending token of a parse error.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PairKnobs(NamedTuple):
    """SENSE's pair-construction knobs (defaults: its released ``grouped-any-limit1``)."""

    neg_filter: str = "all"
    neg_limit: int = 1  # negatives (= pairs) per question; 0: no limit
    keep_gold: bool = False
    dedup: bool = True


class Sample(NamedTuple):
    """One weak-model answer: its SQL as written, its normalized text and its label."""

    index: int
    sql: str
    normalized: str
    label: Optional[str] = None  # None until executed
    detail: str = ""
    tables: tuple[str, ...] = ()  # what the normalized SQL reads


class QuestionSamples(NamedTuple):
    """A gold pair with its labelled samples: the unit ``build_pairs`` groups by."""

    record_id: str
    db_id: Optional[str]
    question: str
    difficulty: Optional[str]
    concepts: tuple[str, ...]
    prompt: str
    gold_sql: str
    samples: tuple[Sample, ...]
    failure: Optional[str] = None  # gold_failed | database_unavailable: samples are unlabelled
    exec_difficulty: Optional[str] = None  # the pair's own level, when it has one (from --cot)


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def strip_fence(text: str) -> str:
    """The SQL inside a Markdown code fence, if the model wrapped it in one.

    >>> strip_fence("```sql\\nSELECT 1\\n```"), strip_fence(" SELECT 2; ")
    ('SELECT 1', 'SELECT 2;')
    """
    text = text.strip()
    if text.startswith("```"):
        text = text[3:]
        first_line, _, rest = text.partition("\n")
        text = rest if first_line.strip().isalpha() or not first_line.strip() else text
        text = text.rsplit("```", 1)[0] if "```" in text else text
    return text.strip()


def parse_sample(index: int, outcome: LlmOutcome, dialect: str) -> Sample:
    """A model answer as a ``Sample``: labelled ``no_reply``/``unparseable`` now, or ready to execute.

    >>> parse_sample(0, LlmOutcome(value={"sql": "select  name from t"}), "sqlite")
    Sample(index=0, sql='select  name from t', normalized='SELECT name FROM t', label=None, detail='', tables=('t',))
    >>> parse_sample(1, LlmOutcome(value={"sql": "DELETE FROM t"}), "sqlite").label
    'unparseable'
    >>> parse_sample(2, LlmOutcome(error="request_failed", detail="HTTP 500"), "sqlite").label
    'no_reply'
    """
    if outcome.error:
        return Sample(index, "", "", "no_reply", f"{outcome.error}: {outcome.detail}"[:DETAIL_CHARS])
    value = outcome.value if isinstance(outcome.value, Mapping) else {}
    sql = strip_fence(str(value.get("sql") or ""))
    if not sql:
        return Sample(index, "", "", "no_reply", "empty_sql")
    try:
        normalized = normalize_sql(sql, dialect, dialect)
    except SqlRejected as rejected:
        detail = _ANSI.sub("", f"{rejected.stage}:{rejected.reason}: {rejected.detail}")[:DETAIL_CHARS]
        return Sample(index, sql, normalize_whitespace(sql), "unparseable", detail)
    except Exception as error:  # noqa: BLE001 - a parser bug labels this sample, not the run
        return Sample(index, sql, normalize_whitespace(sql), "unparseable", f"{type(error).__name__}: {error}"[:DETAIL_CHARS])
    return Sample(index, sql, normalize_whitespace(normalized.sql), tables=tuple(normalized.tables))


class QueryRun(NamedTuple):
    """What running one query gave: its rows, or why there are none."""

    rows: Optional[list] = None
    failure: Optional[str] = None  # exec_error | timeout | database_unavailable
    detail: str = ""
    columns: int = 0  # how many columns the rows have (a result hash needs it)


def label_run(run: QueryRun, gold_rows: Sequence[Sequence[Any]], order_matters: bool,
              hard_coded: bool = False) -> tuple[str, str]:
    """``(label, detail)`` of a sample whose query gave ``run``, against the gold rows.

    ``hard_coded``: the sample reads no table while the gold does, so equal rows are a
    coincidence (the model wrote the answer down), not a correct query.

    >>> label_run(QueryRun(rows=[(2,), (1,)]), [(1,), (2,)], order_matters=False)
    ('correct', '')
    >>> label_run(QueryRun(rows=[(2,), (1,)]), [(1,), (2,)], order_matters=True)[0]
    'wrong_result'
    >>> label_run(QueryRun(failure="timeout", detail="canceled"), [(1,)], False)
    ('timeout', 'canceled')
    >>> label_run(QueryRun(rows=[(2,)]), [(2,)], False, hard_coded=True)[0]
    'wrong_result'
    """
    if run.failure:
        return run.failure, run.detail
    if results_match(gold_rows, run.rows or [], order_matters=order_matters):
        if hard_coded:
            return "wrong_result", "the gold's rows, but from no table: a hard-coded answer"
        return "correct", ""
    return "wrong_result", f"{len(run.rows or [])} rows, gold {len(gold_rows)}"


class _Candidate(NamedTuple):
    sql: str
    source: str  # gold | sample
    index: Optional[int]


def _unique(items: Sequence[Any], key) -> list:
    seen, kept = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept


def candidates(question: QuestionSamples, knobs: PairKnobs) -> tuple[list[_Candidate], list[Sample]]:
    """The positives (chosen answers) and usable negatives (rejected answers) of a question."""
    if knobs.neg_filter not in NEGATIVE_LABELS:
        raise ValueError(f"unknown neg_filter {knobs.neg_filter!r}; expected one of {', '.join(NEG_FILTERS)}")
    ordered = sorted(question.samples, key=lambda s: s.index)
    positives = [_Candidate(normalize_whitespace(question.gold_sql), "gold", None)] if knobs.keep_gold else []
    positives += [_Candidate(s.normalized, "sample", s.index) for s in ordered if s.label == "correct"]
    admitted = NEGATIVE_LABELS[knobs.neg_filter]
    negatives = [s for s in ordered if s.label in admitted and s.normalized.strip()]
    if knobs.dedup:
        positives = _unique(positives, lambda c: c.sql)
        negatives = _unique(negatives, lambda s: s.normalized)
    if knobs.neg_limit > 0:
        negatives = negatives[: knobs.neg_limit]
    return positives, negatives


def question_outcome(question: QuestionSamples, knobs: PairKnobs) -> str:
    """How a question ended (one of ``OUTCOMES``)."""
    if question.failure:
        return question.failure
    positives, negatives = candidates(question, knobs)
    if not negatives:
        return "no_usable_negative"
    if not positives:
        return "no_positive"
    return "with_pairs"


def build_pairs(question: QuestionSamples, knobs: PairKnobs = PairKnobs(), weak_model: str = "") -> list[dict]:
    """The DPO rows of one question (see the module docstring for the rules).

    >>> q = QuestionSamples("r1", "db", "How many?", "easy", (), "PROMPT", "SELECT COUNT(*) FROM t", (
    ...     Sample(0, "x", "SELECT COUNT(*) FROM t", "correct"), Sample(1, "y", "SELECT 1", "wrong_result"),
    ...     Sample(2, "z", "SELECT COUNT(*) FROM u", "exec_error")))
    >>> [(r["chosen"], r["rejected"], r["meta"]["neg_kind"]) for r in build_pairs(q, PairKnobs(neg_limit=0))]
    [('SELECT COUNT(*) FROM t', 'SELECT 1', 'wrong_result'), ('SELECT COUNT(*) FROM t', 'SELECT COUNT(*) FROM u', 'exec_error')]
    >>> len(build_pairs(q, PairKnobs(neg_filter="wrong_result"))), len(build_pairs(q._replace(samples=q.samples[1:])))
    (1, 0)
    >>> build_pairs(q)[0]["meta"]["exec_difficulty"]
    'hard'
    """
    if question.failure:
        return []
    positives, negatives = candidates(question, knobs)
    if not positives or not negatives:
        return []
    level = pair_exec_difficulty(question)
    rows = []
    for position, negative in enumerate(negatives):
        chosen = positives[position % len(positives)]
        meta = {
            "record_id": question.record_id,
            "db_id": question.db_id,
            "difficulty": question.difficulty,
            "exec_difficulty": level,
            "concepts": list(question.concepts),
            "question": question.question,
            "neg_kind": negative.label,
            "sample_index": negative.index,
            "rejected_error": negative.detail if negative.label != "wrong_result" else "",
            "chosen_source": chosen.source,
            "chosen_sample_index": chosen.index,
            "weak_model": weak_model,
        }
        rows.append({
            "id": content_id("dpo", question.record_id, chosen.sql, negative.normalized, negative.index),
            "prompt": question.prompt,
            "chosen": chosen.sql,
            "rejected": negative.normalized,
            "meta": meta,
        })
    return rows


def solve_counts(samples: Sequence[Sample]) -> tuple[int, int]:
    """``(solved, counted)``: samples labelled ``correct``, and every sample but the ``NOT_COUNTED`` ones.

    >>> solve_counts([Sample(0, "a", "a", "correct"), Sample(1, "", "", "no_reply"), Sample(2, "b", "b", "unlabelled")])
    (1, 2)
    """
    counted = [s for s in samples if s.label not in NOT_COUNTED]
    return sum(s.label == "correct" for s in counted), len(counted)


def pair_exec_difficulty(question: QuestionSamples) -> Optional[str]:
    """The ``exec_difficulty`` the pair of ``question`` is graded with (as ``with_weak_solve_rate``
    grades it from these samples): its own (``--cot``'s) when it has one, else its samples' level;
    None when no sample counted.

    >>> samples = (Sample(0, "a", "a", "correct"), Sample(1, "b", "b", "wrong_result"))
    >>> q = QuestionSamples("r1", "db", "Q?", "easy", (), "P", "a", samples)
    >>> pair_exec_difficulty(q), pair_exec_difficulty(q._replace(exec_difficulty="easy"))
    ('hard', 'easy')
    >>> pair_exec_difficulty(q._replace(samples=(Sample(0, "a", "a", "unlabelled"),))) is None
    True
    """
    if question.exec_difficulty:
        return question.exec_difficulty
    solved, counted = solve_counts(question.samples)
    return exec_difficulty(solved, counted) if counted else None


def with_weak_solve_rate(record: Record, solved: int, counted: int) -> Record:
    """``record`` graded by the weak model's samples (``solved`` of ``counted``): ``weak_solve_rate``
    and ``weak_exec_difficulty`` always, ``solve_rate`` and ``exec_difficulty`` unless it has them.
    Unchanged when no sample counted.

    >>> from transforms.core.record import new_record
    >>> dict(with_weak_solve_rate(new_record("SELECT 1"), 3, 4).extra)
    {'weak_solve_rate': '0.75', 'weak_exec_difficulty': 'medium', 'solve_rate': '0.75', 'exec_difficulty': 'medium'}
    >>> voted = new_record("SELECT 1", extra={"solve_rate": "1.0", "exec_difficulty": "easy"})
    >>> dict(with_weak_solve_rate(voted, 1, 4).extra)
    {'solve_rate': '1.0', 'exec_difficulty': 'easy', 'weak_solve_rate': '0.25', 'weak_exec_difficulty': 'hard'}
    >>> with_weak_solve_rate(voted, 0, 0) is voted
    True
    """
    if counted <= 0:
        return record
    rate, level = str(solve_rate(solved, counted)), exec_difficulty(solved, counted)
    extra = dict(record.extra, weak_solve_rate=rate, weak_exec_difficulty=level)
    if "solve_rate" not in record.extra and "exec_difficulty" not in record.extra:  # --cot's stay
        extra.update(solve_rate=rate, exec_difficulty=level)
    return record._replace(extra=extra)


def samples_row(question: QuestionSamples) -> dict:
    """One question and every labelled sample, for ``PREFIX-dpo-samples`` (re-pairing without re-sampling)."""
    return {
        "id": question.record_id,
        "db_id": question.db_id,
        "question": question.question,
        "gold_sql": question.gold_sql,
        "difficulty": question.difficulty,
        "failure": question.failure,
        "samples": [{"index": s.index, "sql": s.sql, "normalized_sql": s.normalized, "label": s.label,
                     "detail": s.detail} for s in sorted(question.samples, key=lambda s: s.index)],
    }


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


class PreferenceSettings(NamedTuple):
    """What ``SamplePreferencePairs`` needs, resolved from ``--preference`` and its options."""

    llm: LlmSettings
    database: str
    samples: int = 4
    knobs: PairKnobs = PairKnobs()
    database_settings: Mapping[str, Any] = {}  # timeout_s, max_rows, password_env
    max_connections: int = 4
    schema: SchemaSource = SchemaSource()

    @property
    def weak_model(self) -> str:
        return f"{self.llm.backend}:{self.llm.model_name}"


# ---------------------------------------------------------------------------------------------
# DoFns
# ---------------------------------------------------------------------------------------------


def eligibility(record: Record) -> Optional[str]:
    """Why a pair cannot be sampled for (a ``skipped_*`` reason), or None when it can."""
    if not record.question:
        return "skipped_no_question"
    if not record.normalized_sql:
        return "skipped_not_normalized"
    if record.execution is None or record.execution.status == "skipped":
        return "skipped_not_executed"
    if record.execution.status != "ok":
        return "skipped_execution_failed"
    return None


class _RouteFn(beam.DoFn):
    def process(self, record: Record) -> Iterator:
        reason = eligibility(record)
        if reason:
            yield beam.pvalue.TaggedOutput(NOTES, f"preference:question:{reason}")
        else:
            yield record


class _BuildTasksFn(beam.DoFn):
    """Pair → ``LlmTask`` of ``samples`` requests, with the training prompt carried along."""

    def __init__(self, settings: PreferenceSettings):
        self.settings = settings

    def setup(self) -> None:
        self._lookup = SchemaLookup(self.settings.schema)

    def process(self, record: Record) -> Iterator:
        try:
            prompt = load_prompt("weak_sql")
            schema = self._lookup.schema_text(record)
            values = dict(dialect=dialect_name(record.dialect), schema=schema, question=record.question or "")
            inputs = {"question": record.question or "", "dialect": record.dialect or ""}
            requests = tuple(prompt.request(stage=STAGE, sample=i, inputs=inputs, **values)
                             for i in range(self.settings.samples))
            context = (record, training_prompt(record.question or "", schema, record.dialect, record.context,
                                               record.evidence))
        except Exception as error:  # noqa: BLE001 - counted; the pair itself is already written
            _LOGGER.warning("cannot build the weak-model prompt for %s: %s", record.id, type(error).__name__)
            yield beam.pvalue.TaggedOutput(NOTES, "preference:question:prompt_failed")
            return
        yield LlmTask(requests, context)

    def teardown(self) -> None:
        lookup = getattr(self, "_lookup", None)
        if lookup is not None:
            lookup.close()


_SHARED_EXECUTORS = Shared()


def fetch_query(executor: Any, sql: str) -> QueryRun:
    """Run one model-written query read-only: its rows, or why there are none (never raises for
    the query's own failure; the weak samples' labels and the --cot votes both read this)."""
    try:
        columns, rows = executor.fetch_rows(sql)
    except DatabaseUnavailable as error:
        return QueryRun(failure="database_unavailable", detail=redact(str(error))[:DETAIL_CHARS])
    except Exception as error:  # noqa: BLE001 - a failing query is a label, not a crash
        timeout = False
        try:
            timeout = bool(executor._is_timeout(error))  # the Executor contract's own test
        except Exception:  # noqa: BLE001
            pass
        detail = executor.describe_error(error, sql)[:DETAIL_CHARS]  # class and code; quoted data masked
        return QueryRun(failure="timeout" if timeout else "exec_error", detail=detail)
    return QueryRun(rows=list(rows), columns=len(columns))


class _LabelSamplesFn(beam.DoFn):
    """``ModelReply(context, outcomes)`` → ``QuestionSamples`` with every sample labelled.

    The gold and each distinct sample query run once, concurrently, on executors shared by
    the process (``apache_beam.utils.shared``), read-only and time-limited by the database.
    """

    def __init__(self, database: str, settings: Mapping[str, Any], max_connections: int):
        self.database = database
        self.settings = dict(settings)
        self.max_connections = max_connections

    def setup(self) -> None:
        from transforms.kit.executors import ExecutorSet

        settings = dict(self.settings, max_connections=self.max_connections)
        tag = "preference:" + hashlib.sha256(repr((self.database, sorted(settings.items()))).encode()).hexdigest()
        self._executors = _SHARED_EXECUTORS.acquire(lambda: ExecutorSet(settings), tag=tag)
        self._databases = DatabaseMap.parse(self.database)
        self._pool = ThreadPoolExecutor(self.max_connections, thread_name_prefix="sqlpairs-preference")

    def process(self, reply: ModelReply) -> Iterator[QuestionSamples]:
        record, prompt = reply.context
        dialect = record.dialect or "postgres"
        samples = [parse_sample(i, outcome, dialect) for i, outcome in enumerate(reply.outcomes)]
        gold = record.normalized_sql
        labelled, failure = self._label(record, gold, dialect, samples)
        for sample in labelled:
            count(f"preference.label.{sample.label}")
        yield QuestionSamples(record.id, record.db_id, record.question or "", record.difficulty,
                              tuple(record.concepts), prompt, gold, tuple(labelled), failure,
                              record.extra.get("exec_difficulty"))

    def _label(self, record: Record, gold: str, dialect: str, samples: list[Sample]) -> tuple[list[Sample], Optional[str]]:
        url = self._databases.url_for(record.db_id)
        if url is None:
            return self._unlabelled(samples, "no --database entry serves this db_id"), "database_unavailable"
        try:
            executor = self._executors.get(url)
        except DatabaseUnavailable as error:
            return self._unlabelled(samples, redact(str(error))), "database_unavailable"
        queries = [gold] + sorted({s.normalized for s in samples if s.label is None} - {gold})
        futures = {sql: self._pool.submit(fetch_query, executor, sql) for sql in queries}
        runs = {sql: future.result() for sql, future in futures.items()}
        gold_run = runs[gold]
        if gold_run.failure == "database_unavailable":
            return self._unlabelled(samples, gold_run.detail), "database_unavailable"
        if gold_run.failure:
            return self._unlabelled(samples, f"the gold SQL failed this time: {gold_run.detail}"), "gold_failed"
        order_matters = has_top_level_order_by(trees.tree_for(gold, dialect))
        labelled = []
        for sample in samples:
            if sample.label is None:
                run = runs[sample.normalized] if sample.normalized != gold else gold_run
                hard_coded = not sample.tables and bool(record.tables)
                label, detail = label_run(run, gold_run.rows or [], order_matters, hard_coded)
                if run.failure == "database_unavailable":
                    label = "unlabelled"
                sample = sample._replace(label=label, detail=detail)
            labelled.append(sample)
        return labelled, None

    @staticmethod
    def _unlabelled(samples: list[Sample], detail: str) -> list[Sample]:
        return [s if s.label is not None else s._replace(label="unlabelled", detail=detail[:DETAIL_CHARS])
                for s in samples]

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)


class _PairsFn(beam.DoFn):
    """``QuestionSamples`` → DPO rows, with the report's notes (labels, outcome, pair kinds)."""

    def __init__(self, knobs: PairKnobs, weak_model: str):
        self.knobs, self.weak_model = knobs, weak_model

    def process(self, question: QuestionSamples) -> Iterator:
        for sample in question.samples:
            yield beam.pvalue.TaggedOutput(NOTES, f"preference:label:{sample.label}")
        yield beam.pvalue.TaggedOutput(NOTES, f"preference:question:{question_outcome(question, self.knobs)}")
        for row in build_pairs(question, self.knobs, self.weak_model):
            yield beam.pvalue.TaggedOutput(NOTES, f"preference:pair:{row['meta']['neg_kind']}")
            yield beam.pvalue.TaggedOutput(NOTES, f"preference:chosen:{row['meta']['chosen_source']}")
            yield row


def _rate_pairs(joined: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[Record]:
    """One record id's pairs, each graded by the counts of every sample of that id."""
    _, groups = joined
    counts = list(groups["counts"])
    solved, counted = sum(c[0] for c in counts), sum(c[1] for c in counts)
    for record in groups["pairs"]:
        yield with_weak_solve_rate(record, solved, counted)


def _level_note(record: Record) -> Iterator[str]:
    """``preference:difficulty_vs_exec:<Spider level>/<weak level>`` of a graded pair (the report's heatmap)."""
    level = record.extra.get("weak_exec_difficulty")
    if level:
        yield f"preference:difficulty_vs_exec:{record.difficulty}/{level}"


class PreferenceOutputs(NamedTuple):
    """``pairs`` (DPO rows), ``samples`` (``QuestionSamples``), ``notes`` (report keys) and ``records``
    (the pairs the stage was applied to, each once, graded by its samples: ``with_weak_solve_rate``)."""

    pairs: beam.PCollection
    samples: beam.PCollection
    notes: beam.PCollection
    records: beam.PCollection


class SamplePreferencePairs(beam.PTransform):
    """Final pairs → DPO rows built from a weak model's execution-checked samples, and the pairs graded.

    Applied to the pairs, or to ``{"pairs": pairs, "conversations": conversations}`` with
    ``--context full``: each chat pair's prompt then shows the earlier turns joined back from its
    conversation (``WithFullContext``), while ``records`` are the pairs as given. The counts meet
    their pairs in a join by record id (``CoGroupByKey``): a worker holds one id's pairs and counts
    at a time, never a table of every pair.
    """

    def __init__(self, settings: PreferenceSettings):
        super().__init__()
        if settings.samples < 1:
            raise ValueError("samples per question must be at least 1")
        if settings.knobs.neg_filter not in NEGATIVE_LABELS:
            raise ValueError(f"unknown neg_filter {settings.knobs.neg_filter!r}")
        self.settings = settings

    def expand(self, inputs):
        s = self.settings
        records, conversations = (inputs["pairs"], inputs.get("conversations")) if isinstance(inputs, dict) else (
            inputs, None)
        prompted = records
        if conversations is not None:
            prompted = {"pairs": records, "conversations": conversations} | "WithFullContext" >> WithFullContext()
        routed = prompted | "Eligible" >> beam.ParDo(_RouteFn()).with_outputs(NOTES, main="eligible")
        handler = LlmModelHandler(s.llm, requests_per_task=s.samples)
        asked = routed.eligible | "CallWeakModel" >> AskModel(
            _BuildTasksFn(s), handler, _LabelSamplesFn(s.database, s.database_settings, s.max_connections),
            main="samples", tags=(NOTES,))
        labelled = asked["samples"]
        built = labelled | "BuildPairs" >> beam.ParDo(_PairsFn(s.knobs, s.weak_model)).with_outputs(NOTES, main="pairs")
        keyed = {"pairs": records | "PairsById" >> beam.Map(lambda r: (r.id, r)),
                 "counts": labelled | "CountsById" >> beam.Map(lambda q: (q.record_id, solve_counts(q.samples)))}
        rated = (keyed
                 | "JoinPairsAndCounts" >> beam.CoGroupByKey()
                 | "WithSolveRate" >> beam.FlatMap(_rate_pairs).with_output_types(Record))
        levels = rated | "LevelNotes" >> beam.FlatMap(_level_note)
        notes = (routed[NOTES], asked[NOTES], built[NOTES], levels) | "AllPreferenceNotes" >> beam.Flatten()
        return PreferenceOutputs(built.pairs, labelled, notes, rated)


# ---------------------------------------------------------------------------------------------
# The weak model's share of the report's usage section
# ---------------------------------------------------------------------------------------------


def weak_llm_usage(result: Any, settings: PreferenceSettings,
                   usage: Optional[Mapping[str, Any]] = None) -> Optional[dict[str, Any]]:
    """The report's ``llm`` section with the weak model's stage, from a finished pipeline's metrics.

    ``usage`` is the question writer's section, if any. None when there is neither that nor
    metrics (some runners report none).
    """
    from apache_beam.metrics.metric import MetricsFilter

    from adapters.llm.handler import NAMESPACE

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        return dict(usage) if usage is not None else None
    totals: dict[str, int] = {}
    for counter in counters:
        name = counter.key.metric.name
        if name.startswith(f"llm.{STAGE}."):
            value = counter.committed if counter.committed is not None else counter.attempted
            totals[name] = totals.get(name, 0) + int(value or 0)
    return merge_weak_usage(usage, totals, settings.llm)


def merge_weak_usage(usage: Optional[Mapping[str, Any]], weak_counters: Mapping[str, int],
                     weak: LlmSettings) -> dict[str, Any]:
    """``usage`` with its ``weak_sql`` stage replaced by one priced at the weak model's prices.

    The question writer's section counts every ``llm.*`` counter at its own prices, the weak
    model's included; here that stage is recomputed from ``weak_counters`` and the total summed
    again. Without ``usage`` the section holds the weak model alone.

    >>> merged = merge_weak_usage(None, {"llm.weak_sql.requests": 4, "llm.weak_sql.prompt_tokens": 1_000_000},
    ...                           LlmSettings(backend="openai", model="small", price_in=0.1))
    >>> merged["total"]["requests"], merged["total"]["estimated_cost_usd"], merged["weak_model"]["model"]
    (4, 0.1, 'small')
    """
    from adapters.llm.handler import USAGE_FIELDS, usage_report

    priced = usage_report(weak_counters, weak.price_in, weak.price_out)
    merged = dict(usage) if usage is not None else {"backend": weak.backend, "model": weak.model_name,
                                                    "price_per_million_tokens": priced["price_per_million_tokens"]}
    stages = dict(merged.get("stages") or {})
    stages.pop(STAGE, None)
    stages.update(priced["stages"])
    fields = [f for f in USAGE_FIELDS if f != "throttled_ms"] + ["throttled_s", "estimated_cost_usd"]
    merged["stages"] = dict(sorted(stages.items()))
    merged["total"] = {f: round(sum(row.get(f, 0) for row in stages.values()), 6) for f in fields}
    merged["weak_model"] = {"backend": weak.backend, "model": weak.model_name,
                            "price_per_million_tokens": priced["price_per_million_tokens"]}
    return merged
