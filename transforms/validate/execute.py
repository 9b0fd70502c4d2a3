"""Execute: run each distinct (database, normalized SQL) once, read-only, many in flight.

Records are keyed by (database, SQL fingerprint) and grouped, so a query that
appears a million times runs once, and a hot database is spread over as many keys
as it has distinct queries (the key is never the database alone). Where several
workers share the job, a query with ``hot_threshold`` records or more is not
grouped at all: a lifted count finds it, one representative runs it, and its result
reaches every record of it as a side input, so no worker receives a million records
under one key (``_RunHotQueries``). Each worker
keeps up to ``max_connections`` queries in flight on a thread pool over executors
shared by every DoFn instance of the process (``apache_beam.utils.shared``), built
on first use and closed at teardown.

Safety is layered: Normalize already refused anything but a single read-only
query; this stage checks the parsed tree again right before execution; and the
executor runs it in a read-only session with a time limit enforced by the database.
"""

from __future__ import annotations

import hashlib
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.shared import Shared
from apache_beam.utils.windowed_value import WindowedValue

from adapters.db import DatabaseMap, DatabaseUnavailable, InvalidDbId, redact
from adapters.db.base import DEFAULT_MAX_RESULT_BYTES
from transforms.core.record import Execution, Record
from transforms.kit.executors import ExecutorSet, default_max_connections, run_query
from transforms.kit.stage import DEAD, NAMESPACE, count, reject


def _acquire_executors(database: str, settings: dict[str, Any], max_connections: int) -> ExecutorSet:
    """This process's ``ExecutorSet`` for a database spec and settings (one per spec, shared by DoFns)."""
    settings = dict(settings, max_connections=max_connections)
    tag = "executors:" + hashlib.sha256(repr((database, sorted(settings.items()))).encode()).hexdigest()
    return _SHARED_EXECUTORS.acquire(lambda: ExecutorSet(settings), tag=tag).retain()


_SHARED_EXECUTORS = Shared()

#: Records per executed group (a distribution: count, sum, min, max).
_GROUP_RECORDS = Metrics.distribution(NAMESPACE, "execute.group_records")


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
        """A group's outputs: its records with the execution, or each one as a dead letter.

        Also records the group's size in the ``execute.group_records`` distribution:
        its max is the largest key one worker received (on Dataflow's monitoring page
        too), so a hot key shows without reading the data.
        """
        size = 0
        for output in _apply_outcome(outcome, records):
            size += 1
            yield output
        _GROUP_RECORDS.update(size)

    def process(self, element: tuple[tuple, Iterable[Record]]) -> Iterator:
        key, records = element
        first = next(iter(records))
        if first.execution is not None:  # settled before this stage (keyed apart): passes through
            yield from records
            return
        try:
            url = self._databases.url_for(first.db_id)
        except InvalidDbId as error:  # data that would steer the connection: never substituted, never run
            yield from self._emit(key, ("invalid_db_id", str(error)), records)
            return
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

#: Tag of the records ``_RunHotQueries`` leaves to the grouping.
_COLD = "cold"


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

    ``max_result_bytes``: result rows kept per query, by ``adapters.db.base.row_bytes``
    (past it the result is ``truncated``), so a worker holds at most about
    ``max_connections`` × that in results. ``max_connections`` bounds the worker's open
    connections over all databases together (one ``ConnectionBudget``).

    ``hot_threshold``: run queries with at least this many records apart from the
    grouping (see ``_RunHotQueries``); ``None`` groups every query, which is right
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
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        skip_reason: str = "not executed",
        hot_threshold: Optional[int] = None,
    ):
        super().__init__()
        if hot_threshold is not None and hot_threshold < 1:
            raise ValueError("hot_threshold must be positive")
        self.database = database
        self.settings = {"timeout_s": timeout_s, "max_rows": max_rows, "max_result_bytes": max_result_bytes}
        # Only the variable's *name* travels with the pipeline; the worker reads the
        # value at setup, so the password is never pickled into the job graph.
        self.settings["password_env"] = password_env
        self.max_connections = max_connections or default_max_connections()
        self.skip_reason = skip_reason
        self.hot_threshold = hot_threshold

    def expand(self, records):  # -> ExecuteOutputs (no annotation: Beam warns about one that is no PCollection)
        if not self.database:
            skipped = records | "MarkSkipped" >> beam.ParDo(_MarkSkippedFn(self.skip_reason)).with_outputs(
                DEAD, main="records"
            )
            return ExecuteOutputs(skipped.records, skipped[DEAD])
        keyed = records | "KeyByQuery" >> beam.Map(lambda r: (_group_key(r), r))
        hot = None
        if self.hot_threshold is not None:
            hot = keyed | "RunHotQueries" >> _RunHotQueries(
                self.hot_threshold, self.database, self.settings, self.max_connections)
            keyed = hot.cold
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
        return ExecuteOutputs(
            (ran.records, hot.records) | "AllExecuted" >> beam.Flatten(),
            (ran[DEAD], hot.dead) | "AllDead" >> beam.Flatten(),
        )


