"""Evol-Instruct on validated pairs: harder pairs in depth, more phrasings in breadth.

**DepthEvolver** (``--depth k``, ``--depth_techniques``): for every validated pair, k
requests, each applying one technique (spread over the list from the pair's id, so a
re-run applies the same ones). The model writes a harder question *and* its SQL, seeing
the tables the pair reads and their foreign-key neighbours with sample rows; the new SQL
must execute (the repair loop of ``transforms.generate.synthesize``), must differ from the
parent's, and the question must pass the guardrails. @deepagents/text2sql's DepthEvolver
writes the new SQL without a schema and never executes it — both are done here.

**BreadthEvolver** (``--breadth k``): for every validated pair (and every depth-evolved
one), k paraphrases in k different styles of OmniSQL's nine, with the SQL unchanged.
Guardrails: a paraphrase may not add or drop a condition or lose specificity — values the
original question spells out must still be there — and may not repeat the original.
Originals are kept; duplicates among phrasings are merged later
(``transforms.select.near_dup``), and the round-trip check (``--consistency``) catches a
paraphrase that changed what is asked.

Every new record carries its lineage: ``parent_id``, ``evolution`` (the technique or the
style), the parent's ``persona``; ``source`` is ``evolved``. Like synthesis, a pair the
model did not write becomes a placeholder dead letter, so ``created = k × parents``.
"""

from __future__ import annotations

from typing import Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam

from adapters.llm.handler import LlmModelHandler, LlmTask
from adapters.llm.prompting import load_prompt
from transforms.core.vocab import dialect_name
from transforms.core.record import Record, content_id, new_record
from transforms.kit import catalog as catalogs
from transforms.generate import teachings as teaching_notes
from transforms.sql import trees
from transforms.kit.stage import DEAD, count, reject
from transforms.generate.generation import NOTES, GenerationSettings, output_tokens, stable_index
from transforms.sql.guardrails import literal_values, lost_values, normalized_text, question_rejection
from transforms.kit.llm_stage import AskModel, ModelReply, failed_reply
from transforms.core.vocab import STYLES
from transforms.sql.question_text import clean_question
from transforms.generate.synthesize import ExecuteWithRepairs, schema_names_or_none, tables_in

#: Dead-letter stage of evolution (repair failures included).
STAGE = "evolve"

#: In-depth techniques: @deepagents/text2sql's five, plus window functions and CTEs.
DEPTH_TECHNIQUES: dict[str, str] = {
    "add-aggregation": "ask for a summary of the result instead of the rows: a count, sum, average, minimum or "
                       "maximum, possibly per group",
    "add-filter": "narrow the question with one more condition on a column, using a real value from the sample rows",
    "add-join": "bring in a related table through a foreign key and use one of its columns in the answer or in a "
                "condition",
    "add-reasoning": "require a multi-step computation, such as comparing against an average or taking the "
                     "difference or ratio of two aggregates",
    "hypothetical": "ask a what-if question the data can answer by computation, such as the total if every price "
                    "rose by 10%",
    "add-window": "rank, number or compare rows within groups with a window function (RANK, ROW_NUMBER, LAG/LEAD, "
                  "a running total)",
    "add-cte": "split the answer into named steps with a WITH clause, e.g. compute per-group totals first, then "
               "filter or rank them",
}


def parse_techniques(value: Optional[str]) -> tuple[str, ...]:
    """``--depth_techniques``: names separated by commas, or ``all`` (the default).

    >>> parse_techniques(None)[:2], parse_techniques("add-cte, add-filter")
    (('add-aggregation', 'add-filter'), ('add-cte', 'add-filter'))
    """
    if not value or value.strip() == "all":
        return tuple(DEPTH_TECHNIQUES)
    techniques = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    unknown = [t for t in techniques if t not in DEPTH_TECHNIQUES]
    if unknown or not techniques:
        raise ValueError(f"unknown technique(s) {', '.join(unknown) or '(none)'}; expected "
                         f"{', '.join(DEPTH_TECHNIQUES)} or all")
    return techniques


def depth_techniques_for(record_id: str, techniques: Sequence[str], k: int) -> list[str]:
    """The k techniques applied to one pair: consecutive in the list from an offset the id picks.

    >>> depth_techniques_for("x", ("a", "b", "c"), 2) in (["a", "b"], ["b", "c"], ["c", "a"])
    True
    """
    start = stable_index("depth", record_id) % len(techniques)
    return [techniques[(start + i) % len(techniques)] for i in range(k)]


def breadth_styles_for(record_id: str, k: int) -> list[str]:
    """The k styles of one pair's paraphrases: consecutive among the nine, from an offset the id picks.

    >>> len(set(breadth_styles_for("x", 3))), all(s in STYLES for s in breadth_styles_for("x", 12))
    (3, True)
    """
    names = list(STYLES)
    start = stable_index("breadth", record_id) % len(names)
    return [names[(start + i) % len(names)] for i in range(k)]


def evolvable(record: Record) -> bool:
    """Only pairs that have a question and whose SQL ran are evolved."""
    return bool(record.question) and record.execution is not None and record.execution.status == "ok"


