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
from typing import Any, Optional, Sequence, Union
from urllib.parse import urlsplit, urlunsplit

from adapters.db.results import Execution, result_hash


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


class BadDatabaseSetting(ValueError):
    """A ``--database`` URL or spec that cannot be used as given: the user must change it.

    Raised before anything connects (a malformed or unsupported URL, an unset password
    variable, a driver this installation lacks); its message is one line without the
    password. Adapters raise their own exceptions: ``pipeline.config`` reports this one as
    a ``UserError``.
    """


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)\S*@")  # to the last @: a raw @ in a password hides nothing


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


#: Characters of a database's error message kept in a record (the error class and code come on top).
MAX_ERROR_CHARS = 500
#: A message is cut to this before redaction, so that a huge quoted value costs no more than this.
_ERROR_SCAN_CHARS = 8192
#: Text a database puts between two quoted names (``column "a" of relation "b"``), kept as is.
_CONNECTORS = frozenset({" in ", " of relation ", " of table ", " for column ", " for key ", " and ", " or ",
                         ", ", " to ", " at ", " on ", " from ", " near "})
#: MySQL's names for the parts of a query, which it quotes (``Unknown column 'x' in 'field list'``).
_MESSAGE_WORDS = frozenset({"field list", "where clause", "on clause", "order clause", "group statement",
                            "having clause", "from clause", "window clause"})
#: A single quote between two letters is an apostrophe (``doesn't``), not the start of a value.
_SINGLE_QUOTE = re.compile(r"(?<![A-Za-z])'|'(?![A-Za-z])")
_IDENTIFIER = re.compile(r"[A-Za-z_][\w$]*\Z")


def _known(piece: str, known: str) -> bool:
    """Whether ``piece`` is text that ``known`` holds, or a dotted name (``db.table``) of names it holds.

    Parts of a dotted name must be identifiers found as whole words: digits found
    anywhere in a query would otherwise let ``10.0.0.12`` pass.
    """
    piece = piece.lower()
    if piece in known:
        return True
    parts = piece.split(".")
    return len(parts) > 1 and all(
        _IDENTIFIER.match(part) and re.search(rf"(?<![\w$]){re.escape(part)}(?![\w$])", known) for part in parts)


def _redact_between(message: str, quote: str, known: str) -> str:
    """``redact_values`` for one quote character."""
    parts = _SINGLE_QUOTE.split(message) if quote == "'" else message.split(quote)
    if len(parts) == 1:
        return message
    head, middle = parts[0], parts[1:]
    # An even number of quotes leaves text after the last one outside every value; an odd
    # number means the last value runs to the end (the database or our length cap cut it).
    tail = middle.pop() if len(parts) % 2 else None
    kept: list[str] = []
    for index, piece in enumerate(middle):
        if index % 2 == 0:  # a quoted value
            kept.append(piece if _known(piece, known) or piece in _MESSAGE_WORDS else "***")
        elif piece.lower() in known or piece in _CONNECTORS:  # text between two quoted values
            kept.append(piece)
        else:  # not the database's wording: quotes inside a value, which runs on to the last quote
            return head + quote + quote.join(kept) + quote + " ***" + (tail or "")
    return head + quote + quote.join(kept) + ("" if tail is None else quote + tail)


def redact_values(message: str, known: str) -> str:
    """Replace with ``***`` every quoted value in a database message that is not text from ``known``.

    Databases quote the offending value in their messages (``invalid input syntax for
    type integer: "<a password hash>"``, MariaDB's ``XPATH syntax error: '<a server
    path>'``), so an error can carry any data the query can read into the rejects
    file. Quoted text that ``known`` (the query's own text) holds is not new to anyone
    and stays, so that names in ``column "nme" does not exist`` or a syntax error's
    ``near '…'`` remain useful. A value with quotes inside it cannot pass for the
    message's own words: from the first text between two quoted parts that is neither
    the query's nor the database's wording (``_CONNECTORS``) to the last quote, all
    is redacted. (A query can still test a guess by naming it, as it can by its row count:
    this keeps data out of files, it does not hide it from the query.)

    >>> redact_values('invalid input syntax for type integer: "SCRAM-SHA-256$4096:abc"', "SELECT CAST(x AS INT)")
    'invalid input syntax for type integer: "***"'
    >>> redact_values("XPATH syntax error: '~/var/lib/mysql/'", "SELECT updatexml(1, 'x', 1)")
    "XPATH syntax error: '***'"
    >>> redact_values('column "nme" does not exist', "SELECT NME FROM t")
    'column "nme" does not exist'
    >>> redact_values("Table 'shop.nope' doesn't exist", "SELECT * FROM nope; shop")
    "Table 'shop.nope' doesn't exist"
    >>> redact_values("XPATH syntax error: '~10.0.0.12'", "SELECT 0x7e, '~10', 0, 12 -- 10.0.0.1")
    "XPATH syntax error: '***'"
    >>> redact_values("Unknown column 'x' in 'field list'", "SELECT x FROM t")
    "Unknown column 'x' in 'field list'"
    >>> redact_values('value: ""secret""', "SELECT quote_ident(pw)")
    'value: "" ***'
    >>> redact_values('column "nme" not found! Candidates: "name"', "SELECT nme FROM t")
    'column "nme" ***'
    >>> redact_values('cut short: "secre', "SELECT 1")
    'cut short: "***'
    """
    known = known.lower()
    for quote in ('"', "'", "`"):
        if quote in message:
            message = _redact_between(message, quote, known)
    return message


