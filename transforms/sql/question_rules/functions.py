"""Values, continued: scalar functions, dates and windows as noun phrases.

Rules registered into :data:`.values.VALUE_RULES` at import (the package imports this module
before anything is described).
"""

from __future__ import annotations

import re
from typing import Optional

from sqlglot import exp

from transforms.sql.question_rules import dispatch
from transforms.sql.question_rules.scopes import Scope, has_filtered_query
from transforms.sql.question_rules.values import (
    VALUE_RULES,
    columns_in,
    computed_value,
    is_number_literal,
    rules,
    string_value,
    value_np,
)
from transforms.sql.question_rules.words import and_list, humanize, pluralize, singularize, strip_article


# --- scalar functions -------------------------------------------------------------------------


@rules(exp.Coalesce)
def _coalesce(node: exp.Expression, scope: Scope) -> str:
    first = value_np(node.this, scope)
    rest = [value_np(e, scope) for e in node.expressions]
    return f"{first} (or {and_list(rest, 'or')} if missing)" if rest else first


@rules(exp.Round)
def _round(node: exp.Expression, scope: Scope) -> str:
    decimals = node.args.get("decimals")
    text = value_np(node.this, scope)
    if isinstance(decimals, exp.Literal):
        places = decimals.this
        return f"{text} rounded to {places} decimal place{'' if places == '1' else 's'}"
    return f"{text} rounded"


@rules(exp.Ceil, exp.Floor)
def _ceil_floor(node: exp.Expression, scope: Scope) -> str:
    direction = "up" if isinstance(node, exp.Ceil) else "down"
    return f"{value_np(node.this, scope)} rounded {direction}"


@rules(exp.Abs)
def _abs(node: exp.Expression, scope: Scope) -> str:
    return f"the absolute value of {value_np(node.this, scope)}"


@rules(exp.Length)
def _length(node: exp.Expression, scope: Scope) -> str:
    return f"the length of {value_np(node.this, scope)}"


@rules(exp.Substring, exp.Left, exp.Right)
def _substring(node: exp.Expression, scope: Scope) -> str:
    text = value_np(node.this, scope)
    if isinstance(node, (exp.Left, exp.Right)):
        count = node.expression
        side = "first" if isinstance(node, exp.Left) else "last"
    else:
        start, count, side = node.args.get("start"), node.args.get("length"), "first"
        if not is_number_literal(start, ("1",)):
            return f"part of {text}"
    if isinstance(count, exp.Literal):
        return f"the {side} {count.this} characters of {text}"
    return f"part of {text}"


@rules(exp.Greatest, exp.Least)
def _greatest_least(node: exp.Expression, scope: Scope) -> str:
    word = "largest" if isinstance(node, exp.Greatest) else "smallest"
    texts = [value_np(node.this, scope)] + [value_np(e, scope) for e in node.expressions]
    return f"the {word} of {and_list(texts)}"


@rules(exp.Case, exp.If)
def _case(node: exp.Expression, scope: Scope) -> str:
    if has_filtered_query(node, scope):
        return _case_branches(node, scope)
    columns = columns_in(node, scope)
    basis = and_list(columns) if columns else "the given conditions"
    return f"a category based on {basis}"


def _case_branches(node: exp.Expression, scope: Scope) -> str:
    """'x if c, otherwise y', every branch said.

    For a CASE whose conditions or values query rows with conditions of their own
    (``CASE WHEN EXISTS (SELECT .. WHERE ..) THEN ..``): 'a category based on x' would hide
    what those queries keep. Other CASEs stay a category (their branches are values).
    """
    if isinstance(node, exp.If):
        branches = [(node.this, node.args.get("true"))]
        default, subject = node.args.get("false"), None
    else:
        branches = [(branch.this, branch.args.get("true")) for branch in node.args.get("ifs") or ()]
        default, subject = node.args.get("default"), node.this
    texts = []
    for condition, value in branches:
        if subject is not None:  # CASE x WHEN 1 THEN ..
            when = f"{value_np(subject, scope)} {value_np(condition, scope)}"
        else:
            when = dispatch.cond_phrase(condition, scope, nested=True)
        texts.append(f"{value_np(value, scope)} if {when}")
    otherwise = value_np(default, scope) if default is not None else "nothing"
    return ", ".join(texts) + f", otherwise {otherwise}"


