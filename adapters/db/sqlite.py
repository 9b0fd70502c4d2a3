"""SQLite executor: a read-only URI connection per thread, interrupted at the deadline.

A progress handler stops a query between steps of SQLite's virtual machine, but one
step can be a single function call that runs on its own: ``printf('%.*c', 900000000,
'x')``, ``zeroblob``, ``randomblob``, ``replace`` or ``group_concat`` building a huge
value ran for 30 s and took 10 GB. SQLite's own limits stop those: no string, blob or
row may be longer than ``max_result_bytes`` (a value that size could not be kept in a
result anyway), and the query text no longer either (:func:`limits`). Past the limit
SQLite raises "string or blob too big" at once. ``printf``/``format`` returns NULL
instead, but only after a loop as long as a ``%c``'s precision (4 s for 900 million):
where this SQLite does that (:func:`native_printf_loops`), they are replaced by a
wrapper that returns that NULL at once (:func:`printf_too_big`) and lets SQLite's own
``printf`` format everything else. What this does not bound is
a function that is slow without being large: ``instr`` on a 1 MB string and a 0.5 MB
needle that nearly matches takes ~20 s in one call.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
import threading
import time
from typing import Any, Callable, Optional, Sequence
from urllib.parse import quote, urlsplit

from adapters.db.base import BadDatabaseSetting, DatabaseUnavailable, Executor, fetch_capped


#: The smallest length limit, whatever ``max_result_bytes``: ordinary values must still be readable.
MIN_LENGTH_LIMIT = 1024 * 1024


class _Deadline(Exception):
    pass


def limits(max_result_bytes: int) -> dict[int, int]:
    """SQLite run-time limits (``Connection.setlimit``) for a result cap of ``max_result_bytes``.

    >>> limits(16 * 1024 * 1024)[sqlite3.SQLITE_LIMIT_LENGTH]
    16777216
    >>> limits(10)[sqlite3.SQLITE_LIMIT_SQL_LENGTH] == MIN_LENGTH_LIMIT
    True
    """
    length = min(max(int(max_result_bytes), MIN_LENGTH_LIMIT), 2**31 - 1)
    return {sqlite3.SQLITE_LIMIT_LENGTH: length, sqlite3.SQLITE_LIMIT_SQL_LENGTH: length}


# One printf conversion: flags, width (digits or *), precision (. digits or .*), length, type.
_PRINTF_SPEC = re.compile(r"%[-+ #0!,]*(\*|\d+)?(?:\.(\*|\d*))?l*(.)", re.DOTALL)
# Conversions whose precision can only shorten the output (the most characters of a string kept).
_SHORTENING = frozenset("szqQw")
_NUMBER_PREFIX = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _int_arg(value: Any) -> int:
    """The size a ``*`` argument can stand for, at least as large as SQLite would read it."""
    if isinstance(value, bool) or value is None:
        return int(bool(value))
    if isinstance(value, int):
        return abs(value)
    if isinstance(value, float):
        return abs(int(value)) if math.isfinite(value) else 2**63
    text = value.decode("latin-1") if isinstance(value, (bytes, bytearray, memoryview)) else str(value)
    match = _NUMBER_PREFIX.match(text)
    if match is None:
        return 0
    number = float(match.group(0))
    return abs(int(number)) if math.isfinite(number) else 2**63


def printf_too_big(args: Sequence[Any], limit: int) -> bool:
    """Whether ``printf(*args)`` asks for a width or precision whose output passes ``limit``.

    SQLite's own ``printf`` then returns NULL, but only after looping over every
    character it was asked for; the answer is the same, without the loop.

    >>> printf_too_big(("%.*c", 900000000, "x"), 16 * 2**20)
    True
    >>> printf_too_big(("%d|%.*s|%5.2f", 3_000_000_000, 900000000, "abc", 1.5), 16 * 2**20)
    False
    >>> printf_too_big(("%%%020000000d", 1), 16 * 2**20)
    True
    """
    if not args or not isinstance(args[0], str):
        return False
    rest = iter(args[1:])
    for width, precision, conversion in _printf_specs(args[0]):
        if conversion == "%" and width is None and precision is None:
            continue
        width_n = _int_arg(next(rest, 0)) if width == "*" else int(width or 0)
        precision_n = _int_arg(next(rest, 0)) if precision == "*" else int(precision or 0)
        if conversion != "%":
            next(rest, None)  # the value it formats
        if width_n > limit or (precision_n > limit and conversion not in _SHORTENING):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _printf_specs(format_text: str) -> tuple[tuple[Optional[str], Optional[str], str], ...]:
    """(width, precision, conversion) of each conversion in a printf format, parsed once per format."""
    return tuple(spec.groups() for spec in _PRINTF_SPEC.finditer(format_text))


@functools.lru_cache(maxsize=None)
def native_printf_loops() -> bool:
    """Whether this SQLite's own ``printf`` loops over a ``%c`` precision past the length limit.

    SQLite 3.40 does (4 s for 900 million, then NULL); a version that gives up at the
    limit needs no wrapper, whose call costs ~10 µs against ~2 µs. Measured once per
    process; a slow machine can only make it wrap when it need not, never the reverse.
    """
    probe = sqlite3.connect(":memory:")
    try:
        probe.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MIN_LENGTH_LIMIT)
        started = time.perf_counter()
        probe.execute("SELECT printf('%.*c', 20000000, 'x')").fetchone()
        return time.perf_counter() - started > 0.005
    finally:
        probe.close()


def _bounded_printf(helper: sqlite3.Connection, limit: int) -> Callable[..., Optional[str]]:
    """``printf`` for a connection: NULL at once past ``limit``, else SQLite's own on ``helper``."""
    statements = [f"SELECT printf({', '.join('?' * count)})" for count in range(128)]  # SQLite's most arguments

    def printf(*args: Any) -> Optional[str]:
        if not args or printf_too_big(args, limit):
            return None
        return helper.execute(statements[len(args)], args).fetchone()[0]

    return printf


