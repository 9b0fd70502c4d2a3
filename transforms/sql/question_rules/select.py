"""SELECT: the parts of a query (items, conditions, groups, order, limit) and the templates that
assemble them into a question; :func:`render_question` is the rules alone, for a whole statement.
"""

from __future__ import annotations

from typing import Optional

from sqlglot import exp

from transforms.sql.question_rules.conditions import cond_phrase, is_correlation, main_flag, merge_exclusions
from transforms.sql.question_rules.functions import order_keys, window_phrase
from transforms.sql.question_rules.nodes import conjuncts, filters_of, unwrap
from transforms.sql.question_rules.scopes import MAX_DEPTH, Scope, Source, build_scope, has_filtered_query
from transforms.sql.question_rules.values import (
    AGGREGATE_WORDS,
    counted_noun,
    is_count_all,
    is_number_literal,
    single_branch,
    string_value,
    value_np,
)
from transforms.sql.question_rules.words import (
    and_list,
    humanize,
    noun_list,
    pluralize,
    singularize,
    strip_article,
)


_MAX_ITEMS = 6  # selected items named before "and N other values"


_INFORMATIVE_SUFFIXES = ("category", "type", "class", "group", "bucket", "band", "label", "level", "tier", "status")
_GENERIC_ALIAS_WORDS = frozenset(
    {"ratio", "result", "value", "values", "total", "count", "amount", "number", "percentage",
     "percent", "diff", "difference", "output", "answer", "metric", "expr", "col", "val"}
)


def _is_plain(node: exp.Expression) -> bool:
    """Columns, literals and aggregates of a column: described from the expression itself."""
    node = unwrap(node)
    if isinstance(node, (exp.Column, exp.Star, exp.Literal, exp.Placeholder, exp.Parameter)):
        return True
    if type(node) in AGGREGATE_WORDS or isinstance(node, exp.Count):
        arg = node.this
        if isinstance(arg, exp.Distinct):
            arg = arg.expressions[0] if len(arg.expressions) == 1 else None
        arg = unwrap(arg)
        return arg is None or isinstance(arg, (exp.Column, exp.Star))
    return False


def _informative_alias(alias: str) -> Optional[str]:
    if not alias:
        return None
    words = humanize(alias)
    if " " not in words and (len(words) < 4 or words in _GENERIC_ALIAS_WORDS):
        return None
    return words


def _item_text(node: exp.Expression, alias: str, scope: Scope) -> str:
    """One selected item as a noun phrase, preferring a human alias for complex expressions."""
    inner = unwrap(node) if not isinstance(node, exp.Alias) else node.this
    if isinstance(inner, exp.Column):
        computed = _computed_by_body(inner, scope)
        if computed is not None:
            return f"{value_np(inner, scope)} ({computed})"
    case = inner
    while isinstance(case, exp.Paren):  # `(CASE .. END) AS x`
        case = case.this
    if isinstance(case, (exp.Case, exp.If)) and (case is inner or has_filtered_query(case, scope)):
        basis = value_np(case, scope)  # 'a category based on x', or 'x if c, otherwise y'
        alias_words = humanize(alias) if alias else ""
        if not basis.startswith("a category "):  # the branches, set apart from the other items
            return f"the {alias_words} ({basis})" if alias_words else f"a value ({basis})"
        if not alias_words:
            return basis
        if alias_words.endswith(_INFORMATIVE_SUFFIXES):
            return f"the {alias_words} {basis[len('a category ') :]}"
        return f"the {alias_words} category {basis[len('a category ') :]}"
    if not _is_plain(inner):
        alias_words = _informative_alias(alias)
        if alias_words is not None and not (
            alias_words.rsplit(" ", 1)[-1] in _RATIO_WORDS and _is_ratio(inner)
        ):
            if has_filtered_query(inner, scope):  # the alias alone would hide what it counts or keeps
                return f"the {alias_words} ({value_np(inner, scope)})"
            return f"the {alias_words}"
    return value_np(inner, scope)


def _computed_by_body(column: exp.Column, scope: Scope) -> Optional[str]:
    """What a CTE's or derived table's filtered query computes for ``column``, said once."""
    if not any(source.items for source in scope.order):
        return None
    if column.table:
        source = scope.resolve(column.table)[0]
    else:
        source = scope.main if len(scope.order) == 1 else None
    if source is None or not source.items:
        return None
    return source.items.pop(column.name.lower(), None)


