"""DuckDB executor: a ``read_only=True`` database, a cursor per thread, interrupted at the deadline."""

from __future__ import annotations

import threading
from typing import Any, Sequence
from urllib.parse import urlsplit

from adapters.db.base import BadDatabaseSetting, DatabaseUnavailable, Executor, fetch_capped


class _Deadline(Exception):
    pass


class DuckDbExecutor(Executor):
    """One read-only DuckDB connection; each thread runs on its own cursor.

    A timer calls ``interrupt()`` on the cursor at the deadline, which stops the
    running query inside DuckDB (not just the waiting Python thread). Rows are kept
    up to ``max_rows`` and ``max_result_bytes``; DuckDB itself computes the result
    before the first fetch returns (1,000 rows of 1 MB peak near 1 GB with two
    rows kept), which the time limit bounds, not the byte cap.
    """

    dialect = "duckdb"

    def __init__(self, url: str, **kwargs: Any):
        super().__init__(url, **kwargs)
        path = urlsplit(url).path
        self.path = path[1:] if path.startswith("/") else path
        if not self.path:
            raise BadDatabaseSetting(f"no file path in database URL {url!r} (expected duckdb:///path/to/file.duckdb)")
        self._connection = None
        self._local = threading.local()
        self._lock = threading.Lock()

    def _root(self):
        with self._lock:
            if self._connection is None:
                import duckdb

                try:
                    self._connection = duckdb.connect(self.path, read_only=True)
                    self._connection.execute("SET enable_external_access = false")
                except Exception as error:  # duckdb raises its own IOException etc.
                    raise DatabaseUnavailable(f"cannot open DuckDB database {self.path!r} read-only: {error}") from error
            return self._connection

    def _cursor(self):
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._root().cursor()
            self._local.cursor = cursor
        return cursor

    def check(self) -> None:
        self._cursor().execute("SELECT 1").fetchall()

    def _run(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        cursor = self._cursor()
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            cursor.interrupt()

        timer = threading.Timer(self.timeout_s, interrupt)
        timer.daemon = True
        timer.start()
        try:
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            rows, truncated = fetch_capped(cursor, self.max_rows, max_bytes=self.max_result_bytes)
            return columns, rows, truncated
        except Exception as error:
            if fired.is_set():
                raise _Deadline(f"query exceeded {self.timeout_s:g} s") from error
            raise
        finally:
            timer.cancel()

    def _is_timeout(self, error: BaseException) -> bool:
        return isinstance(error, _Deadline)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        self._local = threading.local()
