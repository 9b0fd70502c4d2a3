"""PostgreSQL ``pg_stat_statements``: one pair per statement, ``frequency`` = how often it ran.

The view is where most teams' query history actually lives: one row per distinct
statement (per user and database) with its constants replaced by ``$1``, ``$2``, …
and how often it ran (``calls``). Instantiate fills the placeholders with real
values later; this module only reads rows.

Two sources share :func:`stat_row_to_pair`:

* an export of the view as CSV (with a header) or JSON/JSONL — ``psql -c "\\copy
  (SELECT query, calls, mean_exec_time, rows FROM pg_stat_statements) TO 'x.csv'
  CSV HEADER"`` — read by :func:`parse_pg_stat_statements` (``--sql_logs_format
  pg_stat_statements``; a CSV whose header has ``query`` and ``calls`` is recognised
  without it);
* the live view (``--sql_logs pg_stat_statements`` with ``--database``), read by
  ``transforms.ingest.read_stat_statements``.

Columns: ``query`` (required), ``calls`` (a non-negative integer; absent means 1),
``mean_exec_time`` (``mean_time`` before PostgreSQL 13), ``rows``; also kept when
present: ``queryid``, ``total_exec_time``, ``rolname``/``userid``, ``toplevel``.
``db_id`` is ``datname`` (or the column named by ``db_id_field``). ``extra`` holds
``frequency`` (``max(calls, 1)``; the reader copies it into ``Record.frequency``),
``calls``, ``mean_exec_time_ms``, ``rows`` and the kept columns. A row whose text is
``<insufficient privilege>`` (the reading role may not see other users' queries)
is rejected as ``insufficient_privilege``.
"""

from __future__ import annotations

import io
import json
from typing import Any, BinaryIO, Iterator, Mapping, Optional, Union

from transforms.formats.jsonl import iter_json_values
from transforms.formats.shared import MAX_SQL_BYTES, csv_rows, excerpt, has_bad_unicode, stringify, text_problem
from transforms.formats.types import RawPair, ReadReject

#: Columns copied into ``extra`` (under these names) when present.
KEPT_COLUMNS = {"queryid": "queryid", "total_exec_time": "total_exec_time_ms", "total_time": "total_exec_time_ms",
                "rolname": "user_name", "userid": "userid", "toplevel": "toplevel"}
_MEAN_COLUMNS = ("mean_exec_time", "mean_time")
_HIDDEN = "<insufficient privilege>"


def looks_like_pg_stat_statements(header: bytes) -> bool:
    """Whether the first line of a CSV or JSON file names the view's ``query`` and ``calls`` columns.

    >>> looks_like_pg_stat_statements(b'query,calls,mean_exec_time,rows\\n'), looks_like_pg_stat_statements(b'sql,n\\n')
    (True, False)
    """
    first = header.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").strip()
    if first.startswith("{"):
        try:
            keys = set(json.loads(first))
        except (ValueError, TypeError):
            return False
    else:
        keys = {c.strip().strip('"').lower() for c in first.split(",")}
    return {"query", "calls"} <= keys