_RATIO_WORDS = frozenset({"ratio", "percentage", "percent", "rate", "proportion", "share", "fraction"})


def _is_ratio(node: exp.Expression) -> bool:
    """``a / b`` (or ``a * 100 / b``) of two non-constants: its operands say more than
    an alias like ``rating_ratio``."""
    node = unwrap(node)
    if isinstance(node, exp.Mul):
        node = unwrap(node.this)
    return isinstance(node, (exp.Div, exp.SafeDivide)) and not is_number_literal(node.expression)


class _Parts:
    """The rendered pieces of one SELECT, before a template assembles them."""

    __slots__ = (
        "scope", "named", "cond", "items", "sole_count", "sole_distinct_count", "has_aggregate",
        "groups", "having", "windows", "order_keys", "limit", "offset", "distinct", "matching",
    )

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.named = ""
        self.cond = ""
        self.items: list[str] = []
        self.sole_count = False
        self.sole_distinct_count: Optional[str] = None
        self.has_aggregate = False
        self.groups: list[str] = []
        self.having = ""
        self.windows: list[str] = []
        self.order_keys: list[tuple[str, bool]] = []
        self.limit: Optional[str] = None
        self.offset: Optional[str] = None
        self.distinct = False
        self.matching = ""  # what an outer join's ON conditions keep of the joined table


def _named_phrase(node: exp.Expression, scope: Scope) -> Optional[str]:
    """' named "X"' for ``name = 'X'`` on the main table (and ' titled "X"' for titles)."""
    if not isinstance(node, exp.EQ):
        return None
    column, text = node.this, string_value(node.expression)
    if not isinstance(column, exp.Column) or text is None:
        return None
    if column.table and scope.resolve(column.table)[0] is not scope.main:
        return None
    if not column.table and len(scope.order) > 1:
        return None
    verb = {"name": "named", "title": "titled"}.get(humanize(column.name))
    return f' {verb} "{text}"' if verb else None


def outer_join_matching(select: exp.Select, scope: Scope) -> str:
    """'flights with connections 0' for ``LEFT JOIN flight ON .. AND flight.connections = 0``.

    An outer join's extra ON conditions do not drop rows of the main table, but they decide
    which joined rows are counted or shown, so the question says them apart from the filters.
    """
    joins = select.args.get("joins")
    if not joins:
        return ""
    phrases: list[str] = []
    for join in joins:
        if not join.side:
            continue
        extra = [
            conjunct
            for conjunct in conjuncts(join.args.get("on"))
            if not (
                isinstance(conjunct, exp.EQ)
                and isinstance(conjunct.this, exp.Column)
                and isinstance(conjunct.expression, exp.Column)
            )
        ]
        if not extra:
            continue
        source = scope.sources.get((join.this.alias_or_name or "").lower())
        noun = source.plural if source is not None else "related records"
        phrases.append(f"{noun} with " + " and ".join(cond_phrase(c, scope, nested=True) for c in extra))
    return " and ".join(phrases)


def _limit_parts(select: exp.Expression, scope: Scope) -> tuple[Optional[str], Optional[str]]:
    limit_node = select.args.get("limit")
    limit: Optional[str] = None
    if isinstance(limit_node, exp.Limit):
        limit = value_np(limit_node.expression, scope)
    elif isinstance(limit_node, exp.Fetch):
        count = limit_node.args.get("count")
        limit = value_np(count, scope) if count is not None else "1"
    offset_node = select.args.get("offset")
    offset = value_np(offset_node.expression, scope) if isinstance(offset_node, exp.Offset) else None
    return limit, offset


def _positional(node: exp.Expression, items: list[str]) -> Optional[str]:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        index = int(node.this) - 1
        if 0 <= index < len(items):
            return items[index]
    return None


