"""Round-trip consistency: another model answers the question blind; the pair stays only if the results match.

A generated pair can be wrong in a way no execution check sees: the SQL runs, but
answers a different question than the one written (a paraphrase that dropped a filter, a
depth step whose question asks for more than its SQL returns). ``--consistency`` asks a
model (``--consistency_llm*``: possibly a different, cheaper one) to write SQL for the
question alone — schema, sample rows and teachings, never the pair's SQL — and executes
both read-only. The pair is kept only if the results match as bags of rows (as lists
when the pair's SQL orders its result) up to column order, with
``transforms.kit.equivalence.results_match``.

The verdict is recorded on the record: ``extra['consistency']`` is ``match`` on kept
pairs, ``mismatch`` or ``error`` on dead letters (stage ``consistency``), with the model's
SQL in ``extra['consistency_sql']`` and the model in ``extra['consistency_model']``.
Dead-letter reasons: ``mismatch``, ``model_sql_error`` (the blind SQL failed, was unsafe or
unparseable), ``request_failed`` / ``invalid_reply`` (no usable answer), ``gold_sql_error``,
``database_unavailable``, ``no_database``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam

from adapters.db import DatabaseUnavailable, redact
from adapters.llm.handler import LlmTask
from adapters.llm.prompting import load_prompt
from transforms.core.vocab import dialect_name
from transforms.core.record import Record
from transforms.kit import catalog as catalogs
from transforms.generate import teachings as teaching_notes
from transforms.sql import trees
from transforms.kit.stage import DEAD, count, reject
from transforms.kit.equivalence import has_top_level_order_by, results_match
from transforms.generate.generation import GenerationSettings, output_tokens
from transforms.kit.llm_stage import AskModel, ModelReply, failed_reply


#: Dead-letter stage of the round-trip check.
STAGE = "consistency"


class Verdict(NamedTuple):
    """``match`` / ``mismatch`` / ``error``, the dead-letter reason when not a match, and a detail."""

    verdict: str
    reason: Optional[str] = None
    detail: str = ""


def judge(executor: Any, gold_sql: str, model_sql: str, dialect: str) -> Verdict:
    """Run both queries (read-only, capped) and compare their rows. Raises ``DatabaseUnavailable``.

    The model's SQL is parsed and refused unless it is one read-only query, before it
    goes anywhere near the database.
    """
    from transforms.sql.normalize import SqlRejected, normalize_sql
    from transforms.sql.safety import refusal_reason

    try:
        blind = normalize_sql(model_sql, dialect, dialect).sql
    except SqlRejected as rejected:
        return Verdict("error", "model_sql_error", f"{rejected.reason}: {rejected.detail[:300]}")
    except Exception as error:  # noqa: BLE001 - a parser bug is this query's problem
        return Verdict("error", "model_sql_error", f"unparseable: {type(error).__name__}: {str(error)[:300]}")
    try:
        gold_tree = trees.tree_for(gold_sql, dialect)
        if refusal_reason([gold_tree]):
            return Verdict("error", "gold_sql_error", "the pair's SQL is not a read-only query")
        _, gold_rows = executor.fetch_rows(gold_sql)
    except DatabaseUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - the pair's own SQL failing is a verdict
        return Verdict("error", "gold_sql_error", executor.describe_error(error, gold_sql)[:500])
    try:
        _, blind_rows = executor.fetch_rows(blind)
    except DatabaseUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - the model's SQL failing is a verdict
        return Verdict("error", "model_sql_error", executor.describe_error(error, blind)[:500])
    if results_match(gold_rows, blind_rows, order_matters=has_top_level_order_by(gold_tree)):
        return Verdict("match")
    return Verdict("mismatch", "mismatch", f"the pair's SQL returned {len(gold_rows)} rows, the blind SQL "
                                           f"{len(blind_rows)} rows that differ")


class _ConsistencyTasksFn(beam.DoFn):
    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, record: Record, teachings: Mapping) -> Iterator:
        catalog, dead = self._bench.pair_catalog(record, STAGE, "a pair without a question cannot be checked")
        if dead is not None:
            yield dead
            return
        # The pair's own tables lead the focus of a large schema; a small one is shown whole.
        tables = catalogs.focus(catalog, record.tables, limit=self.settings.max_prompt_tables)
        notes = teaching_notes.teachings_for(catalogs.db_key(record.db_id), teachings)
        request = load_prompt("consistency").request(
            stage="consistency", dialect=dialect_name(record.dialect),
            schema=catalogs.render(tables), teachings=teaching_notes.render(notes, tables), question=record.question)
        yield LlmTask((request._replace(max_output_tokens=output_tokens(self.settings, 1024), temperature=0.0),), record)


class _JudgeFn(beam.DoFn):
    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings
        llm = settings.consistency_llm or settings.llm
        self.model_label = f"{llm.backend}:{llm.model_name}"

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings).setup()

    def process(self, reply: ModelReply) -> Iterator:
        record: Record = reply.context
        outcome = reply.outcome
        extra = dict(record.extra, consistency_model=self.model_label)
        if outcome.error:
            extra["consistency"] = "error"
            yield failed_reply(STAGE, outcome, record._replace(extra=extra))
            return
        blind_sql = " ".join(str(outcome.value.get("sql", "")).split())
        extra["consistency_sql"] = blind_sql
        try:
            verdict = judge(self._bench.executor(record.db_id), record.normalized_sql or record.sql, blind_sql,
                            record.dialect)
        except LookupError as error:
            verdict = Verdict("error", "no_database", str(error))
        except DatabaseUnavailable as error:
            verdict = Verdict("error", "database_unavailable", redact(str(error)))
        extra["consistency"] = verdict.verdict
        count(f"consistency.{verdict.verdict}")
        record = record._replace(extra=extra)
        if verdict.verdict != "match":
            yield reject(STAGE, verdict.reason or verdict.verdict, f"{verdict.detail}; blind SQL: {blind_sql[:500]}",
                         record)
            return
        yield record


class ConsistencyOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection


class RoundTripConsistency(beam.PTransform):
    """``(pairs, teachings)`` → the pairs whose question, answered blind by a model, gives the same rows."""

    def __init__(self, settings: "GenerationSettings"):
        super().__init__()
        self.settings = settings

    def expand(self, inputs):
        records, teachings = inputs
        settings = self.settings
        judged = records | "WriteBlindSql" >> AskModel(
            _ConsistencyTasksFn(settings), settings.consistency_llm or settings.llm, _JudgeFn(settings),
            task_side_inputs={"teachings": beam.pvalue.AsDict(teachings)})
        return ConsistencyOutputs(judged["records"], judged[DEAD])


def verdicts(records: Sequence[Record]) -> dict[str, int]:
    """How many records carry each verdict (for tests and summaries)."""
    found: dict[str, int] = {}
    for record in records:
        verdict = (record.extra or {}).get("consistency", "none")
        found[verdict] = found.get(verdict, 0) + 1
    return found
