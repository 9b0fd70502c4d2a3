"""Execution-result equivalence, with test-suite-sql-eval semantics.

Two queries are judged equivalent on a database when their results are the same bag of rows
(the same list of rows when order matters), up to a permutation of columns — the semantics of
``result_eq`` in taoyds/test-suite-sql-eval (``exec_eval.py``). Values are first put in a
canonical form (:func:`canonical_value`) so that the same answer coming from different
database drivers compares and hashes equally: PostgreSQL's ``Decimal('1.10')`` and SQLite's
``1.1``, ``datetime.date(2020, 1, 1)`` and ``'2020-01-01'``, ``True`` and ``1``. The canonical
form and :func:`result_hash` are defined in ``adapters.db.results``, beside the executors that
hash every result (adapters import nothing from ``transforms``), and re-exported here.

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

from collections import Counter
from collections.abc import Iterable, Sequence

from sqlglot import exp

from adapters.db.results import DECIMAL_PLACES, NAN, SIGNIFICANT_DIGITS, canonical_row, canonical_value, result_hash

__all__ = [
    "DECIMAL_PLACES",
    "MAX_PERMUTED_COLUMNS",
    "MAX_SEARCH_STEPS",
    "NAN",
    "SIGNIFICANT_DIGITS",
    "canonical_row",
    "canonical_value",
    "has_top_level_order_by",
    "result_hash",
    "results_match",
]

#: Partial column assignments :func:`results_match` checks before it gives up (answers False).
MAX_SEARCH_STEPS = 2_000
#: Results wider than this are compared without permuting columns.
MAX_PERMUTED_COLUMNS = 64


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
