"""SchemaSynthesizer: new question/SQL pairs from the schema, along a curriculum, every SQL executed.

``--synthesize_from_schema N`` asks the model for N pairs per persona × complexity level
× curriculum concept, per database. The curriculum is SQLCoder 2's lesson: left to
itself a model writes what it likes (filters and counts), so the concepts it would skip
— date functions, window functions, CTEs, ratios, NULL handling, string functions — are
each asked for explicitly, at the levels where they make sense (``CURRICULUM``), and
coverage comes out balanced.

Every prompt carries the database's tables with three sample rows each (real values for
filters), the teachings, the persona and one of its styles. Every SQL the model writes is
parsed, checked read-only and executed (``ExecuteWithRepairs``): a failing query goes
back to the model with the database's error, up to ``--max_repairs`` times, then becomes
a dead letter saying what failed last. (@deepagents/text2sql's SchemaSynthesizer only
validates at the end, outside the generator; here the repair loop is part of it.)

Accounting: each request stands for N pairs. Each pair the model writes becomes a record;
a pair it did not write (a failed request, a short reply) becomes a placeholder record
dead-lettered with the reason, so ``created = N × requests`` always, and the report's
per-level accept rate is ``written / created``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam

from adapters.db import DatabaseUnavailable, redact
from adapters.llm.handler import LlmModelHandler, LlmTask
from adapters.llm.prompting import load_prompt
from transforms.core.vocab import DIALECT_NAMES, dialect_name
from transforms.core.record import Execution, Record, content_id, new_record
from transforms.kit import catalog as catalogs
from transforms.generate import teachings as teaching_notes
from transforms.kit.stage import DEAD, count, reject
from transforms.generate.generation import NOTES, GenerationSettings, output_tokens, stable_index
from transforms.sql.guardrails import question_rejection
from transforms.kit.llm_stage import AskModel, ModelReply, failed_reply
from transforms.generate.personas import Persona, personas_for
from transforms.core.vocab import STYLES
from transforms.sql.question_text import clean_question

_LOGGER = logging.getLogger(__name__)
#: Dead-letter stage of synthesis (repair failures included).
STAGE = "synthesize"

#: Complexity levels and what each means in SQL (the prompt says it in these words).
LEVELS: dict[str, str] = {
    "simple": "one table, no joins: a filter, a sort, a count or a simple aggregate",
    "moderate": "2-3 joined tables, GROUP BY / HAVING, or a basic subquery",
    "complex": "3 or more joined tables, CTEs, CASE expressions, date arithmetic, or nested subqueries",
    "highly complex": "window functions (ROW_NUMBER, RANK, LAG/LEAD), running totals, recursive CTEs or set operations",
}

#: SQLCoder 2's curriculum: concept -> (what it means, the levels it is asked at).
CURRICULUM: dict[str, tuple[str, tuple[str, ...]]] = {
    "filtering": ("WHERE conditions combining comparisons with AND / OR", ("simple", "moderate")),
    "aggregation": ("COUNT, SUM, AVG, MIN or MAX, possibly over DISTINCT values", ("simple", "moderate")),
    "ordering and limits": ("ORDER BY with LIMIT for top-N and bottom-N questions", ("simple", "moderate")),
    "grouping": ("GROUP BY with HAVING conditions on aggregates", ("moderate", "complex")),
    "joins": ("joining tables on their foreign keys, including LEFT JOIN for missing matches",
              ("moderate", "complex")),
    "subqueries": ("IN / EXISTS / scalar subqueries, correlated or not", ("moderate", "complex")),
    "date functions": ("extracting parts of dates, date ranges and date arithmetic", ("simple", "moderate", "complex")),
    "string functions": ("LIKE patterns, UPPER/LOWER, SUBSTR, LENGTH, concatenation", ("simple", "moderate")),
    "NULL handling": ("IS NULL / IS NOT NULL, COALESCE, rows with missing values", ("simple", "moderate", "complex")),
    "conditional logic": ("CASE expressions that bucket or relabel values", ("moderate", "complex")),
    "ratios": ("percentages and ratios of aggregates, with a cast to a decimal type",
               ("moderate", "complex", "highly complex")),
    "CTEs": ("WITH common table expressions that name intermediate results", ("complex", "highly complex")),
    "window functions": ("ROW_NUMBER, RANK, LAG/LEAD and running totals over partitions", ("highly complex",)),
    "set operations": ("UNION, INTERSECT or EXCEPT of two queries", ("complex", "highly complex")),
}
#: Most tokens one synthesized pair may take in a reply.
TOKENS_PER_PAIR = 400


def curriculum(levels: Sequence[str] = (), concepts: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The ``(level, concept)`` cells to synthesize, level by level (empty filters: all).

    >>> cells = curriculum()
    >>> len(cells), cells[0], ("simple", "window functions") in cells
    (30, ('simple', 'filtering'), False)
    >>> curriculum(levels=["highly complex"], concepts=["window functions", "joins"])
    [('highly complex', 'window functions')]
    """
    cells = []
    for level in LEVELS:
        if levels and level not in levels:
            continue
        for concept, (_, at) in CURRICULUM.items():
            if level in at and (not concepts or concept in concepts):
                cells.append((level, concept))
    return cells