def _is_nulls_sort_key(node: exp.Expression) -> bool:
    """``ORDER BY x IS NULL`` / ``CASE WHEN x IS NULL THEN 1 ELSE 0 END``: nulls placement only."""
    node = unwrap(node)
    if isinstance(node, exp.Is):
        return True
    branch = node.args.get("ifs") if isinstance(node, exp.Case) else None
    return (
        branch is not None
        and len(branch) == 1
        and isinstance(unwrap(branch[0].this), exp.Is)
        and isinstance(branch[0].args.get("true"), exp.Literal)
    )


def _short_alias(node: exp.Expression, scope: Scope) -> Optional[str]:
    """'the ratio' for ``ORDER BY ratio`` when the item it names has a long description."""
    if not isinstance(node, exp.Column) or node.table:
        return None
    alias = node.name
    text = scope.select_aliases.get(alias.lower())
    if text is None or len(text) <= 40:
        return text
    return f"the {humanize(alias)}"


def _contains_aggregate(node: exp.Expression) -> bool:
    """Whether an aggregate applies to this SELECT (not one inside a subquery or a window)."""
    for found in node.find_all(exp.AggFunc):
        current = found
        while current is not node:
            parent = current.parent
            if parent is None or isinstance(parent, (exp.Subquery, exp.Select, exp.Window)):
                break
            current = parent
        else:
            return True
    return False


def _render_select(select: exp.Select, parent: Optional[Scope]) -> _Parts:
    scope = build_scope(select, parent)
    parts = _Parts(scope)

    conditions: list[str] = [source.cond for source in scope.order if source.cond]
    grouped = select.args.get("group") is not None  # 'the number of badges named X' reads wrong
    for conjunct in filters_of(select):
        adjective = main_flag(conjunct, scope)
        if adjective is not None:  # 'open businesses', said in every template that names the rows
            main = scope.main
            main.singular, main.plural = f"{adjective} {main.singular}", f"{adjective} {main.plural}"
            continue
        named = None if parts.named or grouped else _named_phrase(conjunct, scope)
        if named is not None:
            parts.named = named
        elif not (scope.correlation == "drop" and is_correlation(conjunct, scope)):
            conditions.append(cond_phrase(conjunct, scope, nested=True))
    parts.cond = " and ".join(merge_exclusions(conditions))
    scope.entity_cond = parts.cond
    matching = [source.matching for source in scope.order if source.matching]
    matching.append(outer_join_matching(select, scope))
    parts.matching = " and ".join(m for m in matching if m)

    scope.counted = _counted_source(select, scope)
    expressions = list(select.expressions)
    if len(expressions) == 1 and select.args.get("group") is None:
        only = unwrap(expressions[0])
        if is_count_all(only):
            parts.sole_count = True
        elif isinstance(only, exp.Count) and isinstance(only.this, exp.Distinct):
            counted = only.this.expressions
            if len(counted) == 1 and single_branch(counted[0]) is None:
                noun = counted_noun(counted[0], scope)
                parts.sole_count = noun == scope.entity().plural  # distinct keys: the rows
                parts.sole_distinct_count = None if parts.sole_count else noun
        elif isinstance(only, exp.Count) and isinstance(unwrap(only.this), exp.Column):
            parts.sole_count = counted_noun(only.this, scope) == scope.entity().plural

    positional: list[str] = []
    windows_seen: list[str] = []
    for expression in expressions:
        alias = expression.alias if isinstance(expression, exp.Alias) else ""
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        if isinstance(inner, exp.Window):
            clause, phrase = window_phrase(inner, scope)
            windows_seen.append(clause)
            text = f"the {humanize(alias)}" if _informative_alias(alias) else phrase
        else:
            if not parts.has_aggregate and _contains_aggregate(inner):
                parts.has_aggregate = True
            text = _item_text(expression, alias, scope)
            parts.items.append(text)
        positional.append(text)
        if alias:
            scope.select_aliases.setdefault(alias.lower(), text)
    parts.windows = windows_seen

    scope.use_aliases = True
    group = select.args.get("group")
    if isinstance(group, exp.Group):
        for key in group.expressions:
            if isinstance(key, (exp.Rollup, exp.Cube)) and key.expressions:
                key = key.expressions[0]
            text = _positional(key, positional) or value_np(key, scope)
            if text in parts.items:
                parts.items.remove(text)  # a grouping key is not asked for again
            if len(scope.order) > 1 and isinstance(key, exp.Column):
                scope.qualify_main = True  # 'for each playlist name', not 'for each name'
                text = value_np(key, scope)
                scope.qualify_main = False
            if text not in parts.groups:
                parts.groups.append(text)
    having = select.args.get("having")
    if isinstance(having, exp.Having):
        parts.having = cond_phrase(having.this, scope)
    order = select.args.get("order")
    if isinstance(order, exp.Order):
        for ordered in order.expressions:
            target = ordered.this if isinstance(ordered, exp.Ordered) else ordered
            if _is_nulls_sort_key(target):
                continue
            text = (
                _positional(target, positional)
                or _short_alias(target, scope)
                or value_np(target, scope)
            )
            if parts.cond and text.endswith(" with " + parts.cond):  # said once is enough
                text = text[: -len(" with " + parts.cond)]
            parts.order_keys.append((text, bool(ordered.args.get("desc"))))
    parts.limit, parts.offset = _limit_parts(select, scope)
    parts.distinct = isinstance(select.args.get("distinct"), exp.Distinct)
    return parts


