"""Scopes: the tables a SELECT reads and how its aliases resolve.

Every ``SELECT`` gets a :class:`Scope`: its tables (aliases resolved to table names), the main
table (the first one in ``FROM``) and the parent scope for correlated subqueries. A derived
table or CTE also brings the conditions of its body, said through :mod:`.dispatch`.
"""

from __future__ import annotations

from typing import Optional

from sqlglot import exp

from transforms.sql.question_rules import dispatch
from transforms.sql.question_rules.nodes import filters_of, unwrap
from transforms.sql.question_rules.words import humanize, pluralize, singularize


MAX_DEPTH = 4  # nested SELECTs described before "a nested result"


_GENERIC_ALIASES = frozenset(
    {"t", "s", "x", "q", "r", "sub", "subq", "subquery", "tmp", "temp", "derived", "dt", "cte"}
)


class Source:
    """One table (or CTE, or derived table) in a scope."""

    __slots__ = ("singular", "plural", "how", "links", "cond", "matching", "items")

    def __init__(self, singular: str, plural: str, how: str, cond: str = "") -> None:
        self.singular = singular
        self.plural = plural
        self.how = how  # "main", "inner", "outer" or "cross"
        self.links = 0  # how many other tables join conditions connect it to
        self.cond = cond  # the WHERE/HAVING phrase of a derived table or CTE: it filters too
        self.matching = ""  # and what its outer joins' ON conditions keep (``outer_join_matching``)
        self.items: dict[str, str] = _NO_ITEMS  # column -> what a filtered query in its body computes


class Scope:
    """Rendering state for one SELECT (mutable, private to one :func:`describe_sql` call)."""

    __slots__ = (
        "parent",
        "depth",
        "sources",
        "order",
        "main",
        "mentioned",
        "select_aliases",
        "use_aliases",
        "entity_cond",
        "entity_mentioned",
        "correlation",
        "qualify_main",
        "counted",
        "ctes",
    )

    def __init__(self, parent: Optional["Scope"]) -> None:
        self.parent = parent
        self.depth = parent.depth + 1 if parent else 0
        self.sources: dict[str, Source] = {}
        self.order: list[Source] = []
        self.main: Optional[Source] = None
        self.mentioned: list[Source] = []
        self.select_aliases: dict[str, str] = {}
        self.use_aliases = False
        self.entity_cond = ""  # the WHERE phrase, until a COUNT(*) phrase embeds it
        self.entity_mentioned = False
        self.correlation = "same"  # "same": 'the same x'; "drop": omit (EXISTS)
        self.qualify_main = False  # prefix main-table columns too ('playlist name')
        self.counted: Optional[Source] = None  # what COUNT(*) counts when not the main rows
        self.ctes: dict[str, exp.Expression] = _NO_CTES  # CTE name -> body, as seen from here

    def entity(self) -> Source:
        return self.main or Source("record", "records", "main")

    def resolve(self, qualifier: str) -> tuple[Optional[Source], bool]:
        """The source a column qualifier names, and whether it lives in an outer scope."""
        key = qualifier.lower()
        scope: Optional[Scope] = self
        outer = False
        while scope is not None:
            source = scope.sources.get(key)
            if source is not None:
                return source, outer
            scope, outer = scope.parent, True
        return None, False

    def mention(self, source: Source) -> None:
        if not any(seen is source for seen in self.mentioned):
            self.mentioned.append(source)


_NO_CTES: dict[str, exp.Expression] = {}  # shared, never written to
_NO_ITEMS: dict[str, str] = {}  # shared, never written to


