"""What a query gave, in a form that is equal across databases and drivers.

The executors (``adapters.db.base.Executor.execute``) describe each query's outcome as an
``Execution`` whose ``result_hash`` is computed here, so the hash depends on the answer and
not on the driver: PostgreSQL's ``Decimal('1.10')`` and SQLite's ``1.1``,
``datetime.date(2020, 1, 1)`` and ``'2020-01-01'``, ``True`` and ``1`` hash equally. These are
plain functions over Python values (no SQL, no Beam) and live with the executors because the
executors need them and adapters import nothing from ``transforms``; ``transforms.kit.equivalence``
compares results with the same canonical values (and re-exports these names).

Example:
    >>> from decimal import Decimal
    >>> result_hash(1, [(1,), (2,)], ordered=False) == result_hash(1, [(2.0,), (Decimal(1),)], ordered=False)
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple, Optional

__all__ = [
    "DECIMAL_PLACES",
    "NAN",
    "SIGNIFICANT_DIGITS",
    "Execution",
    "canonical_row",
    "canonical_value",
    "result_hash",
]


class Execution(NamedTuple):
    """What running the normalized SQL against its database gave.

    ``result_hash`` is a canonical multiset hash of the (capped) rows, or an ordered
    hash when the query has a top-level ORDER BY, so equal results hash equally
    across databases and drivers. The record model has its own ``Execution`` with the
    same fields (``transforms.core.record``); the execute stage copies this one into it.
    """

    status: str
    row_count: Optional[int] = None
    columns: Sequence[str] = ()
    result_hash: Optional[str] = None
    error: Optional[str] = None
    elapsed_ms: Optional[float] = None
    truncated: bool = False


#: Significant digits kept from a float or non-integral Decimal (absorbs binary float noise:
#: ``0.1 + 0.2`` becomes ``0.3``).
SIGNIFICANT_DIGITS = 15
#: Decimal places kept after that (absolute tolerance 5e-7: ``1.0000001`` equals ``1.0``).
DECIMAL_PLACES = 6


class _NotANumber:
    """The canonical NaN: unlike ``float('nan')`` it equals itself, so results stay reflexive.

    >>> NAN == NAN, hash(NAN) == hash(_NotANumber()), repr(NAN)
    (True, True, 'NaN')
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NotANumber)

    def __hash__(self) -> int:
        return 0x7FF8  # any constant: every NaN is the same value

    def __repr__(self) -> str:
        return "NaN"


#: Canonical form of every NaN (float or Decimal).
NAN = _NotANumber()

def _canonical_float(text_or_value: float | str) -> object:
    """Round a finite number to SIGNIFICANT_DIGITS then DECIMAL_PLACES; integral → int.

    >>> _canonical_float(0.1 + 0.2), _canonical_float(2.0), _canonical_float("1.10")
    (0.3, 2, 1.1)
    """
    value = round(float(format(float(text_or_value), f".{SIGNIFICANT_DIGITS}g")), DECIMAL_PLACES)
    if value.is_integer():
        return int(value)
    return value


def _canonical_timedelta(value: dt.timedelta) -> str:
    """Format a duration as ``[-]H:MM:SS[.ffffff]``, the text of a MySQL TIME / a time of day.

    >>> _canonical_timedelta(dt.timedelta(hours=12, minutes=30)), _canonical_timedelta(dt.timedelta(hours=-1))
    ('12:30:00', '-01:00:00')
    """
    total_us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total_us < 0 else ""
    seconds, micros = divmod(abs(total_us), 1_000_000)
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    text = f"{sign}{hours:02d}:{mins:02d}:{secs:02d}"
    return f"{text}.{micros:06d}" if micros else text


def _jsonable(value: object) -> object:
    """Canonicalize a value for embedding in canonical JSON (dict keys become strings).

    >>> _jsonable({"b": [Decimal("1.50"), None], "a": True})
    {'b': [1.5, None], 'a': 1}
    """
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    canonical = canonical_value(value)
    return repr(canonical) if isinstance(canonical, _NotANumber) else canonical


