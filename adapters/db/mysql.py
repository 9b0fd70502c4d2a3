"""MySQL / MariaDB executor: PyMySQL connections under a worker-wide budget, read-only transactions, bounded time.

Why PyMySQL: it is pure Python (nothing to compile, no libmysqlclient on the
worker image — a Dataflow worker installs it from a wheel in a second), speaks
to both MySQL and MariaDB, is actively maintained (PyMySQL org, 1.1/1.2 releases),
and has an unbuffered cursor (``SSCursor``) that streams rows instead of loading
the whole result. mysqlclient is faster but needs C headers to build;
mysql-connector-python is Oracle's and larger; MariaDB Connector/Python needs
the MariaDB C connector installed.

Each query runs as ``START TRANSACTION READ ONLY; <query>; ROLLBACK`` on a
connection whose session was set up once, when it was opened:

* ``SET SESSION TRANSACTION READ ONLY`` — every transaction on it is read-only;
* a statement time limit the server enforces: ``max_statement_time`` (seconds) on
  MariaDB, ``max_execution_time`` (milliseconds, SELECT only) on MySQL — detected
  from ``VERSION()``; plus ``lock_wait_timeout`` and ``innodb_lock_wait_timeout``.
  A server that cannot take them (MySQL before 5.7.8) is reported unavailable
  rather than queried without a limit.

MySQL's SET is not transactional, so these are set per connection rather than per
transaction, and nothing a query does may change them: multi-statement texts are
refused by the server (PyMySQL does not ask for ``CLIENT_MULTI_STATEMENTS``), and
the executor runs only texts that start with SELECT/WITH/VALUES/TABLE and have no
``INTO OUTFILE``/``DUMPFILE`` and no executable comment (:func:`refusal` — what a
read-only transaction does not stop on MySQL). Rows are read with ``fetchmany``
(``base.fetch_capped``, at most ``max_rows`` rows and ``max_result_bytes`` of them);
when a cap cuts a result the connection is closed instead of reading the rest (an
unbuffered cursor would otherwise drain every remaining row). Lost connections are
retried a bounded number of times (``adapters.db.retry``).

Connections are not a pool per database: a ``ConnectionBudget`` (``adapters.db.retry``),
shared by every executor of a worker — PostgreSQL's included — holds at most
``max_connections`` open over all databases, opens them on demand and closes idle ones
(``POOL_MAX_IDLE_S``, or at once when another database needs the slot: then the
client waits until the server has closed its end, so the server never holds more of
our sessions than the budget). Two connections live outside it, each briefly: the
start-up check's, and the probe that asks about a session gone silent (below).

The server's time limit only helps while the server answers. Every wait of the client
is bounded too: connecting (TCP, handshake and session setup) by ``CONNECT_TIMEOUT_S``
or the query deadline, whichever is shorter; each read and write of a query (START
TRANSACTION, the query, each fetch, the ROLLBACK) by ``timeout_s`` plus a small margin
(:func:`client_wait_s`). A connection that passes it is closed, and a fresh connection
asks the server what became of its session: still running the query (the server did
not stop it — it is killed, and the record is a ``timeout``), or idle or gone (the
answer was lost on the way: the query is retried on a fresh connection). When no fresh
connection can be had, the server counts as refusing and the reconnect back-off ends
in ``database_unavailable``, after which queries fail at once for the cool-down.

URL: ``mysql://user[:password]@host[:port]/database`` (``mariadb://`` too;
``?unix_socket=/path`` and ``?charset=`` are honoured). The ``password`` argument
(``--database_password_env``) overrides the URL's.
"""

from __future__ import annotations

import functools
import re
import struct
import threading
from typing import Any, Optional, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from adapters.db.base import BadDatabaseSetting, DatabaseUnavailable, Executor, display_url, fetch_capped, redact
from adapters.db.retry import (BudgetTimeout, ConnectionBudget, ConnectionLost, Reconnector, SharesConnectionBudget,
                               one_line)

