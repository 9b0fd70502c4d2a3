"""SQLite executor: a read-only URI connection per thread, interrupted at the deadline."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any, Sequence
from urllib.parse import quote, urlsplit

from adapters.db.base import DatabaseUnavailable, Executor, UserError, fetch_capped


class _Deadline(Exception):
    pass


def sqlite_path(url: str) -> str:
    """The file path in ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    path = urlsplit(url).path
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs/x.db -> /abs/x.db
    if not path:
        raise UserError(f"no file path in database URL {url!r} (expected sqlite:///path/to/file.db)")
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
            connection.execute("PRAGMA query_only = 1")
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as error:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path!r} read-only: {error}") from error
        return connection

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
            rows, truncated = fetch_capped(cursor, self.max_rows)
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