#: What running a query needs of one of its records: ``(id, normalized_sql, dialect, db_id)``.
Representative = tuple[str, Optional[str], Optional[str], Optional[str]]


class _CountAndPick(beam.CombineFn):
    """A query's records → ``(how many, representative)``: the one with the smallest id, as what runs it.

    The count says whether the query is hot. Lifted like every ``CombinePerKey``:
    each worker pre-combines its own records, so one count and one representative
    (its id, SQL, dialect and database, not the whole record) per key and bundle
    cross the shuffle, however many times the query repeats.
    """

    def create_accumulator(self) -> tuple[int, Optional[Representative]]:
        return (0, None)

    def add_input(self, accumulator: tuple[int, Optional[Representative]],
                  record: Record) -> tuple[int, Optional[Representative]]:
        seen, chosen = accumulator
        if chosen is None or record.id < chosen[0]:
            chosen = (record.id, record.normalized_sql, record.dialect, record.db_id)
        return (seen + 1, chosen)

    def merge_accumulators(self, accumulators: Iterable[tuple[int, Optional[Representative]]]
                           ) -> tuple[int, Optional[Representative]]:
        seen, chosen = 0, None
        for more, other in accumulators:
            seen += more
            if other is not None and (chosen is None or other[0] < chosen[0]):
                chosen = other
        return (seen, chosen)

    def extract_output(self, accumulator: tuple[int, Optional[Representative]]
                       ) -> tuple[int, Optional[Representative]]:
        return accumulator


def _representative_group(key: tuple, counted: tuple[int, Representative]) -> tuple[tuple, list[Record]]:
    """The group ``_RunRepresentativeFn`` runs: the key and a record holding what running it needs."""
    rid, sql, dialect, db_id = counted[1]
    return (key, [Record(id=rid, question=None, sql=sql or "", normalized_sql=sql, dialect=dialect, db_id=db_id)])


class _RunRepresentativeFn(_ExecuteGroupsFn):
    """Runs a hot query once, from its representative; emits ``(key, outcome)``, not records."""

    def _emit(self, key: tuple, outcome: Outcome, records: Iterable[Record]) -> Iterator:
        yield (key, outcome)


class HotOutputs(NamedTuple):
    records: beam.PCollection  # records of hot queries, executed
    dead: beam.PCollection  # records of hot queries that could not run
    cold: beam.PCollection  # (key, record) of every other query, for the grouping


class _RunHotQueries(beam.PTransform):
    """``(key, record)`` → hot queries' records executed without grouping them, and the ``cold`` rest.

    A query is hot with ``threshold`` records or more. A lifted count (``_CountAndPick``)
    finds those queries and a representative of each; the representatives run
    through the same DoFn as every group, which emits each query's outcome (an
    ``Execution``, or why it could not run) instead of records. The outcomes — at
    most records ÷ threshold of them — are a side input: each record of a hot query
    takes its query's outcome where it is, every other record goes on to the
    grouping. Only counts, representatives and outcomes cross a shuffle, never the
    hot records, and each record leaves exactly once.
    """

    def __init__(self, threshold: int, database: str, settings: dict[str, Any], max_connections: int):
        super().__init__()
        self.threshold = threshold
        self.database, self.settings, self.max_connections = database, settings, max_connections

    def expand(self, keyed):  # -> HotOutputs (no annotation: Beam warns about one that is no PCollection)
        threshold = self.threshold
        outcomes = (
            keyed
            | "CountPerQuery" >> beam.CombinePerKey(_CountAndPick())
            | "HotOnly" >> beam.Filter(lambda kv: kv[1][0] >= threshold and kv[0][0] != _SETTLED)
            | "AsGroup" >> beam.MapTuple(_representative_group)
            | "RunOnce" >> beam.ParDo(_RunRepresentativeFn(self.database, self.settings, self.max_connections))
        )
        split = keyed | "ApplyOrPass" >> beam.ParDo(_ApplyHotFn(), beam.pvalue.AsDict(outcomes)).with_outputs(
            DEAD, _COLD, main="records")
        return HotOutputs(split.records, split[DEAD], split[_COLD])


class _ApplyHotFn(beam.DoFn):
    def process(self, element: tuple, outcomes: dict) -> Iterator:
        outcome = outcomes.get(element[0])
        if outcome is None:
            yield beam.pvalue.TaggedOutput(_COLD, element)
            return
        yield from _apply_outcome(outcome, (element[1],))