def _counted_source(select: exp.Select, scope: Scope) -> Optional[Source]:
    """The joined table whose rows ``COUNT(*)`` counts per group, when the groups are main rows.

    ``employee JOIN customer .. GROUP BY employee.lastname``: each group holds one row per
    customer, so the count is of customers, not of employees.
    """
    group = select.args.get("group")
    if not isinstance(group, exp.Group) or not select.args.get("joins") or scope.main is None:
        return None
    keyed: list[Source] = []
    for key in group.expressions:
        key = unwrap(key)
        if not isinstance(key, exp.Column) or not key.table:
            return None
        source = scope.resolve(key.table)[0]
        if source is None:
            return None
        keyed.append(source)
    if not any(source is scope.main for source in keyed):
        return None
    for source in reversed(scope.order):
        if source.how in ("inner", "outer") and not any(source is seen for seen in keyed):
            return source
    return None


def _join_phrase(parts: _Parts) -> list[str]:
    """Singular names of INNER-joined leaf tables that nothing else in the question mentions.

    Bridge tables (joined to two or more others, like ``playlisttrack``) are left out.
    """
    scope = parts.scope
    names: list[str] = []
    for source in scope.order:
        if source.how != "inner" or source is scope.main or source.links > 1:
            continue
        if any(seen is source for seen in scope.mentioned):
            continue
        if source.singular not in names and source.singular != scope.entity().singular:
            names.append(source.singular)
    return names


def _entity_phrase(parts: _Parts, plural: bool, cond: Optional[str] = None) -> str:
    """'every track with its album and milliseconds greater than 5' / 'all tracks'."""
    scope = parts.scope
    cond = parts.cond if cond is None else cond
    joined = _join_phrase(parts)
    entity = scope.entity()
    noun = entity.plural if plural else entity.singular
    text = noun + parts.named
    if joined:
        text += f" with {'their' if plural else 'its'} {and_list(joined)}"
    if cond:
        text += f" {'and' if joined else 'with'} {cond}"
    if text == noun:
        return f"all {noun}" if plural else f"every {noun}"
    return text if plural else f"every {text}"


def _items_text(items: list[str]) -> str:
    if len(items) > _MAX_ITEMS:
        shown = items[: _MAX_ITEMS - 1]
        return noun_list(shown + [f"{len(items) - len(shown)} other values"])
    return noun_list(items)


def _aggregate_suffix(parts: _Parts, consumed: bool) -> str:
    """' of all tracks' / ' of tracks with x' / ', among tracks with x' / ''."""
    scope = parts.scope
    if scope.main is None:
        return ""
    if consumed:
        return ""
    if scope.entity_mentioned:
        return f", among {_entity_phrase(parts, True)}" if (parts.cond or parts.named) else ""
    return f" of {_entity_phrase(parts, True)}"