def child_record(parent: Record, evolution: str, index: int, question: Optional[str] = None, sql: str = "",
                 extra: Optional[Mapping[str, str]] = None) -> Record:
    """An evolved record of ``parent`` (or, without SQL, the placeholder of one the model did not write)."""
    record = new_record(sql, question, db_id=parent.db_id, source="evolved", parent_id=parent.id,
                        evolution=evolution, persona=parent.persona, extra=extra)
    if not sql:
        record = record._replace(id=content_id("evolved", parent.id, evolution, index))
    return record._replace(dialect=parent.dialect, question_source="llm" if question else None)


def _created(evolution: str) -> list:
    return [beam.pvalue.TaggedOutput(NOTES, "added:evolve"),
            beam.pvalue.TaggedOutput(NOTES, f"gen:evolution:created:{evolution}")]


class _EvolveFnBase(beam.DoFn):
    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings
        self.model_label = f"{settings.llm.backend}:{settings.llm.model_name}"

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def _prompt_context(self, record: Record, teachings: Mapping) -> dict[str, str]:
        catalog = self._bench.catalog(record.db_id)
        tables = catalogs.focus(catalog, record.tables or tables_in(record.sql, record.dialect),
                                limit=self.settings.max_prompt_tables)
        notes = teaching_notes.teachings_for(catalogs.db_key(record.db_id), teachings)
        return {"dialect": dialect_name(record.dialect),
                "schema": catalogs.render(tables), "teachings": teaching_notes.render(notes, tables)}


# ---------------------------------------------------------------------------------------------
# Depth
# ---------------------------------------------------------------------------------------------


class _DepthTasksFn(_EvolveFnBase):
    def process(self, record: Record, teachings: Mapping) -> Iterator:
        if not evolvable(record):
            count("evolve.depth.not_evolvable")
            return
        try:
            context = self._prompt_context(record, teachings)
        except Exception:  # noqa: BLE001 - the children become dead letters below
            context = None
        techniques = depth_techniques_for(record.id, self.settings.depth_techniques, self.settings.depth)
        if context is None:
            for index, technique in enumerate(techniques):
                yield from _created(technique)
                yield reject(STAGE, "schema_unavailable", "the database could not be described for the prompt",
                             child_record(record, technique, index))
            return
        prompt = load_prompt("evolve_depth")
        requests = tuple(
            prompt.request(stage="depth", sample=index, question=record.question, sql=record.normalized_sql or record.sql,
                           technique=technique, technique_description=DEPTH_TECHNIQUES[technique], **context)
            ._replace(max_output_tokens=output_tokens(self.settings, 1024))
            for index, technique in enumerate(techniques)
        )
        yield LlmTask(requests, (record, tuple(techniques)))


class _ApplyDepthFn(_EvolveFnBase):
    def process(self, reply: ModelReply) -> Iterator:
        parent, techniques = reply.context
        names = schema_names_or_none(self._bench, parent.db_id)
        parent_sql = " ".join((parent.normalized_sql or parent.sql).split()).lower()
        for index, (technique, outcome) in enumerate(zip(techniques, reply.outcomes)):
            yield from _created(technique)
            if outcome.error:
                yield failed_reply(STAGE, outcome, child_record(parent, technique, index))
                continue
            question = clean_question(str(outcome.value.get("question", "")))
            sql = str(outcome.value.get("sql", "")).strip()
            record = child_record(parent, technique, index, question or None, sql,
                                  extra={"evolve_model": self.model_label})
            why = question_rejection(question, sql, names)
            if why:
                yield reject(STAGE, why[0], why[1], record)
                continue
            if " ".join(sql.split()).lower() == parent_sql or normalized_text(question) == normalized_text(parent.question):
                yield reject(STAGE, "not_evolved", f"{technique}: the model returned the original "
                             f"{'SQL' if ' '.join(sql.split()).lower() == parent_sql else 'question'}", record)
                continue
            count("evolve.depth.candidates")
            yield record


class DepthEvolver(beam.PTransform):
    """Validated pairs → harder pairs whose SQL ran (after repairs), plus dead letters and notes."""

    def __init__(self, settings: "GenerationSettings"):
        super().__init__()
        if settings.depth < 1 or not settings.depth_techniques:
            raise ValueError("--depth must be at least 1, with at least one technique")
        self.settings = settings

    def expand(self, inputs):
        records, teachings = inputs
        settings = self.settings
        handler = LlmModelHandler(settings.llm, requests_per_task=settings.depth)
        deeper = records | "EvolveInDepth" >> AskModel(
            _DepthTasksFn(settings), handler, _ApplyDepthFn(settings), tags=(DEAD, NOTES),
            task_side_inputs={"teachings": beam.pvalue.AsDict(teachings)})
        ran = deeper["records"] | "ExecuteWithRepairs" >> ExecuteWithRepairs(settings, STAGE)
        dead = (deeper[DEAD], ran.dead) | "DepthDead" >> beam.Flatten()
        return EvolveOutputs(ran.records, dead, deeper[NOTES])


