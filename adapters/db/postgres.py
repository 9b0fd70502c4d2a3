"""PostgreSQL executor: psycopg 3 over a ``psycopg_pool.ConnectionPool``, read-only by construction.

Each query runs as::

    BEGIN READ ONLY;
    SELECT set_config('statement_timeout', …, true), set_config('lock_timeout', …, true),
           set_config('idle_in_transaction_session_timeout', …, true),
           set_config('cursor_tuple_fraction', '1', true);
    DECLARE sqlpairs_cursor NO SCROLL CURSOR FOR <the query>;
    FETCH FORWARD <max_rows + 1> FROM sqlpairs_cursor;
    ROLLBACK;

all in one libpq pipeline: one network round trip per query, where a plain
``execute`` on a pooled connection takes three (BEGIN, the query, COMMIT). Why each
piece is there:

* ``BEGIN READ ONLY`` and a session default ``default_transaction_read_only = on``:
  PostgreSQL itself refuses every write (INSERT/UPDATE/DELETE/DDL, nextval,
  lo_import, …), whatever the role — a superuser included.
* ``ROLLBACK``, always (in the pipeline, or when the connection goes back to the
  pool after a failure): even settings changed by a query (``set_config``) are undone.
* ``set_config(…, true)`` is ``SET LOCAL``, four settings in one statement (per
  transaction, so they hold behind PgBouncer's transaction pooling too):
  ``statement_timeout`` and ``lock_timeout`` stop a slow query or a lock wait on the
  server, for the DECLARE (planning) and the FETCH (execution) alike;
  ``idle_in_transaction_session_timeout`` ends the session if this worker dies
  mid-transaction. ``cursor_tuple_fraction = 1`` keeps cursor plans the same as
  plain-query plans (the default 0.1 favours fast-start plans that can be far
  slower to finish).
* ``DECLARE … CURSOR FOR`` (a server-side, named cursor) and one ``FETCH`` of
  ``max_rows + 1``: never more than that leaves the server (the extra row tells
  that the cap cut the result), and the executor keeps at most ``max_rows`` rows in
  memory either way. DECLARE also accepts exactly one SELECT/VALUES/TABLE: no COPY,
  no ``SELECT … INTO``, no data-modifying WITH. The pipeline uses the extended query
  protocol, which refuses several statements in one text. psycopg's ``ServerCursor``
  does the same but cannot be pipelined and adds round trips, hence the explicit SQL.

libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE, …) and
``~/.pgpass`` apply to whatever the URL leaves out; the ``password`` argument (from
``--database_password_env``) overrides both. A statement timeout (SQLSTATE 57014)
or lock timeout (55P03) gives ``status: timeout``. A lost connection (server
restart, admin shutdown, pool timeout) is retried with backoff a bounded number of
times, then raises ``DatabaseUnavailable`` (see ``adapters.db.retry``).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional, Sequence

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from adapters.db.base import DatabaseUnavailable, Executor, display_url, redact
from adapters.db.retry import ConnectionLost, Reconnector, one_line

#: Seconds to wait for a connection: the pool's, or a new one (also libpq's connect_timeout).
CONNECT_TIMEOUT_S = 5
#: Idle pooled connections beyond the pool's minimum are closed after this many seconds.
POOL_MAX_IDLE_S = 60.0
#: Connection attempts per query before the database counts as unavailable.
ATTEMPTS = 3
CURSOR = "sqlpairs_cursor"

# SQLSTATEs that mean the session is gone, not that the query failed.
_LOST_STATES = frozenset({"57P01", "57P02", "57P03", "25P03", "08000", "08003", "08006", "08001", "08004"})
# TCP keepalives: notice a dead server or a half-open socket instead of waiting on it forever.
_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5", "keepalives_count": "3"}


def libpq_url(url: str) -> str:
    """The URL with a scheme libpq accepts (``postgresql+psycopg://`` → ``postgresql://``).

    >>> libpq_url("postgres+psycopg://u@h/db")
    'postgresql://u@h/db'
    """
    return "postgresql://" + url.split("://", 1)[1]


def _is_lost(error: BaseException, conn: Optional[psycopg.Connection]) -> bool:
    if isinstance(error, PoolTimeout):
        return True
    if conn is not None and conn.closed:
        return True
    return getattr(error, "sqlstate", None) in _LOST_STATES


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


def _configure(conn: psycopg.Connection) -> None:
    """Every new pooled connection: any transaction it starts is read-only unless it says otherwise."""
    conn.execute("SET default_transaction_read_only = on")


def _give_back(pool: ConnectionPool, conn: psycopg.Connection) -> None:
    """Roll back whatever happened, then return the connection (the pool drops broken ones)."""
    try:
        if not conn.closed:
            conn.rollback()
    except psycopg.Error:
        pass  # the connection broke: putconn discards it
    finally:
        pool.putconn(conn)


class PostgresExecutor(Executor):
    """Runs read-only queries on PostgreSQL over a connection pool built on first use."""

    dialect = "postgres"

    def __init__(self, url: str, **kwargs: Any):
        super().__init__(url, **kwargs)
        self._conninfo = libpq_url(url)
        self._display = display_url(url)
        self._pool: Optional[ConnectionPool] = None
        self._lock = threading.Lock()
        self._limits = self._limits_sql()
        self._reconnector = Reconnector(self._display, attempts=ATTEMPTS, on_lost=self._drop_dead_connections)

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

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._conninfo,
                    kwargs=self._connect_kwargs(),
                    # Every connection opens now, in the pool's background workers: the
                    # first queries would otherwise wait while it grows one at a time.
                    min_size=max(1, self.max_connections),
                    max_size=max(1, self.max_connections),
                    timeout=CONNECT_TIMEOUT_S,
                    max_idle=POOL_MAX_IDLE_S,
                    configure=_configure,
                    name=f"sqlpairs {self._display}",
                    open=True,
                )
            return self._pool

    def _drop_dead_connections(self) -> None:
        """After a lost connection, test the idle ones: a restart killed them all at once."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.check()

    def _why_no_connection(self, timeout: PoolTimeout) -> str:
        """The pool only says it waited in vain; one direct attempt tells why (refused, no such database…)."""
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs()):
                pass
        except psycopg.Error as error:
            return one_line(f"{timeout}; connecting directly: {error}")
        return one_line(str(timeout))

    def check(self) -> None:
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs()) as conn:
                conn.execute("SELECT 1").fetchall()
        except psycopg.Error as error:
            raise DatabaseUnavailable(redact(one_line(f"cannot connect to {self._display}: {error}"))) from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5.0)

    # -- queries ---------------------------------------------------------------------------
    def _limits_sql(self) -> str:
        """One statement that sets every per-transaction limit (``set_config(name, value, true)`` is SET LOCAL)."""
        statement_ms = max(1, int(self.timeout_s * 1000))
        idle_ms = statement_ms + 10_000  # only a worker stuck mid-transaction ever reaches it
        settings = {
            "statement_timeout": statement_ms,
            "lock_timeout": statement_ms,
            "idle_in_transaction_session_timeout": idle_ms,
            "cursor_tuple_fraction": 1,
        }
        return "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings.items())

    def _run(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        return self._reconnector.call(lambda: self._attempt(sql))

    def _attempt(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        pool = self._get_pool()
        try:
            conn = pool.getconn()
        except PoolTimeout as error:
            raise ConnectionLost(self._why_no_connection(error)) from error
        try:
            return self._query(conn, sql)
        except psycopg.Error as error:
            if _is_lost(error, conn):
                raise ConnectionLost(one_line(f"{type(error).__name__}: {error}")) from error
            raise _without_wrapper(error) from None
        finally:
            _give_back(pool, conn)

    def _query(self, conn: psycopg.Connection, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        cursor = conn.cursor()
        failure: Optional[psycopg.Error] = None
        try:
            with conn.pipeline():
                try:
                    cursor.execute("BEGIN READ ONLY")
                    cursor.execute(self._limits)
                    cursor.execute(f"DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}")
                    cursor.execute(f"FETCH FORWARD {self.max_rows + 1} FROM {CURSOR}")
                    conn.cursor().execute("ROLLBACK")  # its own cursor: ``cursor`` keeps the FETCH's rows
                except psycopg.Error as error:  # an early result already failed: the rest is aborted
                    failure = error
        except psycopg.Error as error:
            failure = failure or error  # keep the first error, not "pipeline aborted"
        if failure is not None:
            raise failure  # the connection goes back to the pool through a ROLLBACK (_give_back)
        columns = [column.name for column in cursor.description or ()]
        rows = cursor.fetchall()
        truncated = len(rows) > self.max_rows
        return columns, rows[: self.max_rows] if truncated else rows, truncated

    def _is_timeout(self, error: BaseException) -> bool:
        return isinstance(error, (pg_errors.QueryCanceled, pg_errors.LockNotAvailable))