# --- dates ------------------------------------------------------------------------------------

_FORMAT_WORDS = {
    "%Y": "year",
    "%y": "year",
    "%G": "year",
    "%m": "month",
    "%b": "month",
    "%B": "month",
    "%d": "day",
    "%e": "day",
    "%j": "day of the year",
    "%H": "hour",
    "%I": "hour",
    "%M": "minute",
    "%S": "second",
    "%f": "second",
    "%w": "weekday",
    "%u": "weekday",
    "%a": "weekday",
    "%A": "weekday",
    "%W": "week",
    "%U": "week",
    "%V": "week",
    "%s": "unix time",
    "%p": "am or pm",
}
_FORMAT_TOKEN = re.compile(r"%.|[^%]")
_SQLITE_MODIFIER = re.compile(
    r"^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*(year|month|day|hour|minute|second)s?\s*$", re.IGNORECASE
)
_SQLITE_DATE_FUNCS = frozenset({"DATE", "DATETIME", "JULIANDAY", "TIME", "UNIXEPOCH", "STRFTIME"})


def _format_words(fmt: str) -> Optional[str]:
    """'%Y-%m' -> 'year and month'; None if the format holds anything but tokens/separators."""
    words: list[str] = []
    for token in _FORMAT_TOKEN.findall(fmt):
        if token.startswith("%"):
            word = _FORMAT_WORDS.get(token)
            if word is None:
                return None
            if word not in words:
                words.append(word)
        elif token.isalnum():
            return None
    if words == ["year", "month", "day"]:
        return "date"
    return and_list(words) if words else None


def _formatted(fmt_node: Optional[exp.Expression], target: str) -> str:
    fmt = fmt_node.this if isinstance(fmt_node, exp.Literal) else None
    words = _format_words(fmt) if fmt else None
    if words is None:
        return f"{target} formatted as \"{fmt}\"" if fmt else f"the formatted {target}"
    if words == "unix time":
        return f"the unix time of {target}"
    return f"the {words} of {target}"


@rules(exp.TimeToStr)
def _time_to_str(node: exp.Expression, scope: Scope) -> str:
    return _formatted(node.args.get("format"), value_np(node.this, scope))


@rules(exp.Extract)
def _extract(node: exp.Expression, scope: Scope) -> str:
    unit = humanize(node.this.name) if node.this is not None else "part"
    return f"the {singularize(unit)} of {value_np(node.expression, scope)}"


@rules(
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Quarter,
    exp.Week,
    exp.WeekOfYear,
    exp.DayOfWeek,
    exp.DayOfMonth,
    exp.DayOfYear,
    exp.Hour,
    exp.Minute,
    exp.Second,
)
def _date_part(node: exp.Expression, scope: Scope) -> str:
    return f"the {humanize(type(node).__name__)} of {value_np(node.this, scope)}"


@rules(exp.DateTrunc, exp.TimestampTrunc, exp.DatetimeTrunc, exp.TimeTrunc)
def _date_trunc(node: exp.Expression, scope: Scope) -> str:
    unit = node.args.get("unit")
    unit_word = singularize(humanize(unit.name)) if unit is not None else "period"
    return f"the {unit_word} of {value_np(node.this, scope)}"


def _unit_amount(amount: str, unit: Optional[exp.Expression]) -> str:
    unit_word = singularize(humanize(unit.name)) if unit is not None else "day"
    return f"{amount} {unit_word if amount == '1' else pluralize(unit_word)}"


