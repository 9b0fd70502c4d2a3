"""PostgreSQL executor: psycopg 3 connections under a worker-wide budget, read-only by construction.

Each query runs as::

    BEGIN READ ONLY;
    SELECT set_config('statement_timeout', …, true), set_config('lock_timeout', …, true),
           set_config('idle_in_transaction_session_timeout', …, true),
           set_config('cursor_tuple_fraction', '1', true)[, set_config('temp_file_limit', …, true)];
    DECLARE sqlpairs_cursor NO SCROLL CURSOR FOR <the query>;
    FETCH FORWARD <first batch> FROM sqlpairs_cursor;
    ROLLBACK;

all in one libpq pipeline: one network round trip per query, where a plain
``execute`` on a pooled connection takes three (BEGIN, the query, COMMIT). Why each
piece is there:

* ``BEGIN READ ONLY`` and a session default ``default_transaction_read_only = on``:
  PostgreSQL itself refuses every write (INSERT/UPDATE/DELETE/DDL, nextval,
  lo_import, …), whatever the role — a superuser included.
* ``ROLLBACK``, always (in the pipeline, or before the connection is reused after a
  failure): even settings changed by a query (``set_config``) are undone.
* ``set_config(…, true)`` is ``SET LOCAL``, all settings in one statement (per
  transaction, so they hold behind PgBouncer's transaction pooling too):
  ``statement_timeout`` and ``lock_timeout`` stop a slow query or a lock wait on the
  server, for the DECLARE (planning) and the FETCH (execution) alike;
  ``idle_in_transaction_session_timeout`` ends the session if this worker dies
  mid-transaction. ``cursor_tuple_fraction = 1`` keeps cursor plans the same as
  plain-query plans (the default 0.1 favours fast-start plans that can be far
  slower to finish). ``temp_file_limit`` (``TEMP_FILE_LIMIT``) bounds the temporary
  files of one query's sorts and hashes; PostgreSQL lets only a superuser set it, so
  it is set where the role is one, and is the server's own setting otherwise
  (``ALTER ROLE … SET temp_file_limit``, by an administrator).
* ``DECLARE … CURSOR FOR`` (a server-side, named cursor), then ``FETCH`` in batches:
  never more than ``max_rows + 1`` rows leave the server (the extra row tells that the
  cap cut the result), nor many more bytes than ``max_result_bytes`` (``row_bytes``):
  the first batch is ``FIRST_FETCH_ROWS`` rows, in the one round trip with the
  ROLLBACK; a result that goes on runs again in a transaction kept open, read in
  batches sized from the rows already seen to what the byte cap leaves (wide rows a
  few at a time), then rolled back. A result that fits the first batch (the usual
  case) costs one round trip; a longer one runs twice, a round trip per batch. Memory
  per query is at most about ``max_result_bytes`` plus one batch (``FIRST_FETCH_ROWS``
  rows first, at most ``MAX_FETCH_ROWS`` after). DECLARE also accepts exactly one
  SELECT/VALUES/TABLE: no COPY, no
  ``SELECT … INTO``, no data-modifying WITH. The pipeline uses the extended query
  protocol, which refuses several statements in one text. psycopg's ``ServerCursor``
  does the same but cannot be pipelined and adds round trips, hence the explicit SQL.

Every wait of the client is bounded, not only the server's work: connecting by
``connect_timeout`` (``CONNECT_TIMEOUT_S``), waiting for a free connection by the
budget's timeout, and every exchange on an open connection (the query, each FETCH,
the ROLLBACK) by a client deadline of ``timeout_s + CLIENT_GRACE_S`` — a server or
proxy that stops answering cannot hold a thread past it. A connection past its
deadline is closed and discarded; the query's status is ``timeout``.

Connections are not a pool per database: a ``ConnectionBudget`` (``adapters.db.retry``)
shared by every executor of a worker holds at most ``max_connections`` open over all
databases, opens them on demand and closes idle ones (``POOL_MAX_IDLE_S``, or when
another database needs the slot).

libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE, …) and
``~/.pgpass`` apply to whatever the URL leaves out; the ``password`` argument (from
``--database_password_env``) overrides both. A statement timeout (SQLSTATE 57014),
lock timeout (55P03) or the client deadline gives ``status: timeout``. A connection
that breaks (server restart, ``pg_terminate_backend``, a proxy's cut) is replaced and
the query retried at once; the database counts as unavailable (``DatabaseUnavailable``)
only when it refuses new connections for ``DOWN_AFTER_S`` (see ``adapters.db.retry``).
A superuser role is run (the session is read-only all the same), with one warning
per process recommending a read-only role.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Optional, Sequence

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from adapters.db.base import DatabaseUnavailable, Executor, display_url, redact, row_bytes
from adapters.db.retry import (BudgetTimeout, ConnectionBudget, ConnectionLost, Reconnector, SharesConnectionBudget,
                               one_line)

_LOGGER = logging.getLogger(__name__)

#: Seconds to wait for a new connection (libpq's connect_timeout) and for its session set-up.
CONNECT_TIMEOUT_S = 5
#: Idle connections are closed after this many seconds (sooner when another database needs the slot).
POOL_MAX_IDLE_S = 60.0
#: Connection attempts refused for this long, in a row, make the database unavailable.
DOWN_AFTER_S = 4.0
#: The client's deadline for one query's exchanges is ``timeout_s`` plus this: the server's own
#: ``statement_timeout`` answers first, unless the server (or what is in between) went silent.
CLIENT_GRACE_S = 2.0
#: Seconds a ROLLBACK after a failure may take before the connection is discarded instead.
ROLLBACK_TIMEOUT_S = 2.0
#: Rows of the first FETCH (in the one-round-trip pipeline): most results fit, and wide rows cost
#: at most this many rows of memory before the byte cap is checked. A longer result runs again,
#: in batches sized by the byte cap.
FIRST_FETCH_ROWS = 100
#: Rows one later FETCH brings at most, whatever the byte cap leaves at the mean size seen so far:
#: rows further on may be wider than the first ones, and a batch is in memory before it is measured.
MAX_FETCH_ROWS = 1000
#: ``temp_file_limit`` of each query's transaction, where the role may set it (superusers).
TEMP_FILE_LIMIT = "1GB"
CURSOR = "sqlpairs_cursor"

# SQLSTATEs that mean the session is gone, not that the query failed.
_LOST_STATES = frozenset({"57P01", "57P02", "57P03", "25P03", "08000", "08003", "08006", "08001", "08004"})
# TCP keepalives: notice a dead server or a half-open socket instead of waiting on it forever.
_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5", "keepalives_count": "3"}
# (host, port, user) already warned about as superuser, so the warning shows once per process.
_WARNED_SUPERUSER: set[tuple[str, str, str]] = set()
_WARN_LOCK = threading.Lock()


class ClientDeadline(psycopg.OperationalError):
    """The server did not answer within the client's deadline; the connection was closed."""


class DeadlineConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server ends by ``deadline`` (a ``time.monotonic`` value).

    psycopg runs every exchange (pipeline sync, fetch, rollback) through ``wait``, so
    bounding it bounds them all. Past the deadline the connection is closed: its
    protocol state is unknown, it must never be reused.
    """

    deadline: Optional[float] = None
    superuser: bool = False

    def wait(self, gen: Any, interval: Optional[float] = None, timeout: Optional[float] = None) -> Any:
        if self.deadline is None:
            return super().wait(gen, timeout=timeout) if interval is None else super().wait(gen, interval, timeout)
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._expire()
        timeout = left if timeout is None else min(timeout, left)
        try:
            return super().wait(gen, timeout=timeout) if interval is None else super().wait(gen, interval, timeout)
        except psycopg.OperationalError:
            if time.monotonic() >= self.deadline:
                self._expire()
            raise

    def retire(self, wait_s: float = 1.0) -> None:
        """Close, and wait (``wait_s`` at most) until the server's backend has gone.

        ``close`` only sends the goodbye: the backend lingers for a while after it.
        Waiting for the server to close its end makes a connection given up for
        another database's sake really gone before that one opens, so the server never
        sees more of ours than the budget allows.
        """
        self.deadline = None
        if self.closed:
            return
        try:
            watcher = socket.socket(fileno=os.dup(self.pgconn.socket))
        except (OSError, psycopg.Error):
            self.close()
            return
        try:
            self.close()
            watcher.settimeout(wait_s)
            while watcher.recv(4096):
                pass
        except OSError:
            pass
        finally:
            watcher.close()

    def _expire(self) -> None:
        self.deadline = None  # closing must not wait on the deadline again
        self.close()
        raise ClientDeadline("the server did not answer within the client deadline; connection closed")


def libpq_url(url: str) -> str:
    """The URL with a scheme libpq accepts (``postgresql+psycopg://`` → ``postgresql://``).

    >>> libpq_url("postgres+psycopg://u@h/db")
    'postgresql://u@h/db'
    """
    return "postgresql://" + url.split("://", 1)[1]


def _is_lost(error: BaseException, conn: Optional[psycopg.Connection]) -> bool:
    """Whether ``error`` says the connection broke (retry on a fresh one), not that the query failed.

    A client-side error with no SQLSTATE from a connection that is closed or broken
    ("server closed the connection unexpectedly", "cannot exit pipeline mode while
    busy" after a kill) is a loss, never the query's error.
    """
    if isinstance(error, ClientDeadline):
        return False
    if conn is not None and (conn.closed or conn.broken):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate in _LOST_STATES:
        return True
    return sqlstate is None and isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def _without_wrapper(error: psycopg.Error) -> psycopg.Error:
    """The same error class with PostgreSQL's own message, minus our ``DECLARE`` text and caret."""
    diag = error.diag
    message = diag.message_primary or (str(error).splitlines() or [type(error).__name__])[0]
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    try:
        return type(error)(one_line(message))
    except Exception:  # noqa: BLE001 - an exotic error class: keep the original
        return error


def _close(conn: DeadlineConnection) -> None:
    conn.retire()


def _reusable(conn: DeadlineConnection) -> bool:
    """Roll back whatever is left (bounded by ``ROLLBACK_TIMEOUT_S``); whether the connection may serve again."""
    if conn.closed or conn.broken:
        return False
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.deadline = time.monotonic() + ROLLBACK_TIMEOUT_S
            conn.rollback()
        return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    except psycopg.Error:
        return False
    finally:
        conn.deadline = None


def _next_batch(rows: int, size: int, max_rows: int, max_bytes: int, start: Optional[int] = None) -> int:
    """Rows to FETCH next: what the row cap and, at the mean size of the ``rows`` read (``size`` bytes),
    the byte cap leave; ``start``: rows (and their bytes, at that mean) already kept, when not ``rows``.

    >>> _next_batch(1000, 1000 * 100, 10000, 16_000_000)  # narrow rows: MAX_FETCH_ROWS at a time
    1000
    >>> _next_batch(10, 10 * 1_000_000, 10000, 16_000_000)  # 1 MB rows: a few more
    7
    >>> _next_batch(100, 100 * 1_000_000, 10000, 16_000_000, start=0)  # 1 MB rows, from the start
    17
    """
    mean = max(1, size // max(1, rows))
    kept = rows if start is None else start
    by_rows = max_rows + 1 - kept
    by_bytes = max(1, (max_bytes - kept * mean) // mean + 1)
    return max(1, min(by_rows, by_bytes, MAX_FETCH_ROWS))


class PostgresExecutor(SharesConnectionBudget, Executor):
    """Runs read-only queries on PostgreSQL over connections from a worker-wide budget.

    ``budget``: the ``ConnectionBudget`` shared with the worker's other executors (one
    of ``max_connections`` of its own when not given); ``use_budget`` sets it later.
    """

    dialect = "postgres"

    def __init__(self, url: str, *, budget: Optional[ConnectionBudget] = None, **kwargs: Any):
        super().__init__(url, **kwargs)
        self._conninfo = libpq_url(url)
        self._display = display_url(url)
        self._budget = budget
        self._own_budget = budget is None
        self._closed = False
        self._lock = threading.Lock()
        self._limits = self._limits_sql(superuser=False)
        self._limits_superuser = self._limits_sql(superuser=True)
        self._kwargs = self._connect_kwargs()
        self._reconnector = Reconnector(self._display, down_after_s=DOWN_AFTER_S, on_lost=self._drop_idle)

    # -- connections ---------------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        """Connection parameters we add; anything in the URL or libpq's environment wins, but the password."""
        given = conninfo_to_dict(self._conninfo)
        # No auto-prepared statements: nothing cached server-side, and PgBouncer-safe.
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
        defaults = dict(_KEEPALIVES, application_name="sqlpairs")
        if "PGCONNECT_TIMEOUT" not in os.environ:
            defaults["connect_timeout"] = str(CONNECT_TIMEOUT_S)
        if "PGAPPNAME" in os.environ:
            defaults.pop("application_name")
        kwargs.update({k: v for k, v in defaults.items() if k not in given})
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def _new_budget(self) -> ConnectionBudget:
        return ConnectionBudget(self.max_connections, close=_close, max_idle_s=POOL_MAX_IDLE_S)

    def _connect(self) -> DeadlineConnection:
        """A new read-only session: any transaction it starts is read-only unless it says otherwise.

        ``ConnectionLost``: refused when no connection was made, not refused when one was
        made and then broke during its set-up (an administrator's kill, say).
        """
        try:
            conn = DeadlineConnection.connect(self._conninfo, **self._kwargs)
        except psycopg.Error as error:
            raise ConnectionLost(one_line(f"cannot connect: {error}")) from error
        try:
            conn.deadline = time.monotonic() + CONNECT_TIMEOUT_S
            conn.execute("SET default_transaction_read_only = on")
            conn.superuser = conn.info.parameter_status("is_superuser") == "on"
        except psycopg.Error as error:
            broke = _is_lost(error, conn)  # a silent server (ClientDeadline) is not serving: a refusal
            _close(conn)
            raise ConnectionLost(one_line(f"session set-up failed: {error}"), refused=not broke) from error
        except BaseException:
            _close(conn)
            raise
        finally:
            conn.deadline = None
        if conn.superuser:
            self._warn_superuser(conn)
        return conn

    def _warn_superuser(self, conn: psycopg.Connection) -> None:
        """Once per process and server role: the session is read-only, but a read-only role is safer still."""
        info = conn.info
        key = (info.host, str(info.port), info.user)
        with _WARN_LOCK:
            if key in _WARNED_SUPERUSER:
                return
            _WARNED_SUPERUSER.add(key)
        _LOGGER.warning(
            "PostgreSQL role %r on %s is a superuser: queries run read-only and rolled back, but use a role "
            "without superuser rights, with default_transaction_read_only = on (ALTER ROLE … SET "
            "default_transaction_read_only = on) and only SELECT privileges", info.user, self._display)

    def _drop_idle(self) -> None:
        """After a lost connection, drop this database's idle ones: a restart killed them all at once."""
        with self._lock:
            budget = self._budget
        if budget is not None:
            budget.discard_idle(self)

    def _take(self) -> DeadlineConnection:
        budget = self._get_budget()
        wait_s = 2 * (self.timeout_s + CLIENT_GRACE_S) + CONNECT_TIMEOUT_S
        try:
            return budget.take(self, self._connect, timeout=wait_s)
        except BudgetTimeout as error:
            raise ConnectionLost(str(error), refused=False) from None

    def check(self, attempts: int = 3) -> None:
        """Connect and run ``SELECT 1``; a refusal fails at once, a connection that broke is tried again."""
        for attempt in range(attempts):
            try:
                conn = self._connect()
                try:
                    conn.deadline = time.monotonic() + CONNECT_TIMEOUT_S
                    conn.execute("SELECT 1").fetchall()
                    return
                except psycopg.Error as error:
                    if _is_lost(error, conn):
                        raise ConnectionLost(one_line(str(error)), refused=False) from error
                    raise DatabaseUnavailable(redact(one_line(f"cannot query {self._display}: {error}"))) from None
                finally:
                    _close(conn)
            except ConnectionLost as lost:
                if lost.refused or attempt + 1 == attempts:
                    why = lost.__cause__ or lost
                    raise DatabaseUnavailable(redact(one_line(f"cannot connect to {self._display}: {why}"))) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            budget = self._budget
        if budget is not None:
            budget.discard_idle(self)

    # -- queries ---------------------------------------------------------------------------
    def _limits_sql(self, superuser: bool) -> str:
        """One statement that sets every per-transaction limit (``set_config(name, value, true)`` is SET LOCAL)."""
        statement_ms = max(1, int(self.timeout_s * 1000))
        idle_ms = statement_ms + 10_000  # only a worker stuck mid-transaction ever reaches it
        settings: dict[str, Any] = {
            "statement_timeout": statement_ms,
            "lock_timeout": statement_ms,
            "idle_in_transaction_session_timeout": idle_ms,
            "cursor_tuple_fraction": 1,
        }
        if superuser:  # a superuser-only setting: elsewhere it is the server's (ALTER ROLE … SET)
            settings["temp_file_limit"] = TEMP_FILE_LIMIT
        return "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings.items())

    def _run(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        return self._reconnector.call(lambda: self._attempt(sql))

    def _attempt(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        conn = self._take()
        reusable = False
        try:
            conn.deadline = time.monotonic() + self.timeout_s + CLIENT_GRACE_S
            result = self._query(conn, sql)
            conn.deadline = None
            reusable = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE or _reusable(conn)
            return result
        except ClientDeadline:
            raise
        except psycopg.Error as error:
            if _is_lost(error, conn):
                raise ConnectionLost(one_line(f"{type(error).__name__}: {error}"), refused=False) from error
            reusable = _reusable(conn)
            raise _without_wrapper(error) from None
        finally:
            conn.deadline = None
            self._budget.give(self, conn, reusable=reusable and not conn.closed and not self._closed)

    def _query(self, conn: DeadlineConnection, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        first = min(self.max_rows + 1, FIRST_FETCH_ROWS)
        cursor = self._pipelined(conn, sql, first, rollback=True)
        columns = [column.name for column in cursor.description or ()]
        rows = cursor.fetchall()
        if len(rows) < first or first == self.max_rows + 1:  # all of it, or all we may keep
            rows, truncated = self._capped(cursor, rows, more=False)
            return columns, rows, truncated
        size = sum(row_bytes(row) for row in rows)
        if size > self.max_result_bytes:
            rows, truncated = self._capped(cursor, rows, more=False)
            return columns, rows, truncated
        # The result goes on: run it again in a transaction kept open, reading batches sized by the
        # byte cap from the rows seen (rare: the one-round-trip path had to ROLLBACK at once).
        batch = _next_batch(len(rows), size, self.max_rows, self.max_result_bytes, start=0)
        cursor = self._pipelined(conn, sql, batch, rollback=False)
        try:
            rows = cursor.fetchall()
            rows, truncated = self._capped(cursor, rows, more=len(rows) == batch)
        finally:
            if not conn.closed:
                conn.rollback()
        return columns, rows, truncated

    def _pipelined(self, conn: DeadlineConnection, sql: str, fetch: int, rollback: bool) -> psycopg.Cursor:
        """One round trip: BEGIN READ ONLY, the limits, DECLARE, a FETCH (and ROLLBACK); the FETCH's cursor."""
        cursor = conn.cursor()
        failure: Optional[psycopg.Error] = None
        try:
            with conn.pipeline():
                try:
                    cursor.execute("BEGIN READ ONLY")
                    cursor.execute(self._limits_superuser if conn.superuser else self._limits)
                    cursor.execute(f"DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}")
                    cursor.execute(f"FETCH FORWARD {fetch} FROM {CURSOR}")
                    if rollback:
                        conn.cursor().execute("ROLLBACK")  # its own cursor: ``cursor`` keeps the FETCH's rows
                except psycopg.Error as error:  # an early result already failed: the rest is aborted
                    failure = error
        except psycopg.Error as error:
            failure = failure or error  # keep the first error, not "pipeline aborted"
        if failure is not None:
            raise failure  # the connection is rolled back before reuse (_reusable)
        return cursor

    def _capped(self, cursor: psycopg.Cursor, rows: list, more: bool) -> tuple[list, bool]:
        """``rows`` and further batches of the cursor, cut at ``max_rows`` rows and ``max_result_bytes``."""
        size = 0
        for index, row in enumerate(rows):
            size += row_bytes(row)
            if size > self.max_result_bytes:
                return rows[:index], True
        while more and len(rows) <= self.max_rows:
            batch = _next_batch(len(rows), size, self.max_rows, self.max_result_bytes)
            cursor.execute(f"FETCH FORWARD {batch} FROM {CURSOR}")
            chunk = cursor.fetchall()
            more = len(chunk) == batch
            for row in chunk:
                size += row_bytes(row)
                if size > self.max_result_bytes:
                    return rows, True
                rows.append(row)
        if len(rows) > self.max_rows:
            return rows[: self.max_rows], True
        return rows, False

    def _is_timeout(self, error: BaseException) -> bool:
        return isinstance(error, (pg_errors.QueryCanceled, pg_errors.LockNotAvailable, ClientDeadline))
