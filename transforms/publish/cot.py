"""Execution-voted chain of thought (``--cot N``): N step-by-step solutions per pair, kept by majority vote.

OmniSQL's SynSQL-2.5M gives every sample a chain of thought written by a model that never
saw the gold SQL: several solutions are sampled, the final SQL of each is executed, and the
majority result decides. Here, for every final pair (after dedup, merging and caps: the
pairs that will be written), a model (``--cot_llm*``, default the main model) writes N
solutions at ``--cot_temperature`` from the pair's question and the schema prompt of the
training exports (the DDL of the tables, as ``transforms.publish.exports.SchemaLookup`` renders it),
never the pair's SQL. Each reply is ``{"reasoning", "sql"}`` (``cot`` prompt and schema).

Each solution's SQL goes through the guard every SQL goes through (``normalize_sql``: one
read-only statement, parsed) and runs read-only against the pair's database; the gold SQL
runs too. A solution that ran casts one vote for its result: the gold's result when its rows
equal the gold's (``results_match``: bags of rows, lists when the gold orders, up to column
order; rows that come from no table while the gold reads tables never count as the gold's),
else its own ``result_hash``. Then:

* fewer than ``--cot_min_valid`` solutions ran → dead letter ``too_few_valid``;
* the gold's result has strictly more votes than every other result → kept (a tie is no
  majority);
* else → dead letter ``majority_disagrees``, its detail the vote table: a sign the
  question is ambiguous or says something else than its SQL.

A kept pair carries ``reasoning`` (the shortest trace whose SQL gave the gold's result,
ties to the lowest sample index), ``extra["cot_sql"]`` (that trace's own SQL, normalized),
``extra["cot"]`` (JSON text: ``n``, ``valid``, ``solved``, ``gold`` — the gold result's hash
prefix — ``votes`` per result hash prefix, ``invalid`` per reason), ``extra["cot_model"]``,
and the execution difficulty of ``transforms.publish.exec_difficulty`` from the N samples:
``extra["solve_rate"]`` and ``extra["exec_difficulty"]``. A dead letter's record carries
the same ``extra`` keys (no ``reasoning``). Other reasons: ``no_question``, ``gold_failed``
(the pair's SQL failed this time), ``no_database``, ``database_unavailable``.

With ``--format dpo-reasoning`` (ExCoT's reasoning-level preference pairs), a kept pair also
carries ``extra["cot_rejected"]`` (JSON text: ``chosen``, the kept trace's sample index, and
``traces``, up to ``--cot_dpo_limit`` of the same vote's traces whose SQL gave another result
or failed, ``rejected_traces``); ``transforms.publish.reasoning_dpo`` renders them as DPO rows. They
come from the N solutions already paid for: no extra request.

Cost: N requests per final pair (``llm.cot.requests`` = N x pairs that reach the stage), sent
as N independent requests with the sample index as seed (cached per sample by
``--llm_cache``); see ``COT_MAX_OUTPUT_TOKENS``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.utils.shared import Shared

from adapters.db import DatabaseMap, DatabaseUnavailable, redact
from adapters.db.results import result_hash
from adapters.llm import LlmSettings
from adapters.llm.handler import LlmModelHandler, LlmOutcome, LlmTask
from adapters.llm.prompting import load_prompt
from transforms.sql import trees
from transforms.kit.stage import DEAD, count, reject
from transforms.core.record import Record
from transforms.core.vocab import dialect_name
from transforms.kit.equivalence import has_top_level_order_by, results_match
from transforms.publish.exec_difficulty import exec_difficulty, solve_rate
from transforms.publish.exports import SchemaLookup, SchemaSource
from transforms.kit.llm_stage import AskModel, ModelReply
from transforms.publish.preference import QueryRun, fetch_query, parse_sample

#: Dead-letter stage, metrics stage (``llm.cot.*``) and report notes (``note:cot:*``) of this step.
STAGE = "cot"
NOTES = "notes"
#: Reply budget of one solution: reasoning takes more room than a bare query.
COT_MAX_OUTPUT_TOKENS = 1024
#: Characters of a result hash shown in the vote table.
HASH_CHARS = 12
#: Characters of an error kept per solution.
DETAIL_CHARS = 300
#: How a solution ended: it voted (``ran``), or why it could not.
INVALID = ("no_reply", "unparseable", "exec_error", "timeout")
#: Which traces may be a reasoning-level DPO pair's rejected answer, in the order they are chosen:
#: one that ran and gave another result (the hardest negative: plausible enough to run), then
#: one whose SQL failed, then one whose SQL did not pass the guard.
REJECTED_KINDS = ("wrong_result", "exec_error", "timeout", "unparseable")


@dataclass(frozen=True)
class CotSettings:
    """What ``ExecutionVotedCot`` needs, resolved from ``--cot`` and its options (``pipeline.settings.cot``)."""

    llm: LlmSettings
    database: str
    samples: int = 8
    min_valid: int = 3
    database_settings: Mapping[str, Any] = field(default_factory=dict)  # timeout_s, max_rows, password_env
    max_connections: int = 4
    schema: SchemaSource = SchemaSource()
    dpo_limit: int = 0  # --format dpo-reasoning: rejected traces kept per pair (--cot_dpo_limit), else 0

    @property
    def model_label(self) -> str:
        return f"{self.llm.backend}:{self.llm.model_name}"


class Solution(NamedTuple):
    """One sampled solution: its trace, its SQL, and the result it voted for (None: it did not run)."""

    index: int
    reasoning: str
    sql: str  # normalized where it parsed
    result: Optional[str] = None  # vote key: the gold's hash, or its own result hash
    invalid: Optional[str] = None  # one of INVALID when it did not vote
    detail: str = ""


class Vote(NamedTuple):
    """The outcome of one pair's vote: ``reason`` None when kept, with ``chosen`` the trace to keep."""

    reason: Optional[str]
    votes: Mapping[str, int]
    valid: int
    solved: int
    chosen: Optional[Solution] = None


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def decide(solutions: Sequence[Solution], gold: str, min_valid: int) -> Vote:
    """The vote over ``solutions`` against the gold's result key ``gold`` (see the module docstring).

    >>> s = [Solution(0, "long steps", "q0", "G"), Solution(1, "short", "q1", "G"), Solution(2, "x", "q2", "B"),
    ...      Solution(3, "", "", invalid="no_reply")]
    >>> v = decide(s, "G", 3); (v.reason, dict(v.votes), v.valid, v.solved, v.chosen.index)
    (None, {'G': 2, 'B': 1}, 3, 2, 1)
    >>> decide(s, "G", 4).reason, decide(s[1:], "G", 2).reason
    ('too_few_valid', 'majority_disagrees')
    """
    valid = [s for s in solutions if s.result is not None]
    votes = Counter(s.result for s in valid)
    solved = votes.get(gold, 0)
    ordered = dict(sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])))
    if len(valid) < min_valid:
        return Vote("too_few_valid", ordered, len(valid), solved)
    if solved == 0 or any(n >= solved for key, n in votes.items() if key != gold):
        return Vote("majority_disagrees", ordered, len(valid), solved)
    chosen = min((s for s in valid if s.result == gold), key=lambda s: (len(s.reasoning), s.index))
    return Vote(None, ordered, len(valid), solved, chosen)