@rules(exp.DateAdd, exp.DateSub, exp.TsOrDsAdd, exp.TimestampAdd, exp.TimestampSub)
def _date_add(node: exp.Expression, scope: Scope) -> str:
    amount = value_np(node.expression, scope)
    negative = amount.startswith("-")
    if isinstance(node, (exp.DateSub, exp.TimestampSub)):
        negative = not negative
    direction = "before" if negative else "after"
    return f"{_unit_amount(amount.lstrip('-'), node.args.get('unit'))} {direction} {value_np(node.this, scope)}"


@rules(exp.DateDiff, exp.TimestampDiff, exp.DatetimeDiff, exp.TsOrDsDiff)
def _date_diff(node: exp.Expression, scope: Scope) -> str:
    unit = node.args.get("unit")
    unit_word = pluralize(singularize(humanize(unit.name))) if unit is not None else "days"
    return (
        f"the number of {unit_word} between {value_np(node.expression, scope)}"
        f" and {value_np(node.this, scope)}"
    )


@rules(exp.CurrentDate)
def _current_date(node: exp.Expression, scope: Scope) -> str:
    return "today"


@rules(exp.CurrentTimestamp, exp.CurrentDatetime, exp.CurrentTime)
def _current_time(node: exp.Expression, scope: Scope) -> str:
    return "now"


def _sqlite_datetime(name: str, args: list[exp.Expression], scope: Scope) -> str:
    """SQLite ``date(x, '-7 days', ...)`` family: a base time shifted by modifiers."""
    fmt = args[0] if name == "STRFTIME" and args else None
    rest = args[1:] if name == "STRFTIME" else args
    if not rest:
        return _formatted(fmt, "now") if fmt is not None else "now"
    base_node = rest[0]
    if isinstance(base_node, exp.Literal) and base_node.is_string and base_node.this.lower() == "now":
        text = "today" if name == "DATE" else "now"
    else:
        text = value_np(base_node, scope)
    for modifier in rest[1:]:
        match = _SQLITE_MODIFIER.match(modifier.this) if isinstance(modifier, exp.Literal) else None
        if match:
            sign, amount, unit = match.groups()
            unit_word = unit.lower()
            amount_text = f"{amount} {unit_word if amount == '1' else pluralize(unit_word)}"
            text = f"{amount_text} {'before' if sign == '-' else 'after'} {text}"
        elif isinstance(modifier, exp.Literal) and modifier.this.lower().startswith("start of "):
            text = f"the start of the {modifier.this[9:].strip().lower()} of {text}"
    if fmt is not None:
        return _formatted(fmt, text)
    return text


@rules(exp.Date, exp.Datetime, exp.Time)
def _date_call(node: exp.Expression, scope: Scope) -> str:
    """``DATE(x)`` is x; ``DATE('now', '-7 days')`` (SQLite modifiers) is '7 days before today'."""
    args = [node.this] + [
        value for key, value in node.args.items() if key != "this" and isinstance(value, exp.Expression)
    ]
    if len(args) == 1 and string_value(node.this) != "now":
        return value_np(node.this, scope)
    name = "DATE" if isinstance(node, exp.Date) else "DATETIME"
    return _sqlite_datetime(name, [arg for arg in args if arg is not None], scope)


@rules(exp.Anonymous)
def _anonymous(node: exp.Expression, scope: Scope) -> str:
    name = str(node.this or "")
    args = list(node.expressions)
    if name.upper() in _SQLITE_DATE_FUNCS:
        return _sqlite_datetime(name.upper(), args, scope)
    words = humanize(name)
    if not args:
        return f"the {words}"
    return f"the {words} of {and_list([value_np(arg, scope) for arg in args[:3]])}"