def sqlite_path(url: str) -> str:
    """The file path in ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    path = urlsplit(url).path
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs/x.db -> /abs/x.db
    if not path:
        raise BadDatabaseSetting(f"no file path in database URL {url!r} (expected sqlite:///path/to/file.db)")
    return path


class SqliteExecutor(Executor):
    """Opens the file with ``mode=ro`` and ``PRAGMA query_only``; a progress handler enforces the timeout.

    SQLite connections are not shared between threads, so each thread gets its own.
    """

    dialect = "sqlite"

    def __init__(self, url: str, **kwargs: Any):
        super().__init__(url, **kwargs)
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{quote(self.path)}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            for category, limit in limits(self.max_result_bytes).items():
                connection.setlimit(category, min(limit, connection.getlimit(category)))
            if native_printf_loops():
                self._wrap_printf(connection)
            connection.execute("PRAGMA query_only = 1")
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as error:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path!r} read-only: {error}") from error
        return connection

    def _wrap_printf(self, connection: sqlite3.Connection) -> None:
        """Replace ``printf``/``format`` on ``connection`` by the bounded wrapper (see the module's doc)."""
        helper = sqlite3.connect(":memory:", check_same_thread=False)  # formats for the wrapper
        helper.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, connection.getlimit(sqlite3.SQLITE_LIMIT_LENGTH))
        printf = _bounded_printf(helper, connection.getlimit(sqlite3.SQLITE_LIMIT_LENGTH))
        for name in ("printf", "format"):
            connection.create_function(name, -1, printf, deterministic=True)
        with self._lock:
            self._connections.append(helper)  # closed with the others

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def check(self) -> None:
        self._connection()

    def _run(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        connection = self._connection()
        deadline = time.monotonic() + self.timeout_s

        def past_deadline() -> int:
            return 1 if time.monotonic() > deadline else 0

        connection.set_progress_handler(past_deadline, 1000)
        try:
            cursor = connection.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            rows, truncated = fetch_capped(cursor, self.max_rows, max_bytes=self.max_result_bytes)
            cursor.close()
            return columns, rows, truncated
        except sqlite3.OperationalError as error:
            if "interrupted" in str(error) and time.monotonic() > deadline:
                raise _Deadline(f"query exceeded {self.timeout_s:g} s") from error
            raise
        finally:
            connection.set_progress_handler(None, 0)
            if connection.in_transaction:
                connection.rollback()

    def _is_timeout(self, error: BaseException) -> bool:
        return isinstance(error, _Deadline)

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()