def canonical_value(value: object) -> object:
    """The hashable, driver-independent form of one result value.

    * ``None`` stays ``None`` (SQL NULL); ``bool`` becomes ``int``; ``int`` stays;
    * ``float`` and ``Decimal`` are rounded to 15 significant digits, then 6 decimal places,
      and become ``int`` when integral (``Decimal('2.000')``, ``2.0`` and ``2`` agree);
      integral Decimals are kept exactly; NaN becomes :data:`NAN`; ±infinity stays a float;
    * ``datetime`` becomes ISO text with a space separator (``'2020-01-01 10:00:00'``, the
      text SQLite stores), timezone-aware ones converted to UTC first; ``date`` and ``time``
      become ISO text; ``timedelta`` becomes ``'H:MM:SS'`` text (MySQL returns TIME so);
    * ``bytes``/``bytearray``/``memoryview`` become ``'\\\\x'`` + hex (PostgreSQL's bytea text);
    * ``UUID`` becomes its text; ``str`` stays as is (case- and space-sensitive);
    * ``list``/``tuple``/``dict`` (JSON, arrays, composites) become canonical JSON text with
      sorted keys and canonical members;
    * anything else becomes ``str(value)``.

    Example:
        >>> canonical_value(Decimal("1.10")) == canonical_value(1.1), canonical_value(True)
        (True, 1)
        >>> canonical_value(dt.date(2020, 1, 31)), canonical_value(b"\\x01\\xff")
        ('2020-01-31', '\\\\x01ff')
        >>> canonical_value({"b": 1, "a": [1.0, None]})
        '{"a":[1,null],"b":1}'
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return NAN
        return value if math.isinf(value) else _canonical_float(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return NAN
        if value.is_infinite():
            return float(value)
        if value == value.to_integral_value():
            return int(value)
        return _canonical_float(format(value, f".{SIGNIFICANT_DIGITS}g"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _canonical_timedelta(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def canonical_row(row: Sequence[object]) -> tuple[object, ...]:
    """The row with every value canonicalized.

    >>> canonical_row((Decimal("3.50"), None, True))
    (3.5, None, 1)
    """
    return tuple(canonical_value(v) for v in row)


def _row_key(row: tuple[object, ...]) -> str:
    """Stable text of a canonical row: ``repr`` tells ``1`` from ``'1'`` and ``None`` from ``'None'``.

    >>> _row_key((1, "1", None))
    "(1, '1', None)"
    """
    return repr(row)


def result_hash(columns: int, rows: Iterable[Sequence[object]], ordered: bool) -> str:
    """A stable 32-hex-digit digest of a result, equal for equal canonical results.

    The digest covers the column count, whether order was kept, and the canonical rows: in
    their order when ``ordered``, else as a multiset (duplicates count). It is not invariant
    under column permutation (:func:`results_match` is): equal hashes imply matching results,
    not the converse.

    Raises:
        ValueError: a row does not have ``columns`` values.

    Example:
        >>> result_hash(2, [(1, "a"), (2, "b")], ordered=False) == result_hash(2, [(2, "b"), (1.0, "a")], ordered=False)
        True
        >>> result_hash(2, [(1, "a"), (2, "b")], ordered=True) == result_hash(2, [(2, "b"), (1, "a")], ordered=True)
        False
        >>> len(result_hash(0, [], ordered=False))
        32
    """
    keys = []
    for row in rows:
        if len(row) != columns:
            raise ValueError(f"row has {len(row)} values, expected {columns}")
        keys.append(_row_key(canonical_row(row)))
    if not ordered:
        keys.sort()
    digest = hashlib.sha256()
    digest.update(f"sqlpairs.result.v1|{columns}|{'ordered' if ordered else 'bag'}".encode())
    for key in keys:
        digest.update(b"\n")
        digest.update(key.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