def _function(node: exp.Expression, scope: Scope) -> str:
    """Known-but-unmapped sqlglot functions: 'the <name> of <arguments>'."""
    words = humanize(type(node).__name__)
    args: list[str] = []
    for value in node.args.values():
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, exp.Expression) and not isinstance(item, exp.DataType):
                args.append(value_np(item, scope))
            if len(args) == 3:
                break
    return f"the {words} of {and_list(args)}" if args else f"the {words}"


VALUE_RULES[exp.Func] = _function


@rules(exp.Window)
def _window_value(node: exp.Expression, scope: Scope) -> str:
    return window_phrase(node, scope)[1]


@rules(exp.Predicate, exp.Connector, exp.Not)
def _predicate_value(node: exp.Expression, scope: Scope) -> str:
    return f"whether it has {dispatch.cond_phrase(node, scope)}"


@rules(exp.Dot)
def _dot(node: exp.Expression, scope: Scope) -> str:
    return humanize(node.name) if node.name else computed_value(node, scope)


@rules(exp.Distinct)
def _distinct_value(node: exp.Expression, scope: Scope) -> str:
    return "the distinct " + and_list([value_np(e, scope) for e in node.expressions])


# --- windows ----------------------------------------------------------------------------------

_RANK_FUNCS = (exp.RowNumber, exp.Rank, exp.DenseRank)
_RUNNING_WORDS: dict[type, str] = {
    exp.Sum: "a running total of",
    exp.Count: "a running count of",
    exp.Avg: "a running average of",
    exp.Min: "a running minimum of",
    exp.Max: "a running maximum of",
}
_OFFSET_WORDS: dict[type, str] = {
    exp.Lag: "the previous",
    exp.Lead: "the next",
    exp.FirstValue: "the first",
    exp.LastValue: "the last",
    exp.NthValue: "the nth",
}


def order_keys(order: Optional[exp.Expression], scope: Scope) -> list[tuple[str, bool]]:
    if not isinstance(order, exp.Order):
        return []
    keys = []
    for ordered in order.expressions:
        target = ordered.this if isinstance(ordered, exp.Ordered) else ordered
        keys.append((value_np(target, scope), bool(ordered.args.get("desc"))))
    return keys


def window_phrase(node: exp.Expression, scope: Scope) -> tuple[str, str]:
    """(clause, noun phrase): ('ranked by x', 'the rank by x') for one window function."""
    func = node.this
    keys = order_keys(node.args.get("order"), scope)
    by = and_list([f"{text} (highest first)" if desc else text for text, desc in keys])
    partitions = [value_np(p, scope) for p in node.args.get("partition_by") or ()]
    within = f" within each {and_list(partitions)}" if partitions else ""
    by_text = f" by {by}" if by else ""
    if isinstance(func, _RANK_FUNCS):
        if not by:
            return f"numbered{within or ' in order'}", f"a sequence number{within}"
        return f"ranked{by_text}{within}", f"the rank{by_text}{within}"
    if isinstance(func, exp.Ntile):
        groups = value_np(func.this, scope)
        return (
            f"split into {groups} groups{by_text}{within}",
            f"the group out of {groups}{by_text}{within}",
        )
    if isinstance(func, (exp.PercentRank, exp.CumeDist)):
        phrase = f"the percentile rank{by_text}{within}"
        return f"with {phrase}", phrase
    offset_word = _OFFSET_WORDS.get(type(func))
    if offset_word is not None:
        phrase = f"{offset_word} {strip_article(value_np(func.this, scope))}{by_text}{within}"
        return f"with {phrase}", phrase
    running = _RUNNING_WORDS.get(type(func))
    if running is not None and keys:
        target = func.this
        if target is None or isinstance(target, exp.Star):
            phrase = f"a running count{by_text}{within}"
        else:
            phrase = f"{running} {strip_article(value_np(target, scope))}{by_text}{within}"
        return f"with {phrase}", phrase
    base = value_np(func, scope)
    phrase = f"{base}{within}" if within else f"{base} over all {scope.entity().plural}"
    return f"with {phrase}", phrase
