"""The executor contract: run one read-only query, bounded in time and rows.

Like Beam's ``ModelHandler``, the contract is small so that every database is one
class and the Execute transform never knows which it talks to. An executor is
built on the worker (``DoFn.setup``), is safe to call from several threads at
once, and is closed in ``teardown``.

Safety does not rest on parsing alone: every executor enforces read-only access in
the database session itself (a read-only connection or transaction that is always
rolled back), and a time limit that really interrupts the query.
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import UserError
from pipeline.record import Execution
from transforms.equivalence import result_hash


#: ``--max_result_bytes``' default: result rows kept per query, measured by ``row_bytes``.
DEFAULT_MAX_RESULT_BYTES = 16 * 1024 * 1024


def row_bytes(row: Sequence[Any]) -> int:
    """About how many bytes a fetched row holds: the length of each value's text, plus one per value.

    Cheap and deterministic (the same row always measures the same), so a result cut
    at ``max_result_bytes`` is cut at the same row on every run.

    >>> row_bytes((1, "abc", None, b"xy"))
    10
    """
    size = 0
    for value in row:
        if value is None:
            size += 1
        elif isinstance(value, (str, bytes, bytearray, memoryview)):
            size += len(value) + 1
        else:
            size += len(str(value)) + 1
    return size


class DatabaseUnavailable(Exception):
    """The database could not be reached (at start, or after bounded reconnects)."""


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """Remove passwords from any URL or libpq key/value text inside ``text``.

    >>> redact("postgresql://bob:s3cret@db:5432/x failed")
    'postgresql://bob:***@db:5432/x failed'
    >>> redact("password=s3cret host=db")
    'password=*** host=db'
    """
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)


def display_url(url: str) -> str:
    """The URL with any password removed, for messages and the report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


class Executor:
    """Runs single read-only queries against one database.

    Subclasses implement ``_run`` (return columns, rows and whether the cap cut the
    result) and may override ``dialect``; the base class turns results and errors
    into an ``Execution`` with a canonical result hash and a redacted error.
    """

    #: sqlglot dialect name of this database.
    dialect: str = "postgres"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_rows: int = 10000,
        max_connections: int = 4,
        password: Optional[str] = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ):
        self.url = url
        self.password = password
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.max_connections = max_connections
        self.max_result_bytes = max_result_bytes

    # -- to implement -------------------------------------------------------------
    def _run(self, sql: str) -> tuple[Sequence[str], list[Sequence[Any]], bool]:
        raise NotImplementedError

    def _is_timeout(self, error: BaseException) -> bool:
        return False

    def check(self) -> None:
        """Connect once and fail with ``DatabaseUnavailable`` (redacted) if the database is unreachable."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    # -- shared -----------------------------------------------------------------------
    def execute(self, sql: str, *, ordered: bool = False) -> Execution:
        """Run ``sql`` and describe what happened; never raises for a query's own failure."""
        started = time.perf_counter()
        try:
            columns, rows, truncated = self._run(sql)
        except DatabaseUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - every query failure becomes a status
            elapsed = (time.perf_counter() - started) * 1000.0
            status = "timeout" if self._is_timeout(error) else "error"
            message = redact(f"{type(error).__name__}: {error}".strip())
            return Execution(status=status, error=message[:500], elapsed_ms=round(elapsed, 3))
        elapsed = (time.perf_counter() - started) * 1000.0
        return Execution(
            status="ok",
            row_count=len(rows),
            columns=tuple(str(c) for c in columns),
            result_hash=result_hash(len(columns), rows, ordered=ordered),
            elapsed_ms=round(elapsed, 3),
            truncated=truncated,
        )

    def fetch_rows(self, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        """Columns and (capped) rows of a read-only query, for sampling values and schema hints.

        Unlike ``execute`` this raises on failure: callers sample from the user's
        database for their own purposes and decide what a failure means.
        """
        columns, rows, _ = self._run(sql)
        return [str(c) for c in columns], rows

    def __repr__(self) -> str:
        return f"{type(self).__name__}({display_url(self.url)!r})"


def fetch_capped(
    cursor: Any, max_rows: int, batch: int = 1000, max_bytes: Optional[int] = None
) -> tuple[list[Sequence[Any]], bool]:
    """Fetch at most ``max_rows`` rows (and ``max_bytes`` of them, by ``row_bytes``) with
    ``fetchmany``, and tell whether more were left.

    The row that would pass ``max_bytes`` is not kept: the result is ``truncated``.
    """
    rows: list[Sequence[Any]] = []
    size = 0
    while len(rows) < max_rows:
        chunk = cursor.fetchmany(min(batch, max_rows - len(rows)))
        if not chunk:
            return rows, False
        if max_bytes is None:
            rows.extend(chunk)
            continue
        for row in chunk:
            size += row_bytes(row)
            if size > max_bytes:
                return rows, True
            rows.append(row)
    return rows, bool(cursor.fetchmany(1))

