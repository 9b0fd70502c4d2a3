"""Spider hardness ('easy' | 'medium' | 'hard' | 'extra') of a parsed query.

The levels are the ones of the Spider benchmark, computed the way
``Evaluator.eval_hardness`` does in test-suite-sql-eval's ``evaluation.py``
(repository taoyds/test-suite-sql-eval), but on a sqlglot tree of any dialect
instead of the Spider parser's ``sql`` dict. Spider counts three things on the
*top* query only (nested queries are not looked into):

component1
    +1 each for WHERE, GROUP BY, ORDER BY, LIMIT; +1 per extra FROM item
    (``len(table_units) - 1``: joins, comma joins, derived tables); +1 per
    ``OR`` and +1 per ``LIKE`` condition in the JOIN ... ON, WHERE and HAVING
    conditions.
component2
    +1 per nested query used as a condition value (``IN (SELECT ..)``,
    ``= (SELECT ..)``) in ON / WHERE / HAVING, +1 if the query is an
    INTERSECT / UNION / EXCEPT.
others
    +1 if more than one "aggregate" (see below), +1 if more than one SELECT
    item, +1 if more than one WHERE condition, +1 if more than one GROUP BY key.

Details kept from the original, even where they look accidental:

* Aggregates are counted in the SELECT items, GROUP BY keys and ORDER BY keys;
  for WHERE and HAVING the original's ``count_agg`` reads the condition's
  ``not_op`` flag (the first tuple slot), so there a *negated* condition
  (``NOT IN``, ``NOT LIKE``, ``NOT BETWEEN``, ``IS NOT``, ``NOT (..)``) counts
  as one aggregate and an aggregate inside the condition counts nothing. For
  HAVING it is handed the ``and``/``or`` tokens too, so each of those counts
  as one aggregate as well.
* ``a = b OR c = 1``, where the value ``b`` is neither a number, a string nor
  a subquery (a double-quoted ``"b"`` is a string there, as Spider's tokenizer
  reads it, although sqlglot's SQLite reader makes it a quoted column; see
  :func:`is_spider_string`): the Spider parser reads ``b`` as a column and skips the rest up
  to the next AND, so the OR-ed conditions after it are not counted at all.
  When the skipped text holds a parenthesis (``OR c IN (SELECT ..)``,
  ``OR f(c) = 1``) the skip ends there and the parser reads nothing more of
  the query: later conditions, GROUP BY, HAVING, ORDER BY, LIMIT, later JOINs
  and the set operation are then not counted.
* A derived table in FROM is one table unit; what is inside it counts nothing.
  A CTE is treated the same way: a reference to it is one table unit and its
  body is not looked into (the Spider parser has no CTEs).
* In a set operation the top query is the left-most SELECT (the Spider parser
  nests ``A UNION B UNION C`` as ``A.union = B``, ``B.union = C``), so its own
  clauses are counted and the set operation adds exactly 1 to component2;
  an ORDER BY / LIMIT written after the last operand belongs to that operand
  in Spider and so is not counted.
* ``AND``/``OR`` trees are flattened to Spider's flat condition list;
  parentheses are ignored and ``NOT`` marks every condition under it.

One known difference: after an ORDER BY key with an explicit ``NULLS FIRST`` /
``NULLS LAST`` the Spider parser stops reading, so a LIMIT after it is not
counted there; sqlglot's tree does not keep whether the NULLS placement was
written, so it is counted here. ``bench/bench_hardness.py`` measures agreement
with the original code.

Where the Spider parser has no answer (it rejects the query) this module
extends the rules in the obvious way, documented here so labels are stable:
any aggregate function (``AggFunc``, windowed or not) counts, each aggregate
call inside a SELECT item counts (``SUM(a) / COUNT(b)`` is two), ``ILIKE``
counts as ``LIKE``, ``EXISTS (..)`` and ``ANY/ALL (..)`` subqueries in
conditions count as nested queries, and so do scalar subqueries in the SELECT
list, GROUP BY and ORDER BY. A statement that is not a query is classified
by the query it holds (``INSERT .. SELECT``, ``CREATE .. AS SELECT``) or else
by its own clauses.

The tree is walked once, without generating SQL, so it is cheap enough to run
per record after the one parse.

Example:
    >>> import sqlglot
    >>> spider_hardness(sqlglot.parse_one("SELECT count(*) FROM singer"))
    'easy'
    >>> spider_hardness(sqlglot.parse_one(
    ...     "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)"))
    'hard'
"""

from __future__ import annotations

from typing import NamedTuple

from sqlglot import exp

EASY = "easy"
MEDIUM = "medium"
HARD = "hard"
EXTRA = "extra"

#: The levels, easiest first.
HARDNESS_LEVELS: tuple[str, ...] = (EASY, MEDIUM, HARD, EXTRA)