#: Seconds to wait for a new connection at most (TCP connect, handshake, session setup).
CONNECT_TIMEOUT_S = 5
#: Connection attempts per query before the database counts as unavailable.
ATTEMPTS = 3
#: Rows per ``fetchmany``.
FETCH_BATCH = 1000
#: Idle connections are closed after this many seconds (sooner when another database needs the slot).
POOL_MAX_IDLE_S = 60.0
#: Seconds a connection given up waits for the server to close its end (see ``_retire``).
RETIRE_WAIT_S = 1.0

# Client/server error codes that mean the connection is gone, not that the query failed:
# 2002/2003 can't connect, 2006 gone away, 2013 lost during query, 2055 lost at handshake,
# 1053 server shutdown, 1927 connection killed (MariaDB), 4031 disconnected by server (MySQL 8).
_LOST_CODES = frozenset({2002, 2003, 2006, 2013, 2055, 1053, 1927, 4031, 1152, 1153, 1159, 1161})
# 1969 statement timeout (MariaDB), 3024 execution time exceeded (MySQL), 1205 lock wait,
# 1317 query interrupted (by the server's time limit).
_TIMEOUT_CODES = frozenset({1969, 3024, 1205, 1317})


# A read-only transaction leaves two doors open on MySQL: ``SELECT … INTO OUTFILE/DUMPFILE`` writes
# a file on the server (for a user with the FILE privilege), and ``SET`` is not transactional, so a
# ``SET SESSION max_statement_time = 0`` would outlive the ROLLBACK on a pooled connection. The guard
# refuses both; the executor checks the raw text itself too, so that it holds without the guard.
_FILE_WRITE = re.compile(
    r"\bINTO(?:\s|/\*.*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))+(OUTFILE|DUMPFILE)\b", re.IGNORECASE | re.DOTALL
)
_LEADING_NOISE = re.compile(r"(?:\s+|\(|/\*.*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))*", re.DOTALL)
_QUERY_KEYWORDS = ("select", "with", "values", "table")


def refusal(sql: str) -> Optional[str]:
    """Why a text must not run on MySQL/MariaDB even inside a read-only transaction, or None.

    >>> refusal("SELECT * FROM t INTO /* x */ OUTFILE '/tmp/t'")
    'refused: INTO OUTFILE writes a file on the server'
    >>> refusal("/* hi */ (SELECT 'into' FROM outfile)") is None
    True
    >>> refusal("SET SESSION max_statement_time = 0")
    'refused: only SELECT, WITH, VALUES and TABLE queries run'
    >>> refusal("SELECT 1 /*!, SLEEP(100) */")
    'refused: executable comment'
    """
    if "/*!" in sql or "/*M!" in sql:
        return "refused: executable comment"
    match = _FILE_WRITE.search(sql)
    if match:
        return f"refused: INTO {match.group(1).upper()} writes a file on the server"
    rest = sql[_LEADING_NOISE.match(sql).end():]
    keyword = re.match(r"[A-Za-z]+", rest)
    if keyword is None or keyword.group(0).lower() not in _QUERY_KEYWORDS:
        return "refused: only SELECT, WITH, VALUES and TABLE queries run"
    return None


def client_wait_s(timeout_s: float) -> float:
    """How long the client waits for any one answer of the server during a query.

    A little more than the server's own statement limit, so that the server's
    timeout error (a ``timeout`` record that keeps the connection) arrives first.

    >>> client_wait_s(1), client_wait_s(30)
    (2.1, 34.0)
    """
    return round(timeout_s + 1.0 + 0.1 * timeout_s, 3)


class MySqlClientTimeout(Exception):
    """The server did not stop a query at its limit: the client gave up waiting and killed it."""


def _error_code(error: BaseException) -> Optional[int]:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _is_lost(error: BaseException) -> bool:
    import pymysql

    if isinstance(error, pymysql.err.InterfaceError):
        return True  # the connection was already closed under us
    return isinstance(error, pymysql.err.OperationalError) and _error_code(error) in _LOST_CODES


