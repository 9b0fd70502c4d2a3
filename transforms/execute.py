"""Execute: run each distinct (database, normalized SQL) once, read-only, many in flight.

Records are keyed by (database, SQL fingerprint) and grouped, so a query that
appears a million times runs once, and a hot database is spread over as many keys
as it has distinct queries (the key is never the database alone). Where several
workers share the job, a query with ``hot_threshold`` records or more is not
grouped at all: a lifted count finds it, one representative runs it, and its result
reaches every record of it as a side input, so no worker receives a million records
under one key (``_ExecuteHotApart``). Each worker
keeps up to ``max_connections`` queries in flight on a thread pool over executors
shared by every DoFn instance of the process (``apache_beam.utils.shared``), built
on first use and closed at teardown.

Safety is layered: Normalize already refused anything but a single read-only
query; this stage checks the parsed tree again right before execution; and the
executor runs it in a read-only session with a time limit enforced by the database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.shared import Shared
from apache_beam.utils.windowed_value import WindowedValue
from sqlglot.tokens import TokenType

from adapters.db import DatabaseMap, DatabaseUnavailable, Executor, open_executor, redact
from pipeline.record import Execution, Record
from transforms import parsing
from transforms.common import DEAD, count, reject

_LOGGER = logging.getLogger(__name__)


def default_max_connections() -> int:
    """Four queries in flight per CPU core: databases wait on I/O far more than on us."""
    return 4 * (os.cpu_count() or 1)


class ExecutorSet:
    """The executors of one worker process, one per database URL, built on first use."""

    def __init__(self, settings: dict[str, Any]):
        settings = dict(settings)
        password_env = settings.pop("password_env", None)
        if password_env:
            settings["password"] = os.environ.get(password_env)
        self.settings = settings
        self._executors: dict[str, Executor] = {}
        self._lock = threading.Lock()
        self._users = 0

    def retain(self) -> "ExecutorSet":
        """Count one more DoFn instance using this set (``Shared`` hands the same set to all)."""
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        """The last user to let go closes the pools, so connections never outlive the stage."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def get(self, url: str) -> Executor:
        with self._lock:
            executor = self._executors.get(url)
            if executor is None:
                executor = self._executors[url] = open_executor(url, **self.settings)
            return executor

    def close(self) -> None:
        with self._lock:
            for executor in self._executors.values():
                try:
                    executor.close()
                except Exception:  # noqa: BLE001 - closing must not fail the bundle
                    _LOGGER.warning("closing %r failed", executor)
            self._executors.clear()


def _acquire_executors(database: str, settings: dict[str, Any], max_connections: int) -> ExecutorSet:
    """This process's ``ExecutorSet`` for a database spec and settings (one per spec, shared by DoFns)."""
    settings = dict(settings, max_connections=max_connections)
    tag = "executors:" + hashlib.sha256(repr((database, sorted(settings.items()))).encode()).hexdigest()
    return _SHARED_EXECUTORS.acquire(lambda: ExecutorSet(settings), tag=tag).retain()


_SHARED_EXECUTORS = Shared()


def top_level_order_by(sql: str, dialect: Optional[str]) -> bool:
    """Whether the outermost query has an ORDER BY, from tokens alone (no parse).

    Only then does row order matter for the result hash. Parentheses hide ORDER BY
    clauses of subqueries, CTEs and window specifications.

    >>> top_level_order_by("SELECT a FROM (SELECT a FROM t ORDER BY a) AS s", "postgres")
    False
    >>> top_level_order_by("WITH c AS (SELECT 1 AS a) SELECT a FROM c ORDER BY a", "postgres")
    True
    >>> top_level_order_by("(SELECT a FROM t ORDER BY a)", "postgres")
    True
    """
    if "order" not in sql.lower():  # no ORDER BY anywhere (most queries): no need to tokenize
        return False
    tokens = parsing.tokenize(sql, dialect)
    while len(tokens) >= 2 and tokens[0].token_type == TokenType.L_PAREN and _closes_first(tokens):
        tokens = tokens[1:-1]  # `(SELECT … ORDER BY a)`: the whole query in parentheses
    depth = 0
    for token in tokens:
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and kind == TokenType.ORDER_BY:
            return True
    return False


def _closes_first(tokens: list) -> bool:
    """Whether the last token is the parenthesis that closes the first one."""
    depth = 0
    for index, token in enumerate(tokens):
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return index == len(tokens) - 1
    return False


def run_query(executor: Executor, sql: str, dialect: Optional[str]) -> Execution:
    """Run one normalized query (Normalize already refused anything but one read-only query;
    the executor's read-only session is the second, independent defence)."""
    return executor.execute(sql, ordered=top_level_order_by(sql, dialect))


#: What running one query came to: its ``Execution``, or ``(reason, detail)`` for the dead letters.
Outcome = Union[Execution, tuple[str, str]]


def _outcome(future: Future) -> Outcome:
    try:
        execution = future.result()
    except DatabaseUnavailable as error:
        return ("database_unavailable", redact(str(error)))
    except Exception as error:  # noqa: BLE001 - an executor bug must not lose records
        return ("internal_error", redact(f"{type(error).__name__}: {error}")[:500])
    count("execute.queries")
    count(f"execute.status.{execution.status}")
    return execution