def vote_table(vote: Vote, gold: str, solutions: Sequence[Solution]) -> dict[str, Any]:
    """``extra["cot"]`` as a dict: sample count, valid and solved counts, votes per result, invalid per reason.

    >>> table = vote_table(Vote(None, {"G" * 20: 2, "B" * 20: 1}, 3, 2), "G" * 20,
    ...                    [Solution(0, "", "", invalid="exec_error")] + [Solution(i, "", "", "G") for i in (1, 2)])
    >>> table["gold"], table["votes"], table["invalid"], table["n"]
    ('GGGGGGGGGGGG', {'GGGGGGGGGGGG': 2, 'BBBBBBBBBBBB': 1}, {'exec_error': 1}, 3)
    """
    invalid = Counter(s.invalid for s in solutions if s.invalid)
    return {
        "n": len(solutions),
        "valid": vote.valid,
        "solved": vote.solved,
        "gold": gold[:HASH_CHARS],
        "votes": {key[:HASH_CHARS]: n for key, n in vote.votes.items()},
        "invalid": {reason: invalid[reason] for reason in INVALID if invalid[reason]},
    }


def disagreement_detail(table: Mapping[str, Any]) -> str:
    """The dead letter's detail of ``majority_disagrees`` / ``too_few_valid``: the vote table in words.

    >>> disagreement_detail({"n": 4, "valid": 3, "solved": 1, "gold": "aa", "votes": {"bb": 2, "aa": 1},
    ...                      "invalid": {"exec_error": 1}})
    'gold result aa got 1 of 3 valid votes (4 solutions); votes: bb=2, aa=1; invalid: exec_error=1'
    """
    votes = ", ".join(f"{key}={n}" for key, n in table["votes"].items()) or "none"
    invalid = ", ".join(f"{key}={n}" for key, n in table["invalid"].items()) or "none"
    return (f"gold result {table['gold']} got {table['solved']} of {table['valid']} valid votes "
            f"({table['n']} solutions); votes: {votes}; invalid: {invalid}")