def error_text(kind: str, message: Union[str, Sequence[str]], known: str = "", code: Optional[str] = None) -> str:
    """What a record says about a failed query: the error class, the message without its
    data (``redact_values``, each part of a message on its own) or passwords
    (``redact``), on one line and at most ``MAX_ERROR_CHARS`` long, and the database's
    error code, kept whatever the cut.

    >>> error_text("InvalidTextRepresentation", 'invalid input syntax for type integer: "s3cret"',
    ...            "SELECT CAST(pw AS INT)", "SQLSTATE 22P02")
    'InvalidTextRepresentation: invalid input syntax for type integer: "***" (SQLSTATE 22P02)'
    >>> error_text("UndefinedColumn", ['column "nme" does not exist', '(hint: the column "artist.name")'],
    ...            "SELECT nme FROM artist")
    'UndefinedColumn: column "nme" does not exist (hint: the column "***")'
    >>> len(error_text("E", "x" * 10_000))
    503
    """
    parts = [message] if isinstance(message, str) else message
    text = " ".join(redact_values(" ".join(part[:_ERROR_SCAN_CHARS].split()), known) for part in parts)
    text = redact(text.strip())[:MAX_ERROR_CHARS].rstrip()
    text = f"{kind}: {text}" if text else kind
    return f"{text} ({code})" if code else text


def message_parts(error: BaseException) -> list[str]:
    """A database error's message, in the parts the driver keeps apart (redacted one by one).

    psycopg's diagnostics hold the primary message and the hint separately (the
    PostgreSQL executor re-raises a plain copy, whose context is the original): a
    quoted name in the hint must not make the primary message look like one long
    value. Other errors are one part.
    """
    for candidate in (error, error.__cause__, error.__context__):
        diag = getattr(candidate, "diag", None)
        primary = getattr(diag, "message_primary", None)
        if isinstance(primary, str) and primary:
            hint = getattr(diag, "message_hint", None)
            return [primary] + ([f"(hint: {hint})"] if isinstance(hint, str) and hint else [])
    return [str(error)]


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

    def _error_code(self, error: BaseException) -> Optional[str]:
        """The database's code for ``error`` (psycopg's ``sqlstate``), shown after its message."""
        sqlstate = getattr(error, "sqlstate", None)
        return f"SQLSTATE {sqlstate}" if isinstance(sqlstate, str) and sqlstate else None

    def _known_text(self) -> str:
        """Text besides the query that error messages may quote as is (a database name)."""
        return ""

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
            return Execution(status=status, error=self.describe_error(error, sql), elapsed_ms=round(elapsed, 3))
        elapsed = (time.perf_counter() - started) * 1000.0
        return Execution(
            status="ok",
            row_count=len(rows),
            columns=tuple(str(c) for c in columns),
            result_hash=result_hash(len(columns), rows, ordered=ordered),
            elapsed_ms=round(elapsed, 3),
            truncated=truncated,
        )

    def describe_error(self, error: BaseException, sql: str) -> str:
        """``error`` (raised by ``sql``) as a record may hold it: class, code, message without data."""
        kind = getattr(error, "kind", None) or type(error).__name__
        known = f"{sql}\n{self._known_text()}"
        return error_text(str(kind), message_parts(error), known, self._error_code(error))

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

