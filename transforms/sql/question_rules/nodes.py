"""Tree helpers shared by every layer of :mod:`transforms.sql.question_rules`: the wrappers a
value is read through, the operands of an ``AND``/``OR`` chain and the conditions that filter
a SELECT. Pure functions over sqlglot trees, no words and no scopes.
"""

from __future__ import annotations

from typing import Optional

from sqlglot import exp


TRANSPARENT_FUNCS = (
    exp.Cast,
    exp.TryCast,
    exp.Lower,
    exp.Upper,
    exp.Trim,
    exp.Nullif,
    exp.Date,
    exp.TsOrDsToDate,
    exp.TsOrDsToTimestamp,
    exp.TimeStrToTime,
    exp.StrToDate,
    exp.StrToTime,
    exp.UnixToTime,
)


_WRAPPERS = (exp.Paren, exp.Alias, exp.Collate) + TRANSPARENT_FUNCS


def unwrap(node: Optional[exp.Expression]) -> Optional[exp.Expression]:
    """What a value is, read through parentheses, aliases, collations and transparent functions.

    >>> from sqlglot import parse_one
    >>> unwrap(parse_one("SELECT (CAST(price AS INT)) AS p").selects[0]).sql()
    'price'
    """
    while isinstance(node, _WRAPPERS):
        node = node.this
    return node


def operands(node: Optional[exp.Expression], node_type: type) -> list[exp.Expression]:
    """The operands of a chain of one binary operator (``a AND (b AND c)``), parentheses removed."""
    out: list[exp.Expression] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        while isinstance(current, exp.Paren):
            current = current.this
        if isinstance(current, node_type):
            stack.append(current.expression)
            stack.append(current.this)
        else:
            out.append(current)
    return out


def conjuncts(node: Optional[exp.Expression]) -> list[exp.Expression]:
    return operands(node, exp.And)


def _where_of(select: exp.Select) -> Optional[exp.Expression]:
    where = select.args.get("where")
    return where.this if isinstance(where, exp.Where) else None


def filters_of(select: exp.Select) -> list[exp.Expression]:
    """WHERE conjuncts plus non-key conditions from JOIN ... ON (e.g. ``AND f.stops = 0``).

    >>> from sqlglot import parse_one
    >>> query = parse_one("SELECT 1 FROM f JOIN a ON f.aid = a.id AND f.stops = 0 WHERE f.x > 1")
    >>> [condition.sql() for condition in filters_of(query)]
    ['f.x > 1', 'f.stops = 0']
    """
    filters = conjuncts(_where_of(select))
    for join in select.args.get("joins") or ():
        if join.side:  # an outer join's ON conditions do not filter the result
            continue
        for conjunct in conjuncts(join.args.get("on")):
            both_columns = isinstance(conjunct, exp.EQ) and isinstance(
                conjunct.this, exp.Column
            ) and isinstance(conjunct.expression, exp.Column)
            if not both_columns and not isinstance(conjunct, exp.Boolean):
                filters.append(conjunct)
    return filters