class SpiderCounts(NamedTuple):
    """The three counts ``eval_hardness`` thresholds (see the module docstring)."""

    component1: int
    component2: int
    others: int


def hardness_level(component1: int, component2: int, others: int) -> str:
    """Map Spider's three counts to a level, with the original's thresholds.

    Example:
        >>> hardness_level(component1=1, component2=0, others=0)
        'easy'
        >>> hardness_level(component1=0, component2=1, others=0)
        'hard'
        >>> hardness_level(component1=4, component2=0, others=0)
        'extra'
    """
    if component1 <= 1 and others == 0 and component2 == 0:
        return EASY
    if (others <= 2 and component1 <= 1 and component2 == 0) or (
        component1 <= 2 and others < 2 and component2 == 0
    ):
        return MEDIUM
    if (
        (others > 2 and component1 <= 2 and component2 == 0)
        or (2 < component1 <= 3 and others <= 2 and component2 == 0)
        or (component1 <= 1 and others == 0 and component2 <= 1)
    ):
        return HARD
    return EXTRA


def spider_counts(tree: exp.Expression) -> SpiderCounts:
    """Count Spider's component1, component2 and others on a parsed query.

    Example:
        >>> import sqlglot
        >>> spider_counts(sqlglot.parse_one(
        ...     "SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2"
        ...     " ON T1.id = T2.singer_id GROUP BY T1.name"))
        SpiderCounts(component1=2, component2=0, others=1)
    """
    query, set_ops = _top_select(tree)
    tally = _Tally()
    if not _count_clauses(query.args, tally):
        set_ops = 0  # the parse stopped early: the set operation is not seen either
    items = query.expressions if isinstance(query, exp.Select) else ()
    if len(items) > 1:
        tally.others += 1
    for item in items:
        aggs, subqueries = _aggregates_and_queries(item)
        tally.aggregates += aggs
        tally.nested += subqueries
    if tally.aggregates > 1:
        tally.others += 1
    return SpiderCounts(tally.component1, tally.nested + set_ops, tally.others)


def spider_hardness(tree: exp.Expression) -> str:
    """Spider hardness level of a parsed query: 'easy', 'medium', 'hard' or 'extra'.

    Example:
        >>> import sqlglot
        >>> spider_hardness(sqlglot.parse_one(
        ...     "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC"))
        'medium'
        >>> spider_hardness(sqlglot.parse_one(
        ...     "SELECT name FROM stadium EXCEPT SELECT T2.name FROM concert AS T1"
        ...     " JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id WHERE T1.year = 2014"))
        'hard'
    """
    counts = spider_counts(tree)
    return hardness_level(counts.component1, counts.component2, counts.others)


class _Tally:
    """Running counts while one query's clauses are read."""

    __slots__ = ("component1", "nested", "aggregates", "others")

    def __init__(self) -> None:
        self.component1 = self.nested = self.aggregates = self.others = 0


def _count_clauses(args: dict, tally: _Tally) -> bool:
    """Count FROM .. LIMIT in the order Spider parses them; False if its parse stops early."""
    joins = args.get("joins") or ()
    table_units = 1 if args.get("from_") is not None else 0
    for join in joins:
        table_units += 1
        on = join.args.get("on")
        if on is not None:
            found = _conditions(on)
            tally.component1 += found.ors + found.likes
            tally.nested += found.nested
            if found.truncated:  # later JOINs are not read either
                tally.component1 += table_units - 1
                return False
    if table_units:
        tally.component1 += table_units - 1

    where = args.get("where")
    if where is not None:
        found = _conditions(where.this)
        tally.component1 += 1 + found.ors + found.likes
        tally.nested += found.nested
        tally.aggregates += found.negated
        if found.conditions > 1:
            tally.others += 1
        if found.truncated:
            return False

    group = args.get("group")
    if group is not None:
        tally.component1 += 1
        keys = group.expressions
        if len(keys) > 1:
            tally.others += 1
        for key in keys:
            aggs, subqueries = _aggregates_and_queries(key)
            tally.aggregates += aggs
            tally.nested += subqueries

    having = args.get("having")
    if having is not None:
        found = _conditions(having.this)
        tally.component1 += found.ors + found.likes
        tally.nested += found.nested
        # the original passes HAVING's whole list, 'and'/'or' tokens included,
        # to count_agg, and a token's first character is never 0
        tally.aggregates += found.negated + found.conditions - 1
        if found.truncated:
            return False

    order = args.get("order")
    if order is not None:
        tally.component1 += 1
        for key in order.expressions:
            aggs, subqueries = _aggregates_and_queries(key)
            tally.aggregates += aggs
            tally.nested += subqueries

    if args.get("limit") is not None:
        tally.component1 += 1
    return True