# ---------------------------------------------------------------------------------------------
# Breadth
# ---------------------------------------------------------------------------------------------


def _style_list(styles: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. {style}: {STYLES[style]}" for i, style in enumerate(styles))


class _BreadthTasksFn(_EvolveFnBase):
    def process(self, record: Record, teachings: Mapping) -> Iterator:
        if not evolvable(record):
            count("evolve.breadth.not_evolvable")
            return
        styles = breadth_styles_for(record.id, self.settings.breadth)
        try:
            context = self._prompt_context(record, teachings)
        except Exception:  # noqa: BLE001 - the children become dead letters below
            for index, style in enumerate(styles):
                yield from _created(style)
                yield reject(STAGE, "schema_unavailable", "the database could not be described for the prompt",
                             child_record(record, style, index))
            return
        context.pop("teachings")
        request = load_prompt("evolve_breadth").request(
            stage="breadth", count=str(len(styles)), question=record.question,
            sql=record.normalized_sql or record.sql, styles=_style_list(styles), **context)
        yield LlmTask((request._replace(max_output_tokens=output_tokens(self.settings, max(256, 120 * len(styles)))),), (record, tuple(styles)))


class _ApplyBreadthFn(_EvolveFnBase):
    def process(self, reply: ModelReply) -> Iterator:
        parent, styles = reply.context
        outcome = reply.outcome
        questions = [] if outcome.error else list(outcome.value.get("questions") or [])
        sql = parent.normalized_sql or parent.sql
        names = schema_names_or_none(self._bench, parent.db_id)
        try:
            values = literal_values(trees.tree_for(sql, parent.dialect))
        except Exception:  # noqa: BLE001 - no values known: the specificity check has nothing to compare
            values = []
        for index, style in enumerate(styles):
            yield from _created(style)
            if outcome.error:
                yield failed_reply(STAGE, outcome, child_record(parent, style, index))
                continue
            if index >= len(questions):
                yield reject(STAGE, "missing_paraphrase", f"the model wrote {len(questions)} of {len(styles)} "
                             "paraphrases", child_record(parent, style, index))
                continue
            question = clean_question(str(questions[index]))
            record = child_record(parent, style, index, question or None, sql,
                                  extra={"question_style": style, "evolve_model": self.model_label})
            why = question_rejection(question, sql, names)
            if why:
                yield reject(STAGE, why[0], why[1], record)
                continue
            if normalized_text(question) == normalized_text(parent.question):
                yield reject(STAGE, "same_as_original", f"paraphrase {question[:300]!r} repeats the question", record)
                continue
            lost = lost_values(parent.question, question, values)
            if lost:
                yield reject(STAGE, "lost_value", f"paraphrase {question[:300]!r} drops {', '.join(lost[:5])}, which "
                             f"the original {parent.question[:200]!r} names", record)
                continue
            count("evolve.breadth.candidates")
            yield record


class BreadthEvolver(beam.PTransform):
    """Validated pairs → paraphrased pairs (same SQL), plus dead letters and notes."""

    def __init__(self, settings: "GenerationSettings"):
        super().__init__()
        if settings.breadth < 1:
            raise ValueError("--breadth must be at least 1")
        self.settings = settings

    def expand(self, inputs):
        records, teachings = inputs
        settings = self.settings
        wider = records | "EvolveInBreadth" >> AskModel(
            _BreadthTasksFn(settings), settings.llm, _ApplyBreadthFn(settings), tags=(DEAD, NOTES),
            task_side_inputs={"teachings": beam.pvalue.AsDict(teachings)})
        return EvolveOutputs(wider["records"], wider[DEAD], wider[NOTES])


class EvolveOutputs(NamedTuple):
    """``records`` (new pairs, to go through normalize → classify → execute → filter), ``dead``, ``notes``."""

    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class EvolvePairs(beam.PTransform):
    """``(validated pairs, teachings)`` → depth-evolved pairs, then paraphrases of the originals and of those."""

    def __init__(self, settings: "GenerationSettings"):
        super().__init__()
        self.settings = settings

    def expand(self, inputs):
        records, teachings = inputs
        settings = self.settings
        outputs, dead, notes = [], [], []
        parents = records
        if settings.depth:
            deep = (records, teachings) | "Depth" >> DepthEvolver(settings)
            outputs.append(deep.records)
            dead.append(deep.dead)
            notes.append(deep.notes)
            parents = (records, deep.records) | "WithDeeper" >> beam.Flatten()
        if settings.breadth:
            wide = (parents, teachings) | "Breadth" >> BreadthEvolver(settings)
            outputs.append(wide.records)
            dead.append(wide.dead)
            notes.append(wide.notes)
        pipeline = records.pipeline
        flat = lambda items, label: (items or [pipeline | f"No{label}" >> beam.Create([])]) | label >> beam.Flatten(
            pipeline=pipeline)
        return EvolveOutputs(flat(outputs, "Evolved"), flat(dead, "EvolveDead"), flat(notes, "EvolveNotes"))