class Slot(NamedTuple):
    """One synthesis request: which database, persona, level and concept, and its style."""

    key: str
    dialect: str
    persona: Optional[Persona]
    level: str
    concept: str
    style: str
    count: int


def slot_record(slot: Slot, index: int, question: Optional[str] = None, sql: str = "") -> Record:
    """The record of pair ``index`` of a slot: the model's pair, or an empty placeholder (stable id either way)."""
    persona = slot.persona.text if slot.persona else None
    extra = {"level": slot.level, "concept": slot.concept, "question_style": slot.style}
    record = new_record(sql, question, db_id=slot.key or None, source="schema", persona=persona, extra=extra)
    if not sql:  # a placeholder for a pair the model did not write: its id names the slot
        record = record._replace(id=content_id("schema", slot.key, persona, slot.level, slot.concept, slot.style, index))
    return record._replace(dialect=slot.dialect, question_source="llm" if question else None)


def synth_request(slot: Slot, tables: Sequence[Any], teachings: Optional[teaching_notes.Teachings],
                  max_output_tokens: Optional[int] = None):
    """The request asking for ``slot.count`` pairs."""
    prompt = load_prompt("synth")
    persona = f"{slot.persona.role} ({slot.persona.perspective})" if slot.persona and slot.persona.perspective else (
        slot.persona.role if slot.persona else "a user of this database")
    request = prompt.request(
        stage="synthesize",
        count=str(slot.count),
        dialect=DIALECT_NAMES.get(slot.dialect, slot.dialect),
        schema=catalogs.render(tables),
        teachings=teaching_notes.render(teachings, tables),
        level=slot.level,
        level_description=LEVELS[slot.level],
        concept=slot.concept,
        concept_description=CURRICULUM[slot.concept][0],
        persona=persona,
        style=slot.style,
        style_description=STYLES[slot.style],
    )
    wanted = max(512, TOKENS_PER_PAIR * slot.count)
    return request._replace(max_output_tokens=min(wanted, max_output_tokens) if max_output_tokens else wanted)


class _SynthTasksFn(beam.DoFn):
    """Target ``(db key, url)`` → one ``LlmTask`` per persona × curriculum cell."""

    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, target: tuple[str, str], personas: Sequence, teachings: Mapping[str, Any]) -> Iterator:
        key, _ = target
        try:
            catalog = self._bench.catalog(key or None)
        except DatabaseUnavailable as error:
            _LOGGER.warning("synthesis: database %r unavailable: %s", key, redact(str(error)))
            yield beam.pvalue.TaggedOutput(NOTES, "note:synthesize:database_unavailable")
            return
        if not catalog.tables:
            _LOGGER.warning("synthesis: database %r has no tables to synthesize from", key)
            yield beam.pvalue.TaggedOutput(NOTES, "note:synthesize:empty_schema")
            return
        notes = teaching_notes.teachings_for(key, teachings)
        people: list[Optional[Persona]] = list(personas_for(key, personas)) or [None]
        for p_index, persona in enumerate(people):
            styles = persona.styles if persona else tuple(STYLES)
            for c_index, (level, concept) in enumerate(curriculum(self.settings.levels, self.settings.concepts)):
                style = styles[stable_index(key, persona, level, concept) % len(styles)]
                slot = Slot(key, catalog.dialect, persona, level, concept, style, self.settings.synthesize)
                tables = catalogs.focus(catalog, limit=self.settings.max_prompt_tables, seed=p_index * 31 + c_index)
                yield LlmTask((synth_request(slot, tables, notes, self.settings.max_output_tokens),), slot)