def _source_for(
    node: exp.Expression, how: str, parent: Optional[Scope], depth: int, ctes: dict[str, exp.Expression]
) -> Source:
    """The words for one FROM/JOIN item; a derived table or CTE also brings its conditions.

    What a derived table or CTE keeps (its WHERE and HAVING, at any depth) filters the outer
    query as much as the outer WHERE does, so it is said (``Source.cond``). A grouped one
    without an informative name yields one row per group: its rows are named after the
    grouping key ('authors' for ``GROUP BY authorid``).
    """
    body = None
    if ctes and isinstance(node, exp.Table) and node.args.get("db") is None:
        name = node.name.lower()
        body = ctes.get(name)
        if body is not None:  # its own body cannot see it again (a recursive CTE would loop)
            ctes = {key: value for key, value in ctes.items() if key != name}
    if isinstance(node, exp.Table) and node.name:
        words = humanize(node.name)
    else:
        alias = node.alias if isinstance(node, (exp.Subquery, exp.Table)) else ""
        inner = node.this if isinstance(node, exp.Subquery) else None
        body = inner
        if alias and alias.lower() not in _GENERIC_ALIASES and len(alias) > 2:
            words = humanize(alias)
        elif isinstance(inner, exp.Select) and isinstance(inner.args.get("from_"), exp.From):
            source = _source_for(inner.args["from_"].this, how, parent, depth + 1, ctes)
            _add_body_conditions(source, inner, parent, depth, ctes, rename=True)
            return source
        else:
            words = "record"
    singular = singularize(words)
    source = Source(singular, pluralize(singular), how)
    if isinstance(body, exp.Select):
        _add_body_conditions(source, body, parent, depth, ctes, rename=False)
    elif isinstance(body, exp.SetOperation) and depth + 1 < MAX_DEPTH:
        source.cond = _set_body_conditions(body, parent, depth + 1, ctes)
    return source


def _set_body_conditions(
    body: exp.SetOperation, parent: Optional[Scope], depth: int, ctes: dict[str, exp.Expression]
) -> str:
    """The conditions of a UNION / INTERSECT / EXCEPT used as a table, branch by branch.

    'either a or b' (UNION), 'a and also b' (INTERSECT), 'a but not b' (EXCEPT); a UNION
    branch without conditions keeps the other branch's phrase, saying which rows it holds for
    ('a (in its first part only)'): the rows of the other branch are all kept.
    """
    texts = []
    for branch in (body.this, body.expression):
        while isinstance(branch, (exp.Subquery, exp.Paren)):
            branch = branch.this
        if isinstance(branch, exp.SetOperation):
            texts.append(_set_body_conditions(branch, parent, depth, ctes))
        elif isinstance(branch, exp.Select):
            probe = Source("record", "records", "main")
            _add_body_conditions(probe, branch, parent, depth, ctes, rename=False)
            texts.append(probe.cond)
        else:
            texts.append("")
    first, second = texts
    if isinstance(body, exp.Intersect):
        return f"{first} and also {second}" if first and second else first or second
    if isinstance(body, exp.Except):
        return f"{first} but not {second}" if first and second else first or (
            f"not {second}" if second else "")
    if first and second:
        return f"either {first} or {second}"
    if first or second:
        return f"{first or second} (in its {'first' if first else 'second'} part only)"
    return ""


def _ctes_above(select: exp.Expression) -> dict[str, exp.Expression]:
    """The CTEs of the WITH clauses enclosing ``select`` (the innermost wins), read once per root."""
    found: dict[str, exp.Expression] = {}
    current = select.parent
    while current is not None:
        with_ = current.args.get("with_")
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                found.setdefault(cte.alias.lower(), cte.this)
        current = current.parent
    return found or _NO_CTES


def _add_body_conditions(
    source: Source,
    body: exp.Select,
    parent: Optional[Scope],
    depth: int,
    ctes: dict[str, exp.Expression],
    rename: bool,
) -> None:
    """Give ``source`` the WHERE/HAVING phrase of the query it stands for (see ``_source_for``)."""
    if depth >= MAX_DEPTH:
        return
    having = body.args.get("having")
    group = body.args.get("group")
    from_ = body.args.get("from_")
    plain = (  # nothing in it filters: no scope to build (the common `SELECT .. FROM t GROUP BY ..`)
        body.args.get("where") is None
        and having is None
        and not body.args.get("joins")
        and isinstance(from_, exp.From)
        and isinstance(from_.this, exp.Table)
        and from_.this.name.lower() not in ctes
    )
    inner: Optional[Scope] = None
    if not plain:
        inner = build_scope(body, parent, depth + 1, ctes)
        conditions = [inner_source.cond for inner_source in inner.order if inner_source.cond]
        conditions += [dispatch.cond_phrase(c, inner, nested=True) for c in filters_of(body)]
        if isinstance(having, exp.Having):
            conditions.append(dispatch.cond_phrase(having.this, inner, nested=True))
        source.cond = " and ".join(c for c in conditions if c)
        source.matching = dispatch.outer_join_matching(body, inner)
    _add_filtered_items(source, body, inner, parent, depth, ctes)
    if rename and isinstance(group, exp.Group) and len(group.expressions) == 1:
        key = unwrap(group.expressions[0])
        if isinstance(key, exp.Column):
            words = humanize(key.name)
            stem = words[:-3] if words.endswith(" id") else words[:-2] if words.endswith("id") else words
            if len(stem) >= 3:
                source.singular = singularize(stem)
                source.plural = pluralize(source.singular)