def _order_sentence(keys: list[tuple[str, bool]], limit: Optional[str], offset: Optional[str]) -> str:
    skip = f", skipping the first {offset}" if offset else ""
    if keys:
        first_text, first_desc = keys[0]
        then = "".join(f", then by {strip_article(text)}" for text, _ in keys[1:])
        if limit is None:
            direction = "descending" if first_desc else "ascending"
            order_text = f"Sort the results by {first_text} in {direction} order{then}"
            return order_text + (f"{skip.replace(', skipping', ' and skip')}" if skip else "") + "."
        if limit == "1":
            extreme = "highest" if first_desc else "lowest"
            return f"Show only the one with the {extreme} {strip_article(first_text)}{then}{skip}."
        if first_desc:
            return f"Show the top {limit} by {first_text}, highest first{then}{skip}."
        return f"Show the lowest {limit} by {first_text}{then}{skip}."
    if limit is not None:
        return f"Show only {'one result' if limit == '1' else f'the first {limit}'}{skip}."
    if offset:
        return f"Skip the first {offset} results."
    return ""


def _question_from_parts(parts: _Parts) -> str:
    scope = parts.scope
    consumed = not scope.entity_cond and bool(parts.cond)  # a COUNT(*) phrase embedded the WHERE
    windows = "".join(f", {clause}" for clause in parts.windows)
    if parts.sole_count:
        entity = scope.entity()
        joined = _join_phrase(parts)
        needs = [f"a matching {and_list(joined)}"] if joined else []
        if parts.cond:
            needs.append(parts.cond)
        head = f"How many {entity.plural}{parts.named}"
        main = f"{head} have {' and '.join(needs)}" if needs else f"{head} are there"
        main += windows + "?"
    elif parts.sole_distinct_count is not None and not parts.groups:
        main = (
            f"How many distinct {parts.sole_distinct_count} are there among "
            f"{_entity_phrase(parts, True)}{windows}?"
        )
    elif parts.groups:
        remaining = parts.items
        groups = and_list([strip_article(group) for group in parts.groups])
        if remaining:
            verb = "is" if len(remaining) == 1 else "are"
            main = (
                f"For each {groups}, what {verb} {_items_text(remaining)}"
                f"{_aggregate_suffix(parts, consumed)}{windows}?"
            )
        else:
            main = f"List each distinct {groups} of {_entity_phrase(parts, True)}{windows}."
        if parts.having:
            main += f" Only include groups with {parts.having}."
    elif parts.has_aggregate or scope.main is None:
        verb = "is" if len(parts.items) == 1 else "are"
        main = f"What {verb} {_items_text(parts.items)}{_aggregate_suffix(parts, consumed)}{windows}?"
        if parts.having:  # HAVING without GROUP BY: one row or none
            main += f" Only answer if there are {parts.having}." if parts.having.startswith(
                ("more than", "at least", "fewer than", "at most", "exactly")
            ) else f" Only answer if the result has {parts.having}."
    else:
        if parts.distinct:
            main = f"List each distinct {strip_article(_items_text(parts.items))} of {_entity_phrase(parts, True)}"
        else:
            main = f"List {_items_text(parts.items)} of {_entity_phrase(parts, False)}"
        main += windows + "."
    if parts.matching:
        main += f" Match only {parts.matching}."
    order = _order_sentence(parts.order_keys, parts.limit, parts.offset)
    return f"{main} {order}" if order else main


def _np_from_parts(parts: _Parts) -> str:
    """The same SELECT as a noun phrase, for subqueries and set operations."""
    scope = parts.scope
    consumed = not scope.entity_cond and bool(parts.cond)
    if parts.sole_count:
        text = f"the number of {_entity_phrase(parts, True)}"
    elif parts.groups:
        remaining = parts.items
        groups = and_list(parts.groups)
        if remaining:
            text = f"{_items_text(remaining)}{_aggregate_suffix(parts, consumed)} for each {groups}"
        else:
            text = f"the {strip_article(groups)} of {_entity_phrase(parts, True)}"
        if parts.having:
            text += f", in groups with {parts.having}"
    elif parts.has_aggregate or scope.main is None:
        text = f"{_items_text(parts.items)}{_aggregate_suffix(parts, consumed)}"
        if parts.having:
            text += f", if it has {parts.having}"
    else:
        distinct = "distinct " if parts.distinct else ""
        items = _items_text(parts.items)
        if distinct and items.startswith("the "):
            items = items[4:]
        text = f"{'the ' + distinct if distinct else ''}{items} of {_entity_phrase(parts, True)}"
    text += "".join(f", {clause}" for clause in parts.windows)
    if parts.matching:
        text += f", matching only {parts.matching}"
    if parts.limit is not None and parts.order_keys:
        key, desc = parts.order_keys[0]
        if parts.limit == "1":
            text += f", taking the one with the {'highest' if desc else 'lowest'} {strip_article(key)}"
        else:
            text += f", taking the {'top' if desc else 'lowest'} {parts.limit} by {key}"
    elif parts.limit is not None:
        text += f", taking the first {parts.limit}"
    return text