class _ApplySynthFn(beam.DoFn):
    """The model's pairs → candidate records; unusable or missing pairs → dead letters."""

    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings
        self.model_label = f"{settings.llm.backend}:{settings.llm.model_name}"

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, reply: ModelReply) -> Iterator:
        slot: Slot = reply.context
        outcome = reply.outcome
        pairs = [] if outcome.error else list(outcome.value.get("pairs") or [])
        if len(pairs) > slot.count:
            yield beam.pvalue.TaggedOutput(NOTES, "note:synthesize:surplus_pairs_ignored")
        names = schema_names_or_none(self._bench, slot.key or None)
        for index in range(slot.count):
            yield from created_notes(slot)
            if outcome.error:
                yield failed_reply(STAGE, outcome, slot_record(slot, index))
                continue
            if index >= len(pairs):
                yield reject(STAGE, "missing_pair", f"the model wrote {len(pairs)} of {slot.count} pairs",
                             slot_record(slot, index))
                continue
            question = clean_question(str(pairs[index].get("question", "")))
            sql = str(pairs[index].get("sql", "")).strip()
            if not sql:
                yield reject(STAGE, "empty_sql", f"question {question[:300]!r} came without SQL",
                             slot_record(slot, index, question or None))
                continue
            record = slot_record(slot, index, question or None, sql)
            record = record._replace(extra=dict(record.extra, synth_model=self.model_label))
            why = question_rejection(question, sql, names)
            if why:
                yield reject(STAGE, why[0], why[1], record)
                continue
            count("synthesize.candidates")
            yield record


def schema_names_or_none(bench: catalogs.Workbench, db_id: Optional[str]) -> Optional[frozenset[str]]:
    """The schema's names for the invented-name guardrail; None (check skipped) if the database is gone."""
    try:
        return catalogs.schema_names(bench.catalog(db_id))
    except (LookupError, DatabaseUnavailable):
        return None


def created_notes(slot: Slot) -> list:
    """One created record of ``slot``: the report's ``added`` and per-level/concept counts."""
    return [beam.pvalue.TaggedOutput(NOTES, note) for note in (
        "added:synthesize", f"gen:level:created:{slot.level}", f"gen:concept:created:{slot.concept}")]


# ---------------------------------------------------------------------------------------------
# The repair loop (shared with the depth evolver)
# ---------------------------------------------------------------------------------------------


def with_sql(record: Record, sql: str) -> Record:
    """``record`` with new SQL and the id its content now hashes to (as ``new_record`` computes it)."""
    rid = content_id(record.source, record.db_id, record.question, sql, list(record.context), record.parent_id,
                     record.evolution, record.persona)
    return record._replace(sql=sql, id=rid, normalized_sql=None, sql_fingerprint=None, template_fingerprint=None,
                           tables=(), execution=None)


def check_sql(executor: Any, sql: str, dialect: str) -> tuple[Optional[tuple[str, str]], Optional[Execution]]:
    """``(problem, execution)``: why ``sql`` is not yet a usable query as ``(kind, detail)``, or
    ``(None, execution)`` when it ran.

    Kinds: ``unparseable``, ``unsafe`` (anything but one read-only query), and the
    execution statuses ``error``, ``timeout``, ``refused``. Raises
    ``DatabaseUnavailable`` (a database that is gone is no reason to ask the model).
    """
    from transforms.kit.executors import run_query
    from transforms.sql.normalize import SqlRejected, normalize_sql

    try:
        normalized = normalize_sql(sql, dialect, dialect)
    except SqlRejected as rejected:
        kind = "unsafe" if rejected.stage == "safety" else "unparseable"
        return (kind, rejected.detail), None
    except Exception as error:  # noqa: BLE001 - a parser bug is this query's problem
        return ("unparseable", f"{type(error).__name__}: {str(error)[:300]}"), None
    execution = run_query(executor, normalized.sql, dialect)
    if execution.status == "ok":
        return None, execution
    return (execution.status, execution.error or execution.status), execution


class _CheckSqlFn(beam.DoFn):
    """Runs each candidate's SQL: ok → main; failed → ``retry`` (or a dead letter in the last round)."""

    def __init__(self, settings: "GenerationSettings", stage: str, attempt: int, last: bool):
        self.settings, self.stage, self.attempt, self.last = settings, stage, attempt, last

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings).setup()

    def process(self, record: Record) -> Iterator:
        try:
            problem, execution = check_sql(self._bench.executor(record.db_id), record.sql, record.dialect)
        except LookupError as error:
            yield reject(self.stage, "no_database", str(error), record)
            return
        except DatabaseUnavailable as error:
            yield reject(self.stage, "database_unavailable", redact(str(error)), record)
            return
        if problem is None:
            count(f"{self.stage}.sql_ok_after_{self.attempt}_repairs")
            if self.attempt:
                record = record._replace(extra=dict(record.extra, repairs=str(self.attempt)))
            yield record._replace(execution=execution)
            return
        kind, detail = problem
        if self.last:
            tries = f"after {self.attempt} repair attempt{'s' if self.attempt != 1 else ''}"
            yield reject(self.stage, f"sql_{kind}", f"{tries}: {detail}; SQL: {record.sql[:500]}", record)
            return
        yield beam.pvalue.TaggedOutput("retry", (record, f"{kind}: {detail}"))