def _top_select(tree: exp.Expression) -> tuple[exp.Expression, int]:
    """The node Spider treats as the top ``sql`` dict, and 1 if it heads a set operation."""
    node = tree
    if not isinstance(node, exp.Query):
        inner = node.args.get("expression")
        if isinstance(inner, exp.Query):
            node = inner
    set_ops = 0
    while True:
        if isinstance(node, exp.SetOperation):
            set_ops = 1
            node = node.this
        elif isinstance(node, (exp.Subquery, exp.Paren)):
            node = node.this
        else:
            return node, set_ops


class _Conditions(NamedTuple):
    conditions: int
    ors: int
    likes: int
    negated: int
    nested: int
    truncated: bool


def _conditions(condition: exp.Expression) -> _Conditions:
    """Flatten an AND/OR tree into Spider condition units, in written order."""
    conditions = ors = likes = negated = nested = 0
    swallowing = False
    # (node, under NOT, connective written just before it is OR); right pushed first
    stack: list[tuple[exp.Expression, bool, bool]] = [(condition, False, False)]
    while stack:
        node, negate, after_or = stack.pop()
        if isinstance(node, exp.Paren):
            stack.append((node.this, negate, after_or))
        elif isinstance(node, (exp.And, exp.Or)):
            stack.append((node.expression, negate, isinstance(node, exp.Or)))
            stack.append((node.this, negate, after_or))
        elif isinstance(node, exp.Not):
            stack.append((node.this, True, after_or))
        elif swallowing and after_or:
            # eaten by the column value before it (see _swallows_following_or)
            if _stops_scan(node):
                return _Conditions(conditions, ors, likes, negated, nested, True)
        else:
            conditions += 1
            ors += after_or
            if negate or node.args.get("negate"):
                negated += 1
            if isinstance(node, (exp.Like, exp.ILike)):
                likes += 1
            nested += _aggregates_and_queries(node)[1]
            swallowing = _swallows_following_or(node)
    return _Conditions(conditions, ors, likes, negated, nested, False)


def _swallows_following_or(condition: exp.Expression) -> bool:
    """Whether the Spider parser reads past an OR after this condition.

    Its ``parse_value`` takes a value that is neither a number, a string nor a
    subquery to be a column and skips every token up to the next ``,``,
    ``)``, ``AND``, clause keyword or JOIN/ON/AS. So in ``a = b OR c = 1`` the
    ``OR c = 1`` is never seen (not a condition, not an OR), which this module
    reproduces for OR-joined conditions up to the next AND.
    """
    if isinstance(condition, exp.Between):
        value = condition.args.get("high")
    elif isinstance(condition, exp.In):
        return False
    else:
        value = condition.args.get("expression")
    while isinstance(value, exp.Paren):
        value = value.this
    if isinstance(value, exp.Neg):
        value = value.this
    return (
        value is not None
        and not isinstance(value, (exp.Literal, exp.Null, exp.Query))
        and not is_spider_string(value)
    )


def is_spider_string(node: exp.Expression) -> bool:
    """Whether the Spider parser reads ``node`` as a string value although sqlglot has a column.

    Spider's ``tokenize`` turns every ``'`` into ``"`` and keeps each ``"..."`` as one
    token, and ``parse_value`` takes any token holding a ``"`` to be a string. Spider's
    SQLite queries write strings both ways (``name = "Ben Jones"``), while sqlglot's
    SQLite reader (rightly, for SQLite) makes a double-quoted word a quoted identifier.
    So an unqualified quoted column in a value position is a string here. ``T1."x"``
    stays a column: Spider's tokenizer does not split it out as a value. This only
    steers the counting; the tree and the normalized SQL are untouched.

    >>> import sqlglot
    >>> is_spider_string(sqlglot.parse_one('"Ben Jones"', read="sqlite"))
    True
    >>> is_spider_string(sqlglot.parse_one("name", read="sqlite"))
    False
    """
    if not isinstance(node, exp.Column) or node.args.get("table") is not None:
        return False
    identifier = node.this
    return isinstance(identifier, exp.Identifier) and bool(identifier.args.get("quoted"))


def _stops_scan(condition: exp.Expression) -> bool:
    """Whether skipped text holds a ``(``: the skip ends at its SELECT or ``)``.

    The Spider parser then ends the clause there and reads no further clause
    of the query (later conditions, GROUP BY .. LIMIT, set operation).
    """
    if isinstance(condition, exp.In):
        return True
    stack = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, (exp.Query, exp.Func, exp.Paren, exp.Tuple)):
            return True
        stack.extend(node.iter_expressions())
    return False


def _aggregates_and_queries(node: exp.Expression) -> tuple[int, int]:
    """Aggregate calls and outermost nested queries in ``node``, not looking into queries."""
    aggregates = queries = 0
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Query):
            queries += 1
            continue
        if isinstance(current, exp.AggFunc):
            aggregates += 1
        stack.extend(current.iter_expressions())
    return aggregates, queries
