"""Execution-result canonicalization and equivalence, with test-suite-sql-eval semantics.

Two queries are judged equivalent on a database when their results are the same bag of rows
(the same list of rows when order matters), up to a permutation of columns — the semantics of
``result_eq`` in taoyds/test-suite-sql-eval (``exec_eval.py``). Values are first put in a
canonical form (:func:`canonical_value`) so that the same answer coming from different
database drivers compares and hashes equally: PostgreSQL's ``Decimal('1.10')`` and SQLite's
``1.1``, ``datetime.date(2020, 1, 1)`` and ``'2020-01-01'``, ``True`` and ``1``.

Differences from test-suite-sql-eval, all deliberate:

* the column-permutation search is deterministic: instead of sampling 20 random rows to
  prune candidate permutations, a gold column may only map to a predicted column holding the
  same multiset of values (the same sequence when order matters), and partial assignments
  are checked on the rows projected so far; neither ever prunes a valid permutation;
  identical predicted columns are tried once; the search gives up (answering False) after
  :data:`MAX_SEARCH_STEPS` steps, and results wider than :data:`MAX_PERMUTED_COLUMNS`
  columns are compared without permuting them;
* ``quick_rej`` compares bags of unordered rows (test-suite-sql-eval compares sets), a
  stronger necessary condition;
* values are canonicalized first (test-suite-sql-eval compares raw SQLite values).

Example:
    >>> from decimal import Decimal
    >>> results_match([(Decimal("1.10"), "a")], [("a", 1.1)], order_matters=False)
    True
    >>> result_hash(1, [(1,), (2,)], ordered=False) == result_hash(1, [(2.0,), (Decimal(1),)], ordered=False)
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlglot import exp

__all__ = [
    "MAX_PERMUTED_COLUMNS",
    "MAX_SEARCH_STEPS",
    "NAN",
    "canonical_row",
    "canonical_value",
    "has_top_level_order_by",
    "result_hash",
    "results_match",
]

#: Significant digits kept from a float or non-integral Decimal (absorbs binary float noise:
#: ``0.1 + 0.2`` becomes ``0.3``).
SIGNIFICANT_DIGITS = 15
#: Decimal places kept after that (absolute tolerance 5e-7: ``1.0000001`` equals ``1.0``).
DECIMAL_PLACES = 6
#: Partial column assignments :func:`results_match` checks before it gives up (answers False).
MAX_SEARCH_STEPS = 2_000
#: Results wider than this are compared without permuting columns.
MAX_PERMUTED_COLUMNS = 64


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


def _unordered_row(row: tuple[object, ...]) -> tuple[object, ...]:
    """The row's values in a fixed order (test-suite-sql-eval's ``unorder_row``).

    >>> _unordered_row(("b", 2, None, "a"))
    (None, 2, 'a', 'b')
    """
    return tuple(sorted(row, key=lambda v: (type(v).__name__, repr(v))))


def _quick_reject(gold: list[tuple[object, ...]], pred: list[tuple[object, ...]], order_matters: bool) -> bool:
    """True when no column permutation can make the results equal (rows compared unordered).

    >>> _quick_reject([(1, 2)], [(2, 1)], order_matters=True), _quick_reject([(1, 2)], [(1, 3)], order_matters=False)
    (False, True)
    """
    gold_unordered = [_unordered_row(r) for r in gold]
    pred_unordered = [_unordered_row(r) for r in pred]
    if order_matters:
        return gold_unordered != pred_unordered
    return Counter(gold_unordered) != Counter(pred_unordered)


def _column_signature(column: tuple[object, ...]) -> frozenset[tuple[object, int]]:
    """The multiset of a column's values: equal for a gold column and its image in pred.

    >>> _column_signature((1, 2, 1)) == _column_signature((2, 1, 1))
    True
    """
    return frozenset(Counter(column).items())


class _SearchExhausted(Exception):
    """Raised when the column-permutation search exceeds MAX_SEARCH_STEPS."""


def _columns_can_be_matched(
    gold_columns: list[tuple[object, ...]], pred_columns: list[tuple[object, ...]], order_matters: bool
) -> bool:
    """Whether some bijection gold column i → pred column p(i) makes the two results equal.

    When order matters, rows are equal exactly when every gold column equals its image as a
    sequence, so the multisets of columns are compared. Otherwise a backtracking search:
    gold column i may only map to a pred column with the same multiset of values; after each
    assignment, the bag of gold rows projected on the columns assigned so far must equal the
    bag of pred rows projected on their images (this prunes dead branches at depth two);
    identical pred columns are tried once. The search gives up (False) after
    :data:`MAX_SEARCH_STEPS` projections; results wider than :data:`MAX_PERMUTED_COLUMNS`
    are compared without permuting columns.

    >>> _columns_can_be_matched([(1, 2), ("a", "b")], [("b", "a"), (2, 1)], order_matters=False)
    True
    >>> _columns_can_be_matched([(1, 2), ("a", "b")], [("b", "a"), (2, 1)], order_matters=True)
    False
    """
    if order_matters:
        return Counter(gold_columns) == Counter(pred_columns)
    width = len(gold_columns)
    if width > MAX_PERMUTED_COLUMNS:
        return Counter(zip(*gold_columns)) == Counter(zip(*pred_columns))
    pred_signatures = [_column_signature(c) for c in pred_columns]
    gold_signatures = [_column_signature(c) for c in gold_columns]
    candidates = [[j for j, s in enumerate(pred_signatures) if s == g] for g in gold_signatures]
    # Most constrained gold columns first: fewer branches near the root.
    order = sorted(range(width), key=lambda i: len(candidates[i]))
    first_identical: dict[tuple[object, ...], int] = {}
    representative = [first_identical.setdefault(c, j) for j, c in enumerate(pred_columns)]
    rows = len(gold_columns[0])
    gold_projections: list[list[tuple[object, ...]]] = [[()] * rows]
    for i in order:
        gold_projections.append([p + (v,) for p, v in zip(gold_projections[-1], gold_columns[i])])
    gold_bags = [Counter(projection) for projection in gold_projections]
    used: set[int] = set()
    steps = 0

    def search(depth: int, pred_projection: list[tuple[object, ...]]) -> bool:
        nonlocal steps
        if depth == width:
            return True
        tried: set[int] = set()
        for j in candidates[order[depth]]:
            if j in used or representative[j] in tried:
                continue
            tried.add(representative[j])
            steps += 1
            if steps > MAX_SEARCH_STEPS:
                raise _SearchExhausted
            extended = [p + (v,) for p, v in zip(pred_projection, pred_columns[j])]
            if depth > 0 and Counter(extended) != gold_bags[depth + 1]:
                continue
            used.add(j)
            if search(depth + 1, extended):
                return True
            used.discard(j)
        return False

    try:
        return search(0, [()] * rows)
    except _SearchExhausted:
        return False


def results_match(
    gold_rows: Iterable[Sequence[object]], pred_rows: Iterable[Sequence[object]], order_matters: bool
) -> bool:
    """Whether two results are equal as bags of rows (lists when ``order_matters``), up to a
    permutation of the predicted columns, after :func:`canonical_value`.

    Two empty results match whatever their columns (as in test-suite-sql-eval: an empty
    result has no row to tell its width); results of different widths otherwise do not.

    Example:
        >>> results_match([(1, "a"), (1, "a")], [("a", 1), ("a", 1.0)], order_matters=False)
        True
        >>> results_match([(1,), (1,)], [(1,)], order_matters=False)
        False
        >>> results_match([(1,), (2,)], [(2,), (1,)], order_matters=True)
        False
    """
    gold = [canonical_row(r) for r in gold_rows]
    pred = [canonical_row(r) for r in pred_rows]
    if not gold and not pred:
        return True
    if len(gold) != len(pred):
        return False
    width = len(gold[0])
    if any(len(r) != width for r in gold) or any(len(r) != width for r in pred):
        return False
    if _quick_reject(gold, pred, order_matters):
        return False
    if width <= 1:
        return gold == pred if order_matters else Counter(gold) == Counter(pred)
    return _columns_can_be_matched(list(zip(*gold)), list(zip(*pred)), order_matters)


def has_top_level_order_by(tree: exp.Expr) -> bool:
    """Whether the outermost query orders its result (so row order is part of the answer).

    Looks at the ORDER BY of the outermost SELECT or set operation, or of a parenthesized
    query and what it wraps; ORDER BY inside subqueries, CTEs, window specifications or set
    operation branches does not count.

    Example:
        >>> import sqlglot
        >>> has_top_level_order_by(sqlglot.parse_one("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1"))
        True
        >>> has_top_level_order_by(sqlglot.parse_one("SELECT * FROM (SELECT a FROM t ORDER BY a) s"))
        False
    """
    node: exp.Expr | None = tree
    while node is not None:
        if node.args.get("order"):
            return True
        node = node.this if isinstance(node, (exp.Subquery, exp.Paren)) else None
    return False