class _RepairTasksFn(beam.DoFn):
    def __init__(self, settings: "GenerationSettings", stage: str):
        self.settings, self.stage = settings, stage

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, element: tuple[Record, str]) -> Iterator:
        record, error = element
        catalog = self._bench.catalog(record.db_id)
        tables = catalogs.focus(catalog, tables_in(record.sql, record.dialect), limit=self.settings.max_prompt_tables)
        request = load_prompt("synth_repair").request(
            stage=f"{self.stage}_repair",
            dialect=dialect_name(record.dialect),
            schema=catalogs.render(tables), question=record.question or "", sql=record.sql, error=error[:1000])
        yield LlmTask((request._replace(max_output_tokens=output_tokens(self.settings, 1024)),), (record, error))


def tables_in(sql: str, dialect: Optional[str]) -> list[str]:
    """Table names a (possibly broken) query mentions, best effort.

    >>> tables_in("SELECT * FROM Album a JOIN Artist USING (ArtistId)", "sqlite")
    ['Album', 'Artist']
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect or None)
    except Exception:  # noqa: BLE001 - a broken query still gets a (generic) schema
        return []
    return list(dict.fromkeys(t.name for t in tree.find_all(exp.Table) if t.name)) if tree is not None else []


class _ApplyRepairFn(beam.DoFn):
    def __init__(self, stage: str):
        self.stage = stage

    def process(self, reply: ModelReply) -> Iterator:
        record, error = reply.context
        outcome = reply.outcome
        if outcome.error:
            yield failed_reply(self.stage, outcome, record, reason_prefix="repair_",
                               detail_suffix=f"; the SQL had failed with {error}")
            return
        sql = str(outcome.value.get("sql", "")).strip()
        count(f"{self.stage}.repairs")
        yield with_sql(record, sql)


class RepairOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection


class ExecuteWithRepairs(beam.PTransform):
    """Candidates → those whose SQL runs, after up to ``max_repairs`` rounds of the model fixing it.

    A Beam graph cannot loop, so the rounds are unrolled: check, repair, check, ...
    ``max_repairs + 1`` checks in all. A candidate that runs comes out with its
    ``execution``; one that still fails after the last check is a dead letter ``sql_<kind>`` (kind: error, timeout, unsafe, unparseable,
    refused) whose detail gives the database's last message and the SQL.
    """

    def __init__(self, settings: "GenerationSettings", stage: str):
        super().__init__()
        self.settings, self.stage = settings, stage

    def expand(self, candidates):
        settings, stage = self.settings, self.stage
        handler = LlmModelHandler(settings.llm)
        ok, dead = [], []
        current = candidates
        for attempt in range(settings.max_repairs + 1):
            last = attempt == settings.max_repairs
            checked = current | f"CheckSql{attempt}" >> beam.ParDo(
                _CheckSqlFn(settings, stage, attempt, last)).with_outputs(DEAD, "retry", main="records")
            ok.append(checked.records)
            dead.append(checked[DEAD])
            if last:
                break
            repaired = checked.retry | f"RepairSql{attempt}" >> AskModel(
                _RepairTasksFn(settings, stage), handler, _ApplyRepairFn(stage))
            dead.append(repaired[DEAD])
            current = repaired["records"]
        records = ok | "Executable" >> beam.Flatten()
        return RepairOutputs(records, dead | "RepairDead" >> beam.Flatten())


# ---------------------------------------------------------------------------------------------
# The transform
# ---------------------------------------------------------------------------------------------


class SynthesisOutputs(NamedTuple):
    """``records`` (executable pairs, to join the inputs before NormalizeSql), ``dead``, ``notes``."""

    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class SynthesizeFromSchema(beam.PTransform):
    """``(targets, personas, teachings)`` → new pairs whose SQL ran, plus dead letters and report notes.

    ``targets`` are ``(db key, url)``; ``personas`` ``(db key, Persona)``; ``teachings``
    ``(db key, Teachings)`` (both side inputs, possibly empty).
    """

    def __init__(self, settings: "GenerationSettings"):
        super().__init__()
        if settings.synthesize < 1:
            raise ValueError("--synthesize_from_schema must be at least 1")
        self.settings = settings

    def expand(self, inputs):
        targets, personas, teachings = inputs
        settings = self.settings
        written = targets | "WritePairs" >> AskModel(
            _SynthTasksFn(settings), settings.llm, _ApplySynthFn(settings), tags=(DEAD, NOTES),
            task_side_inputs={"personas": beam.pvalue.AsList(personas), "teachings": beam.pvalue.AsDict(teachings)})
        ran = written["records"] | "ExecuteWithRepairs" >> ExecuteWithRepairs(settings, STAGE)
        # The pairs join the logged ones before NormalizeSql and are executed again there, like any input.
        fresh = ran.records | "AsInputs" >> beam.Map(lambda record: record._replace(execution=None))
        dead = (written[DEAD], ran.dead) | "SynthDead" >> beam.Flatten()
        return SynthesisOutputs(fresh, dead, written[NOTES])
