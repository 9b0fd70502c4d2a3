"""Values: expressions as noun phrases ("the average milliseconds").

One rule per sqlglot node type, registered with :func:`rules`; :func:`value_np` picks the rule
of a node (subclasses inherit it) and degrades an unknown node to "a value computed from x".
This module holds the registry, columns and literals, aggregates and arithmetic;
:mod:`.functions` registers the scalar functions, dates and windows.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from sqlglot import exp

from transforms.sql.question_rules import dispatch
from transforms.sql.question_rules.nodes import TRANSPARENT_FUNCS, operands, unwrap
from transforms.sql.question_rules.scopes import Scope
from transforms.sql.question_rules.words import (
    and_list,
    has_article,
    humanize,
    plural_phrase,
    pluralize,
    singularize,
    strip_article,
)


_Rule = Callable[[exp.Expression, Scope], str]
VALUE_RULES: dict[type, _Rule] = {}


def value_np(node: Optional[exp.Expression], scope: Scope) -> str:
    """Describe any expression as a noun phrase; unknown node types degrade, never raise."""
    if node is None:
        return "a value"
    rule = VALUE_RULES.get(type(node))
    if rule is None:
        rule = _rule_for_type(type(node))
    return rule(node, scope)


def _rule_for_type(node_type: type) -> _Rule:
    for base in node_type.__mro__[1:]:
        rule = VALUE_RULES.get(base)
        if rule is not None and base not in (exp.Expression,):
            VALUE_RULES[node_type] = rule
            return rule
    VALUE_RULES[node_type] = computed_value
    return computed_value


def rules(*types: type) -> Callable[[_Rule], _Rule]:
    """Register a value rule for these node types (subclasses inherit it, see ``value_np``)."""

    def register(rule: _Rule) -> _Rule:
        for node_type in types:
            VALUE_RULES[node_type] = rule
        return rule

    return register


def columns_in(node: exp.Expression, scope: Scope, limit: int = 3) -> list[str]:
    names: list[str] = []
    for column in node.find_all(exp.Column):
        text = _column(column, scope)
        if text not in names:
            names.append(text)
            if len(names) == limit:
                break
    return names


def computed_value(node: exp.Expression, scope: Scope) -> str:
    columns = columns_in(node, scope)
    return f"a value computed from {and_list(columns)}" if columns else "a computed value"


@rules(exp.Column)
def _column(node: exp.Expression, scope: Scope) -> str:
    qualifier = node.table
    if isinstance(node.this, exp.Star):
        source = scope.resolve(qualifier)[0] if qualifier else None
        return f"all {source.singular} details" if source else "all details"
    name = node.name
    if not qualifier and scope.use_aliases:
        alias_text = scope.select_aliases.get(name.lower())
        if alias_text is not None:
            return alias_text
    words = humanize(name)
    if not qualifier:
        return words
    source, _ = scope.resolve(qualifier)
    if source is None or (source is scope.main and not scope.qualify_main):
        return words
    scope.mention(source)
    prefix = source.singular
    if words.startswith(prefix) or words.split(" ", 1)[0] == prefix.split(" ", 1)[0]:
        return words
    if scope.main is not None and source is not scope.main and prefix == scope.main.singular:
        prefix = "related " + prefix  # a self-join: 'the firstname and related employee firstname'
    return f"{prefix} {words}"


@rules(exp.Star)
def _star(node: exp.Expression, scope: Scope) -> str:
    return "all details"


STRING_TYPES = (exp.National, exp.RawString, exp.UnicodeString)


def string_value(node: Optional[exp.Expression]) -> Optional[str]:
    """The text of a string literal ('x', N'x', r'x'), else None."""
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else None
    if isinstance(node, STRING_TYPES) and isinstance(node.this, str):
        return node.this
    return None


_CONTROL_RUN = re.compile(r"([\r\n\t]+)")


def quote(text: str) -> str:
    """A value in double quotes, its line breaks and tabs said in words (a question is one line).

    >>> quote("AC/DC")
    '"AC/DC"'
    >>> quote("<blockquote>\\n  <p>")
    '"<blockquote>" then a line break then "  <p>"'
    """
    if "\n" not in text and "\r" not in text and "\t" not in text:
        return f'"{text}"'
    out: list[str] = []
    for index, part in enumerate(_CONTROL_RUN.split(text)):  # piece, run, piece, run, ...
        if index % 2:
            out.append("a tab" if set(part) == {"\t"} else "a line break")
        elif part:
            out.append(f'"{part}"')
    return " then ".join(out)


def folded_string(node: Optional[exp.Expression]) -> Optional[str]:
    """The text of a string literal, or of one built from literals alone
    (``'a' + CHAR(10) + 'b'``, ``'%' || 'x' || '%'``, ``CONCAT('%', 'x', '%')``), else None.

    A pattern built that way is as constant as a plain one, and is described like one.
    """
    while isinstance(node, exp.Paren):
        node = node.this
    text = string_value(node)
    if text is not None or node is None:
        return text
    if isinstance(node, exp.Chr):
        code = node.expressions[0] if len(node.expressions) == 1 else None
        number = code.this if isinstance(code, exp.Literal) and not code.is_string else ""
        return chr(int(number)) if number.isdigit() and int(number) < 0x110000 else None
    if isinstance(node, (exp.Add, exp.DPipe)):
        parts = [node.this, node.expression]
    elif isinstance(node, exp.Concat):
        parts = list(node.expressions)
    else:
        return None
    texts = []
    for part in parts:
        text = folded_string(part)
        if text is None:
            return None
        texts.append(text)
    return "".join(texts)


@rules(exp.Literal, *STRING_TYPES)
def _literal(node: exp.Expression, scope: Scope) -> str:
    text = string_value(node)
    return quote(text) if text is not None else str(node.this)


@rules(exp.Boolean)
def _boolean(node: exp.Expression, scope: Scope) -> str:
    return "true" if node.this else "false"


@rules(exp.Null)
def _null(node: exp.Expression, scope: Scope) -> str:
    return "nothing"


@rules(exp.Placeholder, exp.Parameter)
def _placeholder(node: exp.Expression, scope: Scope) -> str:
    name = node.this if isinstance(node, exp.Placeholder) and isinstance(node.this, str) else ""
    words = humanize(name) if name and not name.isdigit() else ""
    return f"the given {words}" if words and words != "value" else "a given value"


@rules(exp.Var, exp.Identifier)
def _var(node: exp.Expression, scope: Scope) -> str:
    return humanize(node.name)


@rules(exp.Paren, exp.Alias, exp.Collate)
def _transparent(node: exp.Expression, scope: Scope) -> str:
    return value_np(node.this, scope)
rules(*TRANSPARENT_FUNCS)(_transparent)


@rules(exp.Convert)
def _convert(node: exp.Expression, scope: Scope) -> str:
    return value_np(node.expression, scope)


@rules(exp.Neg)
def _neg(node: exp.Expression, scope: Scope) -> str:
    inner = value_np(node.this, scope)
    return f"-{inner}" if isinstance(node.this, exp.Literal) else f"the negative of {inner}"


@rules(exp.Tuple)
def _tuple(node: exp.Expression, scope: Scope) -> str:
    return and_list([value_np(e, scope) for e in node.expressions])


@rules(exp.Subquery, exp.Select, exp.SetOperation)
def _subquery_value(node: exp.Expression, scope: Scope) -> str:
    return dispatch.query_np(node, scope)


# --- aggregates -------------------------------------------------------------------------------


def _count_all(scope: Scope) -> str:
    """'the number of <entity>', embedding the WHERE phrase the first time it is used."""
    scope.entity_mentioned = True
    cond, scope.entity_cond = scope.entity_cond, ""
    counted = scope.counted or scope.entity()
    return f"the number of {counted.plural}" + (f" with {cond}" if cond else "")


def single_branch(node: Optional[exp.Expression]) -> Optional[tuple[exp.Expression, exp.Expression]]:
    """(condition, value) of ``CASE WHEN c THEN v [ELSE 0|NULL] END`` or ``IF(c, v, 0)``."""
    node = unwrap(node)
    if isinstance(node, exp.Case) and node.this is None and len(node.args.get("ifs") or ()) == 1:
        branch, default = node.args["ifs"][0], node.args.get("default")
        condition, value = branch.this, branch.args.get("true")
    elif isinstance(node, exp.If):
        condition, value, default = node.this, node.args.get("true"), node.args.get("false")
    else:
        return None
    neutral = default is None or isinstance(default, exp.Null) or (
        isinstance(default, exp.Literal) and not default.is_string and default.this in ("0", "0.0")
    )
    return (condition, value) if neutral and condition is not None and value is not None else None


def _is_one(node: Optional[exp.Expression]) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and node.this in ("1", "1.0")


def _conditional_count(condition: exp.Expression, scope: Scope) -> str:
    scope.entity_mentioned = True
    return f"the number of {scope.entity().plural} with {dispatch.cond_phrase(condition, scope)}"


def _aggregate_of(word: str, text: str) -> str:
    """'average' + 'milliseconds' -> 'the average milliseconds' ('the total of the total')."""
    if strip_article(text).startswith(word.split(" ", 1)[0]):
        return f"the {word} of the {strip_article(text)}"
    if text.startswith("the "):
        return f"the {word} {text[4:]}"
    if has_article(text):
        return f"the {word} of {text}"
    return f"the {word} {text}"


def counted_noun(node: exp.Expression, scope: Scope) -> str:
    """What ``COUNT(x)`` counts, in the plural: 'flight_id' -> 'flights', 'name' -> 'names'."""
    text = value_np(node, scope)
    column = unwrap(node)
    if isinstance(column, exp.Column) and not isinstance(column.this, exp.Star):
        words = humanize(column.name)
        stem = words[:-3] if words.endswith(" id") else words[:-2] if words.endswith("id") else ""
        owner = scope.resolve(column.table)[0] if column.table else scope.main
        if owner is not None and _is_short_key_of(words, owner.singular):
            scope.entity_mentioned = scope.entity_mentioned or owner is scope.main
            return owner.plural
        if len(stem) >= 4 or " " in words or words == "id":
            if owner is not None and (words == "id" or stem == owner.singular):
                scope.entity_mentioned = scope.entity_mentioned or owner is scope.main
                return owner.plural
            if stem:
                return pluralize(stem)
    return plural_phrase(text)


def _is_short_key_of(words: str, singular: str) -> bool:
    """'rid' of 'review', 'pid' of 'paper': an initial-plus-id key column of a one-word table."""
    return len(words) == 3 and words.endswith("id") and " " not in singular and words[0] == singular[0]


def is_count_all(node: Optional[exp.Expression]) -> bool:
    """``COUNT(*)`` / ``COUNT(1)``."""
    if not isinstance(node, exp.Count):
        return False
    arg = node.this
    return arg is None or isinstance(arg, exp.Star) or is_number_literal(arg)


@rules(exp.Count)
def _count(node: exp.Expression, scope: Scope) -> str:
    arg = node.this
    if is_count_all(node):
        return _count_all(scope)
    if isinstance(arg, exp.Distinct):
        values = [counted_noun(e, scope) for e in arg.expressions]
        branch = single_branch(arg.expressions[0]) if len(arg.expressions) == 1 else None
        if branch is not None:
            return (
                f"the number of distinct {plural_phrase(value_np(branch[1], scope))}"
                f" with {dispatch.cond_phrase(branch[0], scope)}"
            )
        return "the number of distinct " + and_list(values)
    branch = single_branch(arg)
    if branch is not None:
        return _conditional_count(branch[0], scope)
    counted = counted_noun(arg, scope)
    if counted == scope.entity().plural:
        return _count_all(scope)
    return "the number of " + counted


AGGREGATE_WORDS: dict[type, str] = {
    exp.Sum: "total",
    exp.Avg: "average",
    exp.Min: "minimum",
    exp.Max: "maximum",
    exp.Median: "median",
    exp.Stddev: "standard deviation of",
    exp.StddevPop: "standard deviation of",
    exp.StddevSamp: "standard deviation of",
    exp.Variance: "variance of",
    exp.VariancePop: "variance of",
    exp.AnyValue: "any",
}


@rules(*AGGREGATE_WORDS)
def _aggregate(node: exp.Expression, scope: Scope) -> str:
    word = AGGREGATE_WORDS[type(node)]
    arg = node.this
    distinct = isinstance(arg, exp.Distinct)
    if distinct:
        arg = arg.expressions[0] if arg.expressions else None
    branch = single_branch(arg)
    if branch is not None:
        condition, value = branch
        if type(node) is exp.Sum and _is_one(value):
            return _conditional_count(condition, scope)
        scope.entity_mentioned = True
        entity = scope.entity().plural
        return (
            _aggregate_of(word, value_np(value, scope))
            + f" of {entity} with {dispatch.cond_phrase(condition, scope)}"
        )
    text = value_np(arg, scope)
    if word == "total" and strip_article(text).startswith("total"):
        word = "combined"
    if word.endswith(" of"):
        return f"the {word} {'distinct ' if distinct else ''}{text}"
    return _aggregate_of(word + (" distinct" if distinct else ""), text)


@rules(exp.GroupConcat, exp.ArrayAgg)
def _list_aggregate(node: exp.Expression, scope: Scope) -> str:
    arg = node.this
    if isinstance(arg, exp.Distinct) and arg.expressions:
        return "the list of distinct " + plural_phrase(value_np(arg.expressions[0], scope))
    return "the list of " + plural_phrase(value_np(arg, scope))


@rules(exp.CountIf)
def _count_if(node: exp.Expression, scope: Scope) -> str:
    return _conditional_count(node.this, scope)


@rules(exp.ApproxDistinct)
def _approx_distinct(node: exp.Expression, scope: Scope) -> str:
    return "the approximate number of distinct " + plural_phrase(value_np(node.this, scope))


@rules(exp.Filter)
def _filter(node: exp.Expression, scope: Scope) -> str:
    where = node.expression
    condition = where.this if isinstance(where, exp.Where) else where
    inner = node.this
    if is_count_all(inner):
        return _conditional_count(condition, scope)
    scope.entity_mentioned = True
    return (
        f"{value_np(inner, scope)} of {scope.entity().plural} with {dispatch.cond_phrase(condition, scope)}"
    )


@rules(exp.WithinGroup)
def _within_group(node: exp.Expression, scope: Scope) -> str:
    func, order = node.this, node.expression
    keys = order.expressions if isinstance(order, exp.Order) else []
    target = value_np(keys[0].this, scope) if keys else "the values"
    fraction = func.this if isinstance(func, (exp.PercentileCont, exp.PercentileDisc)) else None
    if isinstance(fraction, exp.Literal) and fraction.this in ("0.5", ".5"):
        return _aggregate_of("median", target)
    if isinstance(fraction, exp.Literal):
        try:
            percent = f"{float(fraction.this) * 100:g}"
        except ValueError:
            percent = fraction.this
        return f"the {percent}th percentile of {target}"
    return f"{value_np(func, scope)} of {target}"


# --- arithmetic -------------------------------------------------------------------------------


def is_number_literal(node: Optional[exp.Expression], values: tuple[str, ...] = ()) -> bool:
    node = unwrap(node)
    return (
        isinstance(node, exp.Literal)
        and not node.is_string
        and (not values or node.this in values)
    )


@rules(exp.Div, exp.SafeDivide, exp.IntDiv)
def _div(node: exp.Expression, scope: Scope) -> str:
    left, right = node.this, node.expression
    if is_number_literal(right):
        return f"{value_np(left, scope)} divided by {value_np(right, scope)}"
    hundredths = _times_hundred(left)
    if hundredths is not None:
        return f"the percentage of {value_np(hundredths, scope)} relative to {value_np(right, scope)}"
    return f"the ratio of {value_np(left, scope)} to {value_np(right, scope)}"


def _times_hundred(node: Optional[exp.Expression]) -> Optional[exp.Expression]:
    """x for ``x * 100`` or ``100.0 * x``, else None."""
    node = unwrap(node)
    if not isinstance(node, exp.Mul):
        return None
    if is_number_literal(node.expression, ("100", "100.0")):
        return node.this
    if is_number_literal(node.this, ("100", "100.0")):
        return node.expression
    return None


@rules(exp.Mul)
def _mul(node: exp.Expression, scope: Scope) -> str:
    ratio = unwrap(_times_hundred(node))
    if isinstance(ratio, (exp.Div, exp.SafeDivide)):
        return (
            f"the percentage of {value_np(ratio.this, scope)} relative to "
            f"{value_np(ratio.expression, scope)}"
        )
    return f"{value_np(node.this, scope)} times {value_np(node.expression, scope)}"


def _interval_text(node: exp.Expression, scope: Scope) -> Optional[str]:
    """'7 days' for INTERVAL '7 days' / INTERVAL '7' DAY, else None."""
    if not isinstance(node, exp.Interval):
        return None
    amount = node.this
    unit = node.args.get("unit")
    amount_text = amount.name if isinstance(amount, exp.Literal) else value_np(amount, scope)
    if unit is None:
        return amount_text.lower()
    unit_word = singularize(humanize(unit.name))
    return f"{amount_text} {unit_word if amount_text in ('1', '1.0') else pluralize(unit_word)}"


@rules(exp.Sub)
def _sub(node: exp.Expression, scope: Scope) -> str:
    left, right = node.this, node.expression
    interval = _interval_text(right, scope)
    if interval is not None:
        return f"{interval} before {value_np(left, scope)}"
    return f"the difference between {value_np(left, scope)} and {value_np(right, scope)}"


@rules(exp.Add)
def _add(node: exp.Expression, scope: Scope) -> str:
    left, right = node.this, node.expression
    interval = _interval_text(right, scope)
    if interval is not None:
        return f"{interval} after {value_np(left, scope)}"
    return f"{value_np(left, scope)} plus {value_np(right, scope)}"


@rules(exp.Mod)
def _mod(node: exp.Expression, scope: Scope) -> str:
    return f"the remainder of {value_np(node.this, scope)} divided by {value_np(node.expression, scope)}"


@rules(exp.Interval)
def _interval(node: exp.Expression, scope: Scope) -> str:
    return _interval_text(node, scope) or "a time span"


@rules(exp.DPipe, exp.Concat, exp.ConcatWs)
def _concat(node: exp.Expression, scope: Scope) -> str:
    if isinstance(node, exp.DPipe):
        parts = operands(node, exp.DPipe)
    else:
        parts = list(node.expressions)
        if isinstance(node, exp.ConcatWs):
            parts = parts[1:]
    texts = [
        value_np(part, scope)
        for part in parts
        if not (isinstance(part, exp.Literal) and part.is_string and not part.this.strip(" -_,.:/|"))
    ]
    return "the combination of " + and_list(texts) if len(texts) > 1 else and_list(texts)
