"""PostgreSQL ``csvlog`` files: one pair per logged statement, failures marked.

PostgreSQL 15 writes 26 columns (:data:`CSVLOG_COLUMNS`); logs of 12–14 (23–26
columns) read the same. Statements come from ``message`` (English server messages,
``lc_messages`` C or en):

* ``statement: <sql>`` (``log_statement``),
* ``execute <name>: <sql>`` (extended protocol; ``DETAIL: parameters: …`` is kept),
* ``duration: <ms> ms  statement: <sql>`` / ``… execute <name>: <sql>``
  (``log_min_duration_statement``), which also give ``extra["duration_ms"]``;
  ``parse``/``bind`` steps are skipped (their ``execute`` is the statement), and a
  bare ``duration: <ms> ms`` line (``log_duration``) adds its time to the session's
  statement just before it.

An ``ERROR``/``FATAL``/``PANIC`` line whose ``query`` column is the session's
pending statement marks that statement failed (``success=False``, with
``error``/``sql_state`` in ``extra``); an error line whose query was never logged
as a statement yields that query as a failed pair of its own. A statement logged
by ``log_statement`` is held until its session logs a next line that decides
(another statement, a duration, an error) or the file ends, so pairs come out in
the order they are settled. ``db_id`` is ``database_name``. A simple-protocol
query holding several statements stays one pair (as logged).
"""

from __future__ import annotations

import collections
import re
from typing import BinaryIO, Iterator, Optional, Union

from transforms.formats.shared import MAX_SQL_BYTES, csv_rows, excerpt, over_bytes, text_problem, too_long
from transforms.formats.types import RawPair, ReadReject

#: The csvlog columns of PostgreSQL 15, in order.
CSVLOG_COLUMNS = (
    "log_time", "user_name", "database_name", "process_id", "connection_from", "session_id",
    "session_line_num", "command_tag", "session_start_time", "virtual_transaction_id", "transaction_id",
    "error_severity", "sql_state_code", "message", "detail", "hint", "internal_query", "internal_query_pos",
    "context", "query", "query_pos", "location", "application_name", "backend_type", "leader_pid", "query_id",
)
#: Fewest columns a csvlog line has (PostgreSQL 12 and earlier).
MIN_COLUMNS = 23
#: Sessions whose last statement is still undecided; past this, the oldest is settled as a success.
MAX_PENDING_SESSIONS = 10_000
_FAILURES = frozenset({"ERROR", "FATAL", "PANIC"})
_STATEMENT = re.compile(
    r"(?:duration: (?P<duration>\d+(?:\.\d+)?) ms  )?"
    r"(?:(?P<step>parse|bind) [^:]*|statement|execute (?P<name>[^:\s]+(?:/[^:\s]+)?)): ",
)
_DURATION_ONLY = re.compile(r"duration: (?P<duration>\d+(?:\.\d+)?) ms\s*")


def parse_pg_csvlog(
    stream: BinaryIO, path: str, *, max_sql_bytes: int = MAX_SQL_BYTES
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` (source ``log``, origin ``path:line`` of the statement) per logged statement.

    ``extra`` has ``log_time``, ``user_name``, ``session_id``, ``application_name``,
    ``duration_ms``, ``prepared_statement``, ``parameters`` and ``query_id`` when the
    log gives them, and ``error`` / ``sql_state`` for failures. A log line over
    ``max_sql_bytes`` is ``sql_too_long`` (never held whole).
    """
    return _parse_pg_csvlog(stream, path, max_sql_bytes)


def _parse_pg_csvlog(stream: BinaryIO, path: str, max_sql_bytes: int) -> Iterator[Union[RawPair, ReadReject]]:
    pending: collections.OrderedDict[str, RawPair] = collections.OrderedDict()
    for line, row in csv_rows(stream, path, max_sql_bytes):
        origin = f"{path}:{line}"
        if isinstance(row, ReadReject):
            yield row
            continue
        if len(row) < MIN_COLUMNS:
            yield ReadReject(origin, "wrong_field_count", f"expected at least {MIN_COLUMNS} fields, got {len(row)}")
            continue
        entry = dict(zip(CSVLOG_COLUMNS, row))
        session = entry["session_id"] or entry["process_id"]
        severity = entry["error_severity"]
        message = entry["message"]

        if severity in _FAILURES:
            query = entry.get("query", "").strip()
            held = pending.pop(session, None)
            failure = {"error": message, "sql_state": entry["sql_state_code"]}
            if held is not None and query and held.sql == query:
                yield _settled(held, success=False, **failure)
                continue
            if held is not None:
                yield held
            if query:
                pair = _pair(entry, query, origin, {}, max_sql_bytes)
                yield pair if isinstance(pair, ReadReject) else _settled(pair, success=False, **failure)
            continue

        match = _STATEMENT.match(message)
        if match is None:
            bare = _DURATION_ONLY.fullmatch(message)
            if bare and session in pending:
                yield _settled(pending.pop(session), success=True, duration_ms=bare.group("duration"))
            continue
        if match.group("step"):
            continue
        held = pending.pop(session, None)
        if held is not None:
            yield held
        extra = {}
        if match.group("duration"):
            extra["duration_ms"] = match.group("duration")
        if match.group("name"):
            extra["prepared_statement"] = match.group("name")
        if entry["detail"].startswith("parameters: "):
            extra["parameters"] = entry["detail"][len("parameters: "):]
        pair = _pair(entry, message[match.end():].strip(), origin, extra, max_sql_bytes)
        if isinstance(pair, ReadReject) or match.group("duration"):
            yield pair  # a duration is logged when the statement has finished: it succeeded
            continue
        pending[session] = pair
        if len(pending) > MAX_PENDING_SESSIONS:
            yield pending.popitem(last=False)[1]
    yield from pending.values()


def _pair(entry: dict[str, str], sql: str, origin: str, extra: dict[str, str],
          max_sql_bytes: int) -> Union[RawPair, ReadReject]:
    size = over_bytes(sql, max_sql_bytes)
    if size is not None:
        return too_long(origin, size, max_sql_bytes, sql)
    problem = text_problem(sql, origin, "message")
    if problem:
        return problem
    if not sql:
        return ReadReject(origin, "empty_sql", excerpt(entry["message"]))
    for key in ("log_time", "user_name", "session_id", "application_name"):
        value = entry.get(key, "")
        if value and text_problem(value, origin, key) is None:
            extra[key] = value
    query_id = entry.get("query_id", "")
    if query_id not in ("", "0"):
        extra["query_id"] = query_id
    db_id: Optional[str] = entry["database_name"] or None
    if db_id is not None and text_problem(db_id, origin, "database_name"):
        db_id = None
    return RawPair(sql, None, (), True, db_id, "log", origin, extra)


def _settled(pair: RawPair, success: bool, **extra: str) -> RawPair:
    clean = {k: excerpt(v, 1000) for k, v in extra.items() if v}
    return pair._replace(success=success, extra={**pair.extra, **clean})