def _count(value: Any) -> Optional[int]:
    """A non-negative integer from a JSON number or a CSV cell (``"12"``, ``"12.0"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            return None
        if isinstance(number, float):
            return int(number) if number.is_integer() and number >= 0 else None
        return number if number >= 0 else None
    return None


def _number(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return repr(float(value)) if not isinstance(value, int) else str(value)
    except (TypeError, ValueError):
        return None


def frequency_of(extra) -> int:
    """``Record.frequency`` from a pair's ``extra['frequency']`` (1 when absent or not a positive integer).

    Any log format whose records carry a ``frequency`` field gets it this way too.

    >>> frequency_of({"frequency": "42"}), frequency_of({}), frequency_of({"frequency": "x"})
    (42, 1, 1)
    """
    try:
        value = int(str(extra.get("frequency", "1")).strip())
    except ValueError:
        return 1
    return value if value > 0 else 1


def stat_row_to_pair(row: Mapping[str, Any], origin: str, db_id_field: Optional[str] = None) -> Union[RawPair, ReadReject]:
    """One view row (column name → value) as a pair, or why it cannot be one.

    >>> stat_row_to_pair({"query": "SELECT * FROM t WHERE id = $1", "calls": 42, "mean_exec_time": 0.5,
    ...                   "rows": 42, "datname": "shop"}, "v#1").extra
    {'frequency': '42', 'calls': '42', 'mean_exec_time_ms': '0.5', 'rows': '42'}
    """
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    query = lowered.get("query")
    if query is None:
        return ReadReject(origin, "missing_field:query", "no 'query' column")
    if not isinstance(query, str):
        return ReadReject(origin, "wrong_type:query", f"{type(query).__name__}: {excerpt(query)}")
    problem = text_problem(query, origin, "query")
    if problem:
        return problem
    query = query.strip()
    if not query:
        return ReadReject(origin, "empty_sql", "'query' is blank")
    if query == _HIDDEN:
        return ReadReject(origin, "insufficient_privilege",
                          "the reading role may not see this statement (grant pg_read_all_stats)")
    extra: dict[str, str] = {}
    raw_calls = lowered.get("calls")
    calls = 1 if raw_calls in (None, "") else _count(raw_calls)
    if calls is None:
        return ReadReject(origin, "wrong_type:calls", f"{type(raw_calls).__name__}: {excerpt(raw_calls)}")
    extra["frequency"] = str(max(calls, 1))
    if raw_calls not in (None, ""):
        extra["calls"] = str(calls)
    for name in _MEAN_COLUMNS:
        mean = _number(lowered.get(name)) if lowered.get(name) not in (None, "") else None
        if mean is not None:
            extra["mean_exec_time_ms"] = mean
            break
    rows = _count(lowered.get("rows")) if lowered.get("rows") not in (None, "") else None
    if rows is not None:
        extra["rows"] = str(rows)
    for column, key in KEPT_COLUMNS.items():
        text = stringify(lowered.get(column))
        if text not in (None, "") and not has_bad_unicode(text):
            extra.setdefault(key, text)
    db_field = (db_id_field or "datname").lower()
    db_id = stringify(lowered.get(db_field))
    if db_id is not None and (has_bad_unicode(db_id) or not db_id.strip()):
        db_id = None
    return RawPair(query, None, (), True, db_id.strip() if db_id else None, "log", origin, extra)


def parse_pg_stat_statements(
    stream: BinaryIO, path: str, db_id_field: Optional[str] = None, *, max_sql_bytes: int = MAX_SQL_BYTES
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per row of a CSV (header row) or JSON/JSONL export of the view.

    A row (CSV line or field, JSON line or element) over ``max_sql_bytes`` is ``sql_too_long``.
    """
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)
    head = buffered.peek(64)[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return _json_rows(buffered, path, db_id_field, max_sql_bytes)
    return _csv_rows(buffered, path, db_id_field, max_sql_bytes)


def _json_rows(stream, path, db_id_field, max_sql_bytes):
    for item in iter_json_values(stream, path, max_sql_bytes):
        if isinstance(item, ReadReject):
            yield item
        elif not isinstance(item.value, dict):
            yield ReadReject(item.origin, "wrong_type:record", f"{type(item.value).__name__}: {excerpt(item.value)}")
        else:
            yield stat_row_to_pair(item.value, item.origin, db_id_field)


def _csv_rows(stream, path, db_id_field, max_sql_bytes):
    header = None
    for line, row in csv_rows(stream, path, max_sql_bytes):
        origin = f"{path}:{line}"
        if isinstance(row, ReadReject):
            yield row
            continue
        if header is None:
            header = [name.strip().lower() for name in row]
            if "query" not in header:
                yield ReadReject(path, "missing_column:query", f"header has {header}")
                return
            continue
        if len(row) != len(header):
            yield ReadReject(origin, "wrong_field_count", f"expected {len(header)} fields, got {len(row)}")
            continue
        yield stat_row_to_pair(dict(zip(header, row)), origin, db_id_field)