def _timed_out(error: BaseException) -> bool:
    """PyMySQL turns a socket timeout into "Lost connection … (timed out)"."""
    return isinstance(error.__context__, TimeoutError) or "timed out" in str(error)


def _server_text(error: BaseException) -> str:
    """The server's message without PyMySQL's tuple around it."""
    code, args = _error_code(error), getattr(error, "args", ())
    return one_line(args[1] if code is not None and len(args) > 1 else str(error))


def _message(error: BaseException) -> str:
    """``1146: Table 'x.y' doesn't exist`` rather than a tuple's repr."""
    code = _error_code(error)
    return f"{code}: {_server_text(error)}" if code is not None else _server_text(error)


def _lost(message: str, *, refused: bool) -> ConnectionLost:
    """A ``ConnectionLost``; ``refused`` says no connection could be had (False: one broke)."""
    lost = ConnectionLost(message)
    lost.refused = refused  # set, not passed: older ``retry`` versions take no such argument
    return lost


class MySqlQueryError(Exception):
    """A query's own failure: PyMySQL's error class (``kind``), the server's error number and message."""

    def __init__(self, code: Optional[int], message: str, kind: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.kind = kind


def _rolled_back(connection: Any) -> bool:
    """After a failed query: roll back; the connection is reusable only if that worked."""
    try:
        connection.rollback()
        return True
    except Exception:  # noqa: BLE001 - a connection that cannot roll back is not reused
        return False


def _retire(connection: Any, wait_s: float = RETIRE_WAIT_S) -> None:
    """Say goodbye (``COM_QUIT``), and wait (``wait_s`` at most) until the server has closed its end.

    PyMySQL's ``close`` sends the goodbye and leaves: the server's session lingers a
    moment after it. Waiting for the server's end of the socket makes a connection given
    up for another database's sake really gone before that one opens, so the server never
    sees more of our sessions than the budget allows. Only clean, idle connections come
    here open: one that may have a result on its way was closed at once (``_give``).
    """
    sock = getattr(connection, "_sock", None)
    if sock is None:
        return
    try:
        sock.settimeout(wait_s)
        sock.sendall(struct.pack("<iB", 1, 1))  # COM_QUIT: payload length 1, sequence 0, command 1
        while sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        _force_close(connection)


@functools.cache
def _connection_class() -> type:
    """PyMySQL's ``Connection`` with ``retire``, which the worker's shared budget calls to close it.

    Built on first use, like every use of PyMySQL here (importing this module needs no driver).
    """
    import pymysql

    class BudgetConnection(pymysql.connections.Connection):
        def retire(self) -> None:
            _retire(self)

    return BudgetConnection


def _abandon(cursor: Any) -> None:
    """Forget an unbuffered result without reading the rest of it (PyMySQL would drain it on close)."""
    result = getattr(cursor, "_result", None)
    if result is not None:
        result.unbuffered_active = False
    cursor._result = None
    if getattr(cursor, "connection", None) is not None:
        cursor.connection._result = None


def _force_close(connection: Any) -> None:
    """Close the socket without reading what the server is still sending."""
    try:
        connection._force_close()  # PyMySQL: close the socket, no COM_QUIT round trip
    except Exception:  # noqa: BLE001 - closing a dead connection must not fail
        pass


class MySqlExecutor(SharesConnectionBudget, Executor):
    """Runs read-only queries on MySQL or MariaDB over connections from a worker-wide budget.

    ``budget``: the ``ConnectionBudget`` shared with the worker's other executors (one
    of ``max_connections`` of its own, built on first use, when not given);
    ``use_budget`` sets it later.
    """

    dialect = "mysql"

    def __init__(self, url: str, *, budget: Optional[ConnectionBudget] = None, **kwargs: Any):
        super().__init__(url, **kwargs)
        self._display = display_url(url)
        #: Each read or write of a query; connecting (handshake included) waits no longer than either.
        self._wait_s = client_wait_s(self.timeout_s)
        self._connect_s = min(float(CONNECT_TIMEOUT_S), self._wait_s)
        self._params = self._connect_params(url)
        self._lock = threading.Lock()
        self._budget = budget
        self._own_budget = budget is None
        self._closed = False
        self._reconnector = Reconnector(self._display, attempts=ATTEMPTS, on_lost=self._drop_idle)

    def _connect_params(self, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise BadDatabaseSetting(
                f"no database name in {self._display!r} (expected mysql://user@host:port/database)")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            port = parts.port or 3306
        except ValueError:
            raise BadDatabaseSetting(f"bad port in database URL {self._display!r}") from None
        params: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": port,
            "user": unquote(parts.username) if parts.username else None,
            "password": self.password if self.password is not None else unquote(parts.password or ""),
            "database": database,
            "charset": query.get("charset", "utf8mb4"),
            # PyMySQL reads the handshake with read_timeout: a server that accepts and says
            # nothing must not hold a new connection longer than connecting may take.
            # ``_connect`` switches to the query's wait once the session is set up.
            "connect_timeout": self._connect_s,
            "read_timeout": self._connect_s,
            "write_timeout": self._connect_s,
            "autocommit": True,
        }
        if "unix_socket" in query:
            params["unix_socket"] = query["unix_socket"]
        return params

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> Any:
        import pymysql

        try:
            connection = _connection_class()(cursorclass=pymysql.cursors.SSCursor, **self._params)
        except pymysql.err.MySQLError as error:
            if _timed_out(error):
                raise _lost(f"cannot connect: no answer within {self._connect_s:g} s", refused=True) from None
            raise _lost(f"cannot connect: {_message(error)}", refused=True) from error
        try:
            with connection.cursor(pymysql.cursors.Cursor) as cursor:
                for statement in self._session_setup(connection):
                    cursor.execute(statement)
        except pymysql.err.MySQLError as error:
            _force_close(connection)
            if _is_lost(error):
                reason = f"no answer within {self._connect_s:g} s" if _timed_out(error) else _message(error)
                raise _lost(f"session setup: {reason}", refused=True) from None
            raise DatabaseUnavailable(redact(f"{self._display}: cannot set up a read-only session: "
                                             f"{_message(error)}")) from None
        # From now on each wait is a query's: its limit plus a margin. PyMySQL reads these
        # two attributes before every read and write (there is no public setter).
        connection._read_timeout = connection._write_timeout = self._wait_s
        return connection

    def _session_setup(self, connection: Any) -> list[str]:
        seconds = max(1, int(round(self.timeout_s)))
        if "mariadb" in connection.get_server_info().lower():
            limit = f"max_statement_time = {self.timeout_s:.3f}"
        else:
            limit = f"max_execution_time = {max(1, int(self.timeout_s * 1000))}"
        return [
            "SET SESSION TRANSACTION READ ONLY",
            f"SET SESSION {limit}, lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}",
        ]

    def _new_budget(self) -> ConnectionBudget:
        return ConnectionBudget(self.max_connections, close=_retire, max_idle_s=POOL_MAX_IDLE_S)

    def _take(self, budget: ConnectionBudget) -> Any:
        """A connection of this database: an idle one, or a new one in a free (or freed) slot.

        A slot is waited for as long as two of the slowest exchanges of its holder take
        (plus connecting): the holder may be any database's query. When none frees up, the
        budget (not this database) was the trouble: a loss, retried, never a refusal.
        """
        try:
            return budget.take(self, self._connect, timeout=2 * self._wait_s + self._connect_s)
        except BudgetTimeout as error:
            raise _lost(str(error), refused=False) from None

    def _give(self, budget: ConnectionBudget, connection: Any, reusable: bool) -> None:
        """Back to the budget: kept idle when clean, else closed at once (no ``COM_QUIT``, no draining:
        a cut result may still be on its way) and its slot freed."""
        keep = reusable and connection.open and not self._closed
        if not keep:
            _force_close(connection)
        budget.give(self, connection, reusable=keep)

    def _drop_idle(self) -> None:
        """After a lost connection, drop this database's idle ones: a restart killed them all at once.

        Closed at once, without a goodbye: a server gone silent would keep each waiting.
        """
        with self._lock:
            budget = self._budget
        if budget is not None:
            budget.discard_idle(self, close=_force_close)

    def check(self) -> None:
        try:
            connection = self._connect()
        except ConnectionLost as error:
            raise DatabaseUnavailable(redact(one_line(f"cannot connect to {self._display}: {error}"))) from None
        _force_close(connection)

    def close(self) -> None:
        """Close this database's idle connections; ones in use are closed when given back."""
        with self._lock:
            self._closed = True
            budget = self._budget
        if budget is not None:
            budget.discard_idle(self)

    # -- queries ---------------------------------------------------------------------------------
    def _run(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        return self._reconnector.call(lambda: self._attempt(sql))

    def _attempt(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        import pymysql

        reason = refusal(sql)
        if reason:
            raise MySqlQueryError(None, reason)
        budget = self._get_budget()
        connection = self._take(budget)
        reusable = False
        try:
            cursor = connection.cursor()
            cursor.execute("START TRANSACTION READ ONLY")
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            rows, truncated = fetch_capped(cursor, self.max_rows, FETCH_BATCH, max_bytes=self.max_result_bytes)
            if truncated:  # rows are left unread: drop the connection rather than drain them
                _abandon(cursor)
            else:
                cursor.close()
                connection.rollback()
                reusable = True
            return columns, [tuple(row) for row in rows], truncated
        except pymysql.err.MySQLError as error:
            if _is_lost(error):
                if _timed_out(error):
                    self._after_silence(connection)
                raise _lost(_message(error), refused=False) from error
            reusable = _rolled_back(connection)
            raise MySqlQueryError(_error_code(error), _server_text(error), type(error).__name__) from None
        finally:
            self._give(budget, connection, reusable)

    def _after_silence(self, connection: Any) -> None:
        """The server said nothing for ``_wait_s``: find out why, from a fresh connection.

        Raises ``MySqlClientTimeout`` when our session is still running the query (it
        is killed: the server did not stop it), ``ConnectionLost`` (refused) when no
        fresh connection can be had or it does not answer either; returns when the
        session is idle or gone (the answer was lost on the way), for the caller to retry.
        """
        import pymysql

        thread_id = getattr(connection, "server_thread_id", None)
        _force_close(connection)
        try:
            probe = self._connect()
        except (ConnectionLost, DatabaseUnavailable):
            raise _lost(f"no answer within {self._wait_s:g} s, and no new connection", refused=True) from None
        try:
            with probe.cursor(pymysql.cursors.Cursor) as cursor:
                cursor.execute("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s",
                               (int(thread_id[0]) if thread_id else -1,))
                row = cursor.fetchone()
                if row is None or str(row[0]).lower() == "sleep":
                    return
                cursor.execute(f"KILL {int(thread_id[0])}")  # our own session, which we have closed
        except pymysql.err.MySQLError as error:
            if _is_lost(error):  # it lets us in but does not answer: no better than refusing
                raise _lost(f"no answer within {self._wait_s:g} s, even on a new connection", refused=True) from None
            return  # it answers (with an error: no PROCESS view, no KILL): retry as after a lost connection
        finally:
            _force_close(probe)
        raise MySqlClientTimeout(f"the server did not stop the query at its limit; no answer within "
                                 f"{self._wait_s:g} s, the query was killed")

    def _is_timeout(self, error: BaseException) -> bool:
        if isinstance(error, MySqlClientTimeout):
            return True
        return isinstance(error, MySqlQueryError) and error.code in _TIMEOUT_CODES

    def _error_code(self, error: BaseException) -> Optional[str]:
        code = getattr(error, "code", None) if isinstance(error, MySqlQueryError) else _error_code(error)
        return f"MySQL error {code}" if isinstance(code, int) else None

    def _known_text(self) -> str:
        return str(self._params["database"])  # MySQL names tables as 'database.table' in messages