def _add_filtered_items(
    source: Source,
    body: exp.Select,
    inner: Optional[Scope],
    parent: Optional[Scope],
    depth: int,
    ctes: dict[str, exp.Expression],
) -> None:
    """Give ``source`` what its body's columns computed by a filtered query are.

    ``WITH t AS (SELECT .., (SELECT COUNT(*) .. WHERE closeddate IS NOT NULL) AS closedtotal ..)
    SELECT closedtotal FROM t``: the outer query names 'closed total', and only the body says
    which rows it counts (see ``_item_text``).
    """
    for item in body.expressions:
        if not isinstance(item, exp.Alias) or isinstance(item.this, (exp.Column, exp.Literal)):
            continue
        if item.this.find(exp.Query) is None:
            continue
        probe = inner
        if probe is None:  # a body without conditions has no scope yet: its CTEs are enough here
            probe = Scope(parent)
            probe.ctes = ctes
        if not has_filtered_query(item.this, probe):
            continue
        if inner is None:
            inner = build_scope(body, parent, depth + 1, ctes)
        if source.items is _NO_ITEMS:
            source.items = {}
        source.items[item.alias.lower()] = dispatch.value_np(item.this, inner)


def build_scope(
    select: exp.Select,
    parent: Optional[Scope],
    depth: Optional[int] = None,
    ctes: Optional[dict[str, exp.Expression]] = None,
) -> Scope:
    """The scope of ``select``; ``depth`` and ``ctes`` are given for a derived table's or CTE's
    body, whose scope only reads conditions (so its join links are not counted)."""
    scope = Scope(parent)
    if depth is not None:
        scope.depth = depth  # a derived table or CTE body: as deep as the query naming it, plus one
    if ctes is None:
        ctes = parent.ctes if parent is not None else _ctes_above(select)
    with_ = select.args.get("with_")
    if isinstance(with_, exp.With):
        ctes = {**ctes, **{cte.alias.lower(): cte.this for cte in with_.expressions}}
    scope.ctes = ctes
    from_ = select.args.get("from_")
    nodes: list[tuple[exp.Expression, str]] = []
    if isinstance(from_, exp.From) and from_.this is not None:
        nodes.append((from_.this, "main"))
    for join in select.args.get("joins") or ():
        side, kind = (join.side or "").upper(), (join.kind or "").upper()
        how = "outer" if side else "cross" if kind == "CROSS" else "inner"
        nodes.append((join.this, how))
    for node, how in nodes:
        source = _source_for(node, how, parent, scope.depth, ctes)
        scope.order.append(source)
        if how == "main":
            scope.main = source
        for key in (node.alias, node.name if isinstance(node, exp.Table) else ""):
            if key and key.lower() not in scope.sources:
                scope.sources[key.lower()] = source
    if depth is None:
        _count_links(select, scope)
    return scope


def _count_links(select: exp.Select, scope: Scope) -> None:
    """Count, per table, the distinct tables its JOIN ... ON conditions connect it to."""
    neighbours: dict[int, list[int]] = {}
    for join in select.args.get("joins") or ():
        on = join.args.get("on")
        if on is None:
            continue
        linked: list[Source] = []
        for column in on.find_all(exp.Column):
            source = scope.sources.get(column.table.lower()) if column.table else None
            if source is not None and not any(seen is source for seen in linked):
                linked.append(source)
        for source in linked:
            known = neighbours.setdefault(id(source), [])
            for other in linked:
                if other is not source and id(other) not in known:
                    known.append(id(other))
                    source.links += 1


def has_filtered_query(node: exp.Expression, scope: Scope) -> bool:
    """Whether a query nested in ``node`` has a WHERE or HAVING of its own, or reads a CTE that
    has one (queries nested in those are not looked into: the walk stays small)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Select):
            if current.args.get("where") is not None or current.args.get("having") is not None:
                return True
            from_ = current.args.get("from_")
            table = from_.this if isinstance(from_, exp.From) else None
            body = scope.ctes.get(table.name.lower()) if isinstance(table, exp.Table) and scope.ctes else None
            if isinstance(body, exp.Select) and (
                body.args.get("where") is not None or body.args.get("having") is not None
            ):
                return True
            continue
        stack.extend(current.iter_expressions())
    return False