def rejected_traces(solutions: Sequence[Solution], gold: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` traces whose SQL disagreed with or failed against the gold, for ``dpo-reasoning``.

    Chosen by ``REJECTED_KINDS``' order, then sample index; a trace without reasoning or SQL
    (nothing to render) and a repeat of an earlier trace's text are left out.

    >>> s = [Solution(0, "bad parse", "DROP x", invalid="unparseable", detail="guard"),
    ...      Solution(1, "right", "q1", "G"), Solution(2, "wrong", "q2", "B"), Solution(3, "", "", invalid="no_reply"),
    ...      Solution(4, "failed", "q4", invalid="exec_error", detail="no such column"),
    ...      Solution(5, "wrong", "q2", "B")]
    >>> [(t["index"], t["kind"]) for t in rejected_traces(s, "G", 3)]
    [(2, 'wrong_result'), (4, 'exec_error'), (0, 'unparseable')]
    >>> rejected_traces(s, "G", 1)[0]
    {'index': 2, 'kind': 'wrong_result', 'reasoning': 'wrong', 'sql': 'q2', 'detail': ''}
    """
    def kind(solution: Solution) -> Optional[str]:
        if solution.result is not None:
            return "wrong_result" if solution.result != gold else None
        return solution.invalid if solution.invalid in REJECTED_KINDS else None

    ranked = sorted(((REJECTED_KINDS.index(k), s.index, k, s) for s in solutions
                     if (k := kind(s)) is not None and s.reasoning and s.sql), key=lambda item: item[:2])
    traces: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for _, _, label, solution in ranked:
        if len(traces) >= limit:
            break
        if (solution.reasoning, solution.sql) in seen:
            continue
        seen.add((solution.reasoning, solution.sql))
        traces.append({"index": solution.index, "kind": label, "reasoning": solution.reasoning,
                       "sql": solution.sql, "detail": solution.detail[:DETAIL_CHARS]})
    return traces


def parse_solution(index: int, outcome: LlmOutcome, dialect: str) -> tuple[Solution, tuple[str, ...]]:
    """A reply as a ``Solution`` (not yet run, or ``invalid``) and the tables its SQL reads.

    >>> parse_solution(0, LlmOutcome(value={"reasoning": " Count rows. ", "sql": "select count(*) from t"}),
    ...                "sqlite")[0]
    Solution(index=0, reasoning='Count rows.', sql='SELECT COUNT(*) FROM t', result=None, invalid=None, detail='')
    >>> parse_solution(1, LlmOutcome(value={"reasoning": "r", "sql": "DROP TABLE t"}), "sqlite")[0].invalid
    'unparseable'
    """
    value = outcome.value if isinstance(outcome.value, Mapping) else {}
    reasoning = str(value.get("reasoning") or "").strip()
    sample = parse_sample(index, outcome, dialect)  # the guard: one read-only query, parsed
    if sample.label is not None:
        return Solution(index, reasoning, sample.normalized, invalid=sample.label, detail=sample.detail), ()
    if not reasoning:
        return Solution(index, "", sample.normalized, invalid="no_reply", detail="empty reasoning"), ()
    return Solution(index, reasoning, sample.normalized), tuple(sample.tables)


# ---------------------------------------------------------------------------------------------
# DoFns
# ---------------------------------------------------------------------------------------------


class _CotTasksFn(beam.DoFn):
    """Pair → ``LlmTask`` of N requests for the question with the schema prompt (never the SQL)."""

    def __init__(self, settings: CotSettings):
        self.settings = settings

    def setup(self) -> None:
        self._lookup = SchemaLookup(self.settings.schema)

    def process(self, record: Record) -> Iterator:
        if not record.question:
            yield reject(STAGE, "no_question", "a pair without a question has nothing to reason about", record)
            return
        prompt = load_prompt("cot")
        evidence = f"\nEvidence: {record.evidence.strip()}" if record.evidence else ""  # --evidence, as exported
        values = dict(dialect=dialect_name(record.dialect), schema=self._lookup.schema_text(record),
                      question=record.question, evidence=evidence)
        inputs = {"question": record.question, "dialect": record.dialect or ""}
        requests = tuple(prompt.request(stage=STAGE, sample=i, inputs=inputs, **values)._replace(
            temperature=self.settings.llm.temperature, max_output_tokens=COT_MAX_OUTPUT_TOKENS)
            for i in range(self.settings.samples))
        yield LlmTask(requests, record)

    def teardown(self) -> None:
        lookup = getattr(self, "_lookup", None)
        if lookup is not None:
            lookup.close()


_SHARED_EXECUTORS = Shared()


class _VoteFn(beam.DoFn):
    """``ModelReply(record, outcomes)`` → the kept pair with its reasoning, or a dead letter.

    The gold and each distinct solution query run once, concurrently, on executors shared by
    the process (``apache_beam.utils.shared``), read-only and time-limited by the database.
    """

    def __init__(self, settings: CotSettings):
        self.settings = settings

    def setup(self) -> None:
        from transforms.kit.executors import ExecutorSet

        s = self.settings
        executor_settings = dict(s.database_settings, max_connections=s.max_connections)
        tag = "cot:" + hashlib.sha256(repr((s.database, sorted(executor_settings.items()))).encode()).hexdigest()
        self._executors = _SHARED_EXECUTORS.acquire(lambda: ExecutorSet(executor_settings), tag=tag)
        self._databases = DatabaseMap.parse(s.database)
        self._pool = ThreadPoolExecutor(s.max_connections, thread_name_prefix="sqlpairs-cot")

    def process(self, reply: ModelReply) -> Iterator:
        record: Record = reply.context
        dialect = record.dialect or "postgres"
        parsed = [parse_solution(i, outcome, dialect) for i, outcome in enumerate(reply.outcomes)]
        extra = dict(record.extra, cot_model=self.settings.model_label)
        url = self._databases.url_for(record.db_id)
        if url is None:
            yield reject(STAGE, "no_database", f"no --database entry serves db_id {record.db_id!r}",
                         record._replace(extra=extra))
            return
        try:
            executor = self._executors.get(url)
        except DatabaseUnavailable as error:
            yield reject(STAGE, "database_unavailable", redact(str(error)), record._replace(extra=extra))
            return
        gold_sql = record.normalized_sql or record.sql
        queries = [gold_sql] + sorted({s.sql for s, _ in parsed if s.invalid is None} - {gold_sql})
        futures = {sql: self._pool.submit(fetch_query, executor, sql) for sql in queries}
        runs = {sql: future.result() for sql, future in futures.items()}
        gold = runs[gold_sql]
        if gold.failure:
            reason = "database_unavailable" if gold.failure == "database_unavailable" else "gold_failed"
            yield reject(STAGE, reason, f"the pair's SQL failed this time: {gold.detail}", record._replace(extra=extra))
            return
        order_matters = has_top_level_order_by(trees.tree_for(gold_sql, dialect))
        gold_key = result_hash(gold.columns, gold.rows or [], ordered=order_matters)
        solutions = [self._voted(s, tables, runs, gold, gold_key, order_matters, bool(record.tables))
                     for s, tables in parsed]
        vote = decide(solutions, gold_key, self.settings.min_valid)
        table = vote_table(vote, gold_key, solutions)
        level = exec_difficulty(vote.solved, len(solutions))
        extra.update(cot=json.dumps(table, sort_keys=True), solve_rate=str(solve_rate(vote.solved, len(solutions))),
                     exec_difficulty=level)
        for solution in solutions:
            yield beam.pvalue.TaggedOutput(NOTES, f"note:cot:solutions:{solution.invalid or 'ran'}")
        yield beam.pvalue.TaggedOutput(NOTES, f"note:cot:difficulty_vs_exec:{record.difficulty}/{level}")
        if vote.reason is not None:
            yield reject(STAGE, vote.reason, disagreement_detail(table), record._replace(extra=extra))
            return
        extra["cot_sql"] = vote.chosen.sql
        if self.settings.dpo_limit:  # --format dpo-reasoning: the traces its rows reject, beside the chosen one
            traces = rejected_traces(solutions, gold_key, self.settings.dpo_limit)
            extra["cot_rejected"] = json.dumps({"chosen": vote.chosen.index, "traces": traces}, sort_keys=True)
            for trace in traces:
                yield beam.pvalue.TaggedOutput(NOTES, f"note:cot:dpo_rejected:{trace['kind']}")
        count("cot.kept")
        yield record._replace(reasoning=vote.chosen.reasoning, extra=extra)

    @staticmethod
    def _voted(solution: Solution, tables: tuple[str, ...], runs: Mapping[str, QueryRun], gold: QueryRun, gold_key: str,
               order_matters: bool, gold_reads_tables: bool) -> Solution:
        """The solution with the result it voted for, or why it could not vote."""
        if solution.invalid is not None:
            return solution
        run = runs[solution.sql]
        if run.failure:  # database_unavailable mid-vote counts as a query that did not run
            failure = run.failure if run.failure in INVALID else "exec_error"
            return solution._replace(invalid=failure, detail=run.detail)
        hard_coded = gold_reads_tables and not tables  # the gold's rows written down, not queried
        if not hard_coded and results_match(gold.rows or [], run.rows or [], order_matters=order_matters):
            return solution._replace(result=gold_key)
        return solution._replace(result=result_hash(run.columns, run.rows or [], ordered=order_matters))

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)


class CotOutputs(NamedTuple):
    """``records`` (kept pairs, with ``reasoning``), ``dead`` (stage ``cot``) and ``notes`` (report keys)."""

    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class ExecutionVotedCot(beam.PTransform):
    """Final pairs → the pairs whose sampled solutions' majority result is the gold's, with a reasoning trace."""

    def __init__(self, settings: CotSettings):
        super().__init__()
        if settings.samples < 1:
            raise ValueError("--cot needs at least one solution per pair")
        self.settings = settings

    def expand(self, records):
        s = self.settings
        handler = LlmModelHandler(s.llm, requests_per_task=s.samples)
        asked = records | "WriteSolutions" >> AskModel(_CotTasksFn(s), handler, _as_is, main="replies",
                                                       count_records=True)
        # apart from the model calls, so the next batch's requests never wait for this one's queries
        voted = (asked["replies"]
                 | "SpreadReplies" >> beam.Reshuffle()
                 | "VoteByExecution" >> beam.ParDo(_VoteFn(s)).with_outputs(DEAD, NOTES, main="records"))
        dead = (asked[DEAD], voted[DEAD]) | "CotDead" >> beam.Flatten()
        return CotOutputs(voted.records, dead, voted[NOTES])


def _as_is(reply: ModelReply) -> Iterator[ModelReply]:
    yield reply