def query_np(node: exp.Expression, scope: Optional[Scope]) -> str:
    """Describe a nested query as a noun phrase ('the average milliseconds of all tracks')."""
    while isinstance(node, (exp.Subquery, exp.Paren)):
        node = node.this
    depth = scope.depth + 1 if scope else 0
    if depth > MAX_DEPTH:
        return "a nested result"
    if isinstance(node, exp.Select):
        return _np_from_parts(_render_select(node, scope))
    if isinstance(node, exp.SetOperation):
        left, right = query_np(node.this, scope), query_np(node.expression, scope)
        return f"{left} {_SET_WORDS.get(type(node), 'combined with')} {right}"
    return "a nested result"


_SET_WORDS: dict[type, str] = {
    exp.Union: "combined with",
    exp.Intersect: "that are also in",
    exp.Except: "except those in",
}


def _set_question(node: exp.SetOperation) -> str:
    left, right = query_np(node.this, None), query_np(node.expression, None)
    if isinstance(node, exp.Intersect):
        main = f"List {left} that are also in {right}."
    elif isinstance(node, exp.Except):
        main = f"List {left}, except those in {right}."
    else:
        duplicates = ", keeping duplicates" if node.args.get("distinct") is False else ""
        main = f"List {left}, combined with {right}{duplicates}."
    first = node.this
    while isinstance(first, (exp.SetOperation, exp.Subquery)):
        first = first.this
    scope = build_scope(first, None) if isinstance(first, exp.Select) else Scope(None)
    keys = order_keys(node.args.get("order"), scope)
    limit, offset = _limit_parts(node, scope)
    order = _order_sentence(keys, limit, offset)
    return f"{main} {order}" if order else main


def _dml_question(node: exp.Expression) -> str:
    table = node.this
    while isinstance(table, exp.Schema):
        table = table.this
    name = humanize(table.name) if isinstance(table, exp.Table) and table.name else "record"
    singular = singularize(name)
    plural = pluralize(singular)
    scope = Scope(None)
    scope.main = Source(singular, plural, "main")
    where = node.args.get("where")
    cond = cond_phrase(where.this, scope) if isinstance(where, exp.Where) else ""
    with_cond = f" with {cond}" if cond else ""
    if isinstance(node, exp.Insert):
        return f"Add new {singular} records."
    if isinstance(node, exp.Delete):
        return f"Remove the {plural}{with_cond}." if cond else f"Remove all {plural}."
    fields = [value_np(e.this, scope) for e in node.expressions if isinstance(e, exp.EQ)]
    target = f"the {and_list(fields)}" if fields else "the values"
    return f"Update {target} of {'every ' + singular + with_cond if cond else 'all ' + plural}."


def render_question(tree: exp.Expression) -> str:
    """The rules alone: a question for a query, or '' for a statement they do not describe.

    Unlike :func:`describe_sql` this may raise on a tree the rules do not expect, and its text
    is not yet capitalized, punctuated or capped; tests use it to see that the rules (not the
    fallback) handled a query.

    >>> from sqlglot import parse_one
    >>> render_question(parse_one("SELECT AVG(milliseconds) FROM track"))
    'What is the average milliseconds of all tracks?'
    >>> render_question(parse_one("CREATE TABLE t (a INT)"))
    ''
    """
    node = tree
    while isinstance(node, (exp.Subquery, exp.Paren)):
        node = node.this
    if isinstance(node, exp.Select):
        return _question_from_parts(_render_select(node, None))
    if isinstance(node, exp.SetOperation):
        return _set_question(node)
    if isinstance(node, (exp.Insert, exp.Update, exp.Delete)):
        return _dml_question(node)
    return ""