def _apply_outcome(outcome: Outcome, records: Iterable[Record]) -> Iterator:
    """Each record with the query's execution, or as a dead letter of stage ``execute``."""
    if isinstance(outcome, Execution):
        for record in records:
            yield record._replace(execution=outcome)
        return
    reason, detail = outcome
    for record in records:
        yield reject("execute", reason, detail, record)


class _ExecuteGroupsFn(beam.DoFn):
    """Runs one query per (database, SQL) group, up to ``max_connections`` at once.

    The executors (connection pools) are this process's shared ``ExecutorSet``:
    acquired at setup, released at teardown by the last DoFn instance using them.
    """

    def __init__(self, database: str, settings: dict[str, Any], max_connections: int):
        self.database = database
        self.settings = settings
        self.max_connections = max_connections

    def setup(self) -> None:
        self._executors = _acquire_executors(self.database, self.settings, self.max_connections)
        self._databases = DatabaseMap.parse(self.database)
        self._pool = ThreadPoolExecutor(self.max_connections, thread_name_prefix="sqlpairs-execute")

    def start_bundle(self) -> None:
        self._pending: dict[Future, tuple[tuple, Iterable[Record]]] = {}
        # Finished futures queue themselves here (cheaper than ``wait(FIRST_COMPLETED)``,
        # which builds a waiter over every pending future each time).
        self._done: queue.SimpleQueue = queue.SimpleQueue()

    def _submit(self, url: str, key: tuple, records: Iterable[Record]) -> None:
        first = next(iter(records))
        future = self._pool.submit(run_query, self._executors.get(url), first.normalized_sql, first.dialect)
        self._pending[future] = (key, records)
        future.add_done_callback(self._done.put)

    def _drain(self, keep: int) -> Iterator:
        """Emit finished groups, whichever finish first, until at most ``keep`` are pending."""
        while len(self._pending) > keep:
            future = self._done.get()
            key, records = self._pending.pop(future)
            yield from self._emit(key, _outcome(future), records)

    def _emit(self, key: tuple, outcome: Outcome, records: Iterable[Record]) -> Iterator:
        """A group's outputs: its records with the execution, or each one as a dead letter."""
        return _apply_outcome(outcome, records)

    def process(self, element: tuple[tuple, Iterable[Record]]) -> Iterator:
        key, records = element
        first = next(iter(records))
        if first.execution is not None:  # settled before this stage (keyed apart): passes through
            yield from records
            return
        url = self._databases.url_for(first.db_id)
        if url is None:
            yield from self._emit(key, ("no_database", f"no --database entry serves db_id {first.db_id!r}"), records)
            return
        self._submit(url, key, records)
        # Twice the pool size stays queued, so a slow query never leaves a connection idle.
        yield from self._drain(keep=2 * self.max_connections - 1)

    def finish_bundle(self) -> Iterator:
        for output in self._drain(keep=0):
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, 0, [GlobalWindow()]))
            else:
                yield WindowedValue(output, 0, [GlobalWindow()])

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
        executors = getattr(self, "_executors", None)
        if executors is not None:
            executors.release()


class _MarkSkippedFn(beam.DoFn):
    def __init__(self, reason: str):
        self.reason = reason

    def process(self, record: Record) -> Iterator[Record]:
        if record.execution is not None:  # settled before this stage
            yield record
            return
        count("execute.status.skipped")
        yield record._replace(execution=Execution(status="skipped", error=self.reason))


#: Key prefix of records that already carry an execution: grouped apart, never run.
_SETTLED = "\x00settled"

#: Records of one query from which, on several workers, it is run apart rather than grouped.
#: Below it a group is cheap wherever it lands; above it one worker would receive them all.
HOT_QUERY_RECORDS = 1_000

#: Tag of the hot records' output of ``_SplitHotFn``.
_HOT = "hot"


def _group_key(record: Record) -> tuple[str, str]:
    if record.execution is not None:
        return (_SETTLED, record.id)
    return (record.db_id or "", record.sql_fingerprint or "")


class ExecuteOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection


class ExecuteQueries(beam.PTransform):
    """Records → records with ``execution`` filled in; unrunnable ones to ``dead``.

    A record that already carries an ``execution`` (a template Instantiate could not
    fill, checked there) passes through unchanged. It travels through the same
    grouping instead of around the stage: a Partition and a Flatten would cost every
    record one more encode and decode between fused stages.

    With ``database=None`` (``--validate parse|none``) every record is marked
    ``execution.status = skipped`` and nothing is run.

    ``hot_threshold``: run queries with at least this many records apart from the
    grouping (see ``_ExecuteHotApart``); ``None`` groups every query, which is right
    where one worker runs everything: the split would cost a count and a side input
    and balance nothing.
    """

    def __init__(
        self,
        database: Optional[str],
        *,
        timeout_s: float = 5.0,
        max_rows: int = 10000,
        max_connections: Optional[int] = None,
        password_env: Optional[str] = None,
        skip_reason: str = "not executed",
        hot_threshold: Optional[int] = None,
    ):
        super().__init__()
        if hot_threshold is not None and hot_threshold < 1:
            raise ValueError("hot_threshold must be positive")
        self.database = database
        self.settings = {"timeout_s": timeout_s, "max_rows": max_rows}
        # Only the variable's *name* travels with the pipeline; the worker reads the
        # value at setup, so the password is never pickled into the job graph.
        self.settings["password_env"] = password_env
        self.max_connections = max_connections or default_max_connections()
        self.skip_reason = skip_reason
        self.hot_threshold = hot_threshold

    def expand(self, records) -> ExecuteOutputs:
        if not self.database:
            skipped = records | "MarkSkipped" >> beam.ParDo(_MarkSkippedFn(self.skip_reason)).with_outputs(
                DEAD, main="records"
            )
            return ExecuteOutputs(skipped.records, skipped[DEAD])
        keyed = records | "KeyByQuery" >> beam.Map(lambda r: (_group_key(r), r))
        hot = None
        if self.hot_threshold is not None:
            split = keyed | "SplitHotQueries" >> _SplitHot(self.hot_threshold)
            keyed, hot = split.cold, split[_HOT]
        ran = (
            keyed
            | "GroupByQuery" >> beam.GroupByKey()
            | "RunQueries"
            >> beam.ParDo(_ExecuteGroupsFn(self.database, self.settings, self.max_connections)).with_outputs(
                DEAD, main="records"
            )
        )
        if hot is None:
            return ExecuteOutputs(ran.records, ran[DEAD])
        hot_ran = hot | "RunHotQueries" >> _ExecuteHotApart(self.database, self.settings, self.max_connections)
        return ExecuteOutputs(
            (ran.records, hot_ran.records) | "AllExecuted" >> beam.Flatten(),
            (ran[DEAD], hot_ran.dead) | "AllDead" >> beam.Flatten(),
        )


class _SplitHot(beam.PTransform):
    """``(key, record)`` → ``cold`` (main output) and ``hot``: records of keys with ``threshold`` or more.

    The count is a ``CombinePerKey``, lifted by every runner: each worker pre-counts
    its own records, so only one small counter per key and bundle crosses the shuffle.
    The set of hot keys (at most records ÷ threshold of them) is a side input.
    """

    def __init__(self, threshold: int):
        super().__init__()
        self.threshold = threshold

    def expand(self, keyed):
        threshold = self.threshold
        hot_keys = (
            keyed
            | "CountPerQuery" >> beam.combiners.Count.PerKey()
            | "HotOnly" >> beam.Filter(lambda kv: kv[1] >= threshold and kv[0][0] != _SETTLED)
            | "HotKeys" >> beam.Keys()
            | "AsSet" >> beam.combiners.ToSet()
        )
        return keyed | "Split" >> beam.ParDo(_SplitHotFn(), beam.pvalue.AsSingleton(hot_keys)).with_outputs(
            _HOT, main="cold")


class _SplitHotFn(beam.DoFn):
    def process(self, element: tuple, hot_keys: set) -> Iterator:
        if element[0] in hot_keys:
            yield beam.pvalue.TaggedOutput(_HOT, element)
        else:
            yield element


def _smallest_id(records: Iterable[Record]) -> Record:
    return min(records, key=lambda record: record.id)


class _RunRepresentativeFn(_ExecuteGroupsFn):
    """Runs a hot query once, from its representative; emits ``(key, outcome)``, not records."""

    def _emit(self, key: tuple, outcome: Outcome, records: Iterable[Record]) -> Iterator:
        yield (key, outcome)


class _ExecuteHotApart(beam.PTransform):
    """``(key, record)`` of hot queries → records and dead letters, without grouping the records.

    One representative per key (the smallest id, by a lifted combine) runs through
    the same DoFn as every other group, which emits the outcome (an ``Execution`` or
    the reason it could not run) instead of records. The outcomes, one per hot query,
    are a side input that every record of the key reads: only they cross a shuffle,
    never the records, and each record leaves exactly once.
    """

    def __init__(self, database: str, settings: dict[str, Any], max_connections: int):
        super().__init__()
        self.database, self.settings, self.max_connections = database, settings, max_connections

    def expand(self, hot) -> ExecuteOutputs:
        outcomes = (
            hot
            | "OnePerQuery" >> beam.CombinePerKey(_smallest_id)
            | "AsGroup" >> beam.MapTuple(lambda key, record: (key, [record]))
            | "RunOnce" >> beam.ParDo(_RunRepresentativeFn(self.database, self.settings, self.max_connections))
        )
        applied = hot | "Apply" >> beam.ParDo(_ApplyOutcomeFn(), beam.pvalue.AsDict(outcomes)).with_outputs(
            DEAD, main="records")
        return ExecuteOutputs(applied.records, applied[DEAD])


class _ApplyOutcomeFn(beam.DoFn):
    def process(self, element: tuple, outcomes: dict) -> Iterator:
        key, record = element
        yield from _apply_outcome(outcomes[key], (record,))


