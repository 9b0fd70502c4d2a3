"""Conditions: boolean expressions as phrases that read after "with" / "have"
("milliseconds greater than 300000"); :func:`cond_phrase` is the entry point.
"""

from __future__ import annotations

import re
from typing import Optional

from sqlglot import exp

from transforms.sql.question_rules import dispatch
from transforms.sql.question_rules.nodes import conjuncts, filters_of, operands, unwrap
from transforms.sql.question_rules.scopes import MAX_DEPTH, Scope, build_scope
from transforms.sql.question_rules.values import (
    STRING_TYPES,
    columns_in,
    folded_string,
    is_number_literal,
    quote,
    value_np,
)
from transforms.sql.question_rules.words import and_list, humanize, singularize


_MAX_LIST_VALUES = 30  # IN-list values named before "or N other values": each one is a condition


_COMPARISONS: dict[type, str] = {
    exp.EQ: "equal to",
    exp.NullSafeEQ: "equal to",
    exp.NEQ: "not equal to",
    exp.NullSafeNEQ: "not equal to",
    exp.GT: "greater than",
    exp.GTE: "at least",
    exp.LT: "less than",
    exp.LTE: "at most",
}
_NEGATED: dict[type, type] = {
    exp.EQ: exp.NEQ,
    exp.NEQ: exp.EQ,
    exp.NullSafeEQ: exp.NullSafeNEQ,
    exp.NullSafeNEQ: exp.NullSafeEQ,
    exp.GT: exp.LTE,
    exp.LTE: exp.GT,
    exp.LT: exp.GTE,
    exp.GTE: exp.LT,
}
_MIRRORED: dict[type, type] = {exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.LTE, exp.LTE: exp.GTE}
_PATTERN_TYPES = (exp.Like, exp.ILike)
_VALUE_LIKE = (exp.Literal, exp.Placeholder, exp.Parameter, exp.Boolean, exp.Neg) + STRING_TYPES


def cond_phrase(node: Optional[exp.Expression], scope: Scope, negated: bool = False, nested: bool = False) -> str:
    """Describe a boolean expression as a phrase that reads after 'with' / 'have'."""
    while isinstance(node, exp.Paren):
        node = node.this
    if node is None:
        return "no condition"
    if isinstance(node, exp.Not):
        return cond_phrase(node.this, scope, not negated, nested)
    if isinstance(node, exp.And):
        return _connective(conjuncts(node), scope, negated, nested, is_and=True)
    if isinstance(node, exp.Or):
        return _connective(operands(node, exp.Or), scope, negated, nested, is_and=False)
    if node.args.get("negate"):  # x NOT LIKE y, x IS NOT NULL in some dialects
        negated = not negated
    node_type = type(node)
    if node_type in _COMPARISONS:
        return _comparison(node, scope, negated)
    if isinstance(node, _PATTERN_TYPES):
        return _pattern(node, scope, negated)
    if isinstance(node, exp.In):
        return _in(node, scope, negated)
    if isinstance(node, exp.Between):
        low, high = value_np(node.args.get("low"), scope), value_np(node.args.get("high"), scope)
        word = "not between" if negated else "between"
        return f"{value_np(node.this, scope)} {word} {low} and {high}"
    if isinstance(node, exp.Is):
        return _is(node, scope, negated)
    if isinstance(node, exp.Exists):
        return _exists(node, scope, negated)
    if isinstance(node, (exp.RegexpLike, exp.SimilarTo, exp.Glob)):
        word = "not matching" if negated else "matching"
        return f"{value_np(node.this, scope)} {word} the pattern {value_np(node.expression, scope)}"
    if isinstance(node, exp.StartsWith):
        word = "not starting with" if negated else "starting with"
        return f"{value_np(node.this, scope)} {word} {value_np(node.expression, scope)}"
    if isinstance(node, (exp.Column, exp.Boolean)):
        truth = "false" if negated else "true"
        if isinstance(node, exp.Column):
            flag = _flag_phrase(node, not negated, scope)
            return flag if flag is not None else f"{value_np(node, scope)} {truth}"
        return truth
    columns = columns_in(node, scope)
    basis = f"a condition on {and_list(columns)}" if columns else "the given condition"
    return f"no {basis[2:]}" if negated else basis


def _connective(
    parts: list[exp.Expression], scope: Scope, negated: bool, nested: bool, is_and: bool
) -> str:
    if negated and not is_and:  # NOT (a OR b): neither a nor b
        texts = [cond_phrase(part, scope, False, True) for part in parts]
        merged = _merge_patterns(parts, texts, scope, all_of=False, none_of=True)
        if merged is not None:
            return merged
        return "neither " + " nor ".join(texts)
    effective_and = is_and != negated  # De Morgan for NOT (a AND b)
    if not effective_and:
        merged = _merge_equalities(parts, scope, negated)
        if merged is not None:
            return merged
    texts = [cond_phrase(part, scope, negated, True) for part in parts]
    if isinstance(parts[0], _PATTERN_TYPES + (exp.Not,)):
        merged = _merge_patterns(parts, texts, scope, all_of=effective_and)
        if merged is not None:
            return f"either {merged}" if nested and not effective_and else merged
    if effective_and:
        return " and ".join(texts)
    joined = and_list(texts, "or")
    return f"either {joined}" if nested else joined


def _merge_equalities(parts: list[exp.Expression], scope: Scope, negated: bool) -> Optional[str]:
    """``a = 1 OR a = 2`` -> 'a 1 or 2' (same column, literal values)."""
    left_text: Optional[str] = None
    values: list[exp.Expression] = []
    for part in parts:
        if negated or not isinstance(part, exp.EQ) or not isinstance(part.expression, _VALUE_LIKE):
            return None
        text = value_np(part.this, scope)
        if left_text is not None and text != left_text:
            return None
        left_text = text
        values.append(part.expression)
    if left_text is None or len(values) < 2:
        return None
    return _one_of(left_text, values, scope, negated=False)


_PATTERN_WORDS = ("containing ", "starting with ", "ending with ")


def _merge_patterns(
    parts: list[exp.Expression], texts: list[str], scope: Scope, all_of: bool, none_of: bool = False
) -> Optional[str]:
    """One column against several patterns of one kind, said once.

    ``t LIKE '%a%' OR t LIKE '%b%'`` -> 't containing "a" or "b"';
    ``t NOT LIKE '%a%' AND t NOT LIKE '%b%'`` (``all_of``) and ``NOT (t LIKE '%a%' OR t LIKE
    '%b%')`` (``none_of``) -> 't containing none of "a" and "b"'.
    """
    if len(parts) < 2:
        return None
    patterns = []
    for part in parts:
        pattern = part.this if isinstance(part, exp.Not) else part
        if not isinstance(pattern, _PATTERN_TYPES):
            return None
        patterns.append(pattern)
    left = value_np(patterns[0].this, scope)
    for kind in _PATTERN_WORDS:
        prefix = f"{left} {'not ' if all_of else ''}{kind}"
        rest = [text[len(prefix) :] for text in texts if text.startswith(prefix)]
        if len(rest) == len(texts) and all(r.startswith('"') and r.count('"') == 2 for r in rest):
            if all_of or none_of:
                return f"{left} {kind}none of {and_list(rest)}"
            return prefix + and_list(rest, "or")
    return None


_EXCLUSION = re.compile(r'(.+) not (containing|starting with|ending with) ("[^"]*")')


def merge_exclusions(texts: list[str]) -> list[str]:
    """Say neighbouring exclusions of one column once: 'name containing none of "a" and "e"'.

    >>> merge_exclusions(['name not containing "a"', 'name not containing "e"', 'total 5'])
    ['name containing none of "a" and "e"', 'total 5']
    """
    out: list[str] = []
    run: list[str] = []
    key: Optional[tuple[str, str]] = None
    if len(texts) < 2:
        return texts
    for text in texts + [""]:
        match = _EXCLUSION.fullmatch(text) if " not " in text else None
        found = (match.group(1), match.group(2)) if match else None
        if found is not None and found == key:
            run.append(match.group(3))
            continue
        if key is not None:
            out.append(f"{key[0]} {key[1]} none of {and_list(run)}" if len(run) > 1
                       else f"{key[0]} not {key[1]} {run[0]}")
        key, run = (found, [match.group(3)]) if found is not None else (None, [])
        if found is None and text:
            out.append(text)
    return out


def _comparison(node: exp.Expression, scope: Scope, negated: bool) -> str:
    left, right = node.this, node.expression
    node_type = type(node)
    if isinstance(unwrap(left), _VALUE_LIKE) and not isinstance(unwrap(right), _VALUE_LIKE):
        left, right = right, left
        node_type = _MIRRORED.get(node_type, node_type)
    if negated:
        node_type = _NEGATED[node_type]
    same = _correlation_text(left, right, scope)
    if same is not None and node_type in (exp.EQ, exp.NullSafeEQ):
        return same
    right_node = unwrap(right)
    truth = _flag_value(right_node) if isinstance(right_node, (exp.Boolean, exp.Literal)) else None
    if truth is not None and node_type in (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ):
        flag = _flag_phrase(left, truth == (node_type in (exp.EQ, exp.NullSafeEQ)), scope)
        if flag is not None:
            return flag
    left_text = value_np(left, scope)
    counted = _count_comparison(left_text, node_type, right_node)
    if counted is not None:
        return counted
    if node_type in (exp.EQ, exp.NullSafeEQ):
        if isinstance(right_node, exp.Boolean):
            return f"{left_text} {value_np(right_node, scope)}"
        if isinstance(right_node, (exp.Literal, exp.Neg) + STRING_TYPES):
            return f"{left_text} {value_np(right, scope)}"
    return f"{left_text} {_COMPARISONS[node_type]} {value_np(right, scope)}"


_FLAG_PREFIXES = ("is ", "has ")


def _flag_value(node: Optional[exp.Expression]) -> Optional[bool]:
    """True/False for ``TRUE``/``1``/``FALSE``/``0`` (how flags are compared), else None."""
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal) and not node.is_string and node.this in ("1", "0"):
        return node.this == "1"
    return None


def _flag_words(node: Optional[exp.Expression]) -> Optional[tuple[str, str]]:
    """('is', 'open') for a flag column ``is_open`` / ``IsOpen`` / ``has_wifi``, else None."""
    node = unwrap(node)
    if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
        return None
    words = humanize(node.name)
    for prefix in _FLAG_PREFIXES:
        if words.startswith(prefix) and len(words) > len(prefix):
            return prefix.strip(), words[len(prefix) :]
    return None


def _flag_phrase(node: Optional[exp.Expression], truth: bool, scope: Scope) -> Optional[str]:
    """A flag test as words that read after 'with'/'have': 'wifi', 'no wifi', 'the open flag set'.

    >>> _flag_phrase(exp.column("has_wifi"), True, Scope(None))
    'wifi'
    >>> _flag_phrase(exp.column("is_open"), False, Scope(None))
    'the open flag not set'
    """
    found = _flag_words(node)
    if found is None:
        return None
    verb, rest = found
    if verb == "has":
        return rest if truth else f"no {rest}"
    return f"the {rest} flag {'set' if truth else 'not set'}"


def main_flag(node: exp.Expression, scope: Scope) -> Optional[str]:
    """'open' for a top-level ``is_open = 1`` (or ``is_open``) on the main table: it becomes an
    adjective of the rows ('How many open businesses are there?')."""
    if isinstance(node, (exp.EQ, exp.Is)):
        if not isinstance(node.expression, (exp.Literal, exp.Boolean)):
            return None
    elif not isinstance(node, exp.Column):
        return None
    if scope.main is None:
        return None
    column, truth = node, True
    if isinstance(node, (exp.EQ, exp.Is)):
        column, truth = node.this, _flag_value(unwrap(node.expression))
    column = unwrap(column)
    found = _flag_words(column) if truth else None
    if found is None or found[0] != "is" or " " in found[1] or scope.main is None:
        return None
    if column.table:
        if scope.resolve(column.table)[0] is not scope.main:
            return None
    elif len(scope.order) > 1:
        return None
    return found[1]


_COUNT_COMPARISONS: dict[type, str] = {
    exp.GT: "more than",
    exp.GTE: "at least",
    exp.LT: "fewer than",
    exp.LTE: "at most",
    exp.EQ: "exactly",
}


def _count_comparison(left_text: str, node_type: type, right: Optional[exp.Expression]) -> Optional[str]:
    """'more than 2 papers' for 'the number of papers' > 2 (None when it is not that shape).

    >>> _count_comparison("the number of papers", exp.GT, exp.Literal.number(2))
    'more than 2 papers'
    >>> _count_comparison("the number of papers", exp.EQ, exp.Literal.number(1))
    'exactly 1 paper'
    """
    word = _COUNT_COMPARISONS.get(node_type)
    if word is None or not left_text.startswith("the number of ") or not is_number_literal(right):
        return None
    noun = left_text[len("the number of ") :]
    amount = right.this
    if amount in ("1", "1.0"):
        head, sep, tail = noun.partition(" with ")
        noun = singularize(head) + sep + tail
    return f"{word} {amount} {noun}"


def _correlation_text(left: exp.Expression, right: exp.Expression, scope: Scope) -> Optional[str]:
    """'the same x' for ``inner.x = outer.x`` in a correlated subquery, else None."""
    if scope.parent is None or not isinstance(left, exp.Column) or not isinstance(right, exp.Column):
        return None
    left_outer = bool(left.table) and scope.resolve(left.table)[1]
    right_outer = bool(right.table) and scope.resolve(right.table)[1]
    if left_outer == right_outer:
        return None
    inner_column = right if left_outer else left
    return f"the same {humanize(inner_column.name)}"


def _pattern(node: exp.Expression, scope: Scope, negated: bool) -> str:
    left = value_np(node.this, scope)
    pattern = unwrap(node.expression)
    prefix = "not " if negated else ""
    text = folded_string(pattern)
    if text is None:
        return f"{left} {prefix}matching {value_np(pattern, scope)}"
    if "_" in text.replace("\\_", ""):
        return f"{left} {prefix}matching the pattern {quote(text)}"
    pieces = [piece for piece in text.split("%") if piece]
    if not pieces:  # LIKE '%' matches every non-null value
        return f"no {left}" if negated else f"a known {left}"
    starts, ends = not text.startswith("%"), not text.endswith("%")
    if len(pieces) > 1 and not starts and not ends:
        if len(set(pieces)) == 1:  # '%,%,%': the piece at least twice
            times = {2: "twice", 3: "three times"}.get(len(pieces), f"{len(pieces)} times")
            return f"{left} {prefix}containing {quote(pieces[0])} at least {times}"
        followed = " followed by ".join(quote(piece) for piece in pieces)
        return f"{left} {prefix}containing {followed}"
    quoted = " then ".join(quote(piece) for piece in pieces)
    if starts and ends and len(pieces) == 1:
        return f"{left} not equal to {quoted}" if negated else f"{left} {quoted}"
    if starts and not ends and len(pieces) == 1:
        return f"{left} {prefix}starting with {quoted}"
    if ends and not starts and len(pieces) == 1:
        return f"{left} {prefix}ending with {quoted}"
    if not starts and not ends:
        return f"{left} {prefix}containing {quoted}"
    return f"{left} {prefix}matching the pattern {quote(text)}"


def _in(node: exp.Expression, scope: Scope, negated: bool) -> str:
    left = value_np(node.this, scope)
    query = node.args.get("query")
    if query is not None:
        word = "not in" if negated else "in"
        return f"{left} {word} the set of {dispatch.query_np(query, scope)}"
    return _one_of(left, node.expressions, scope, negated)


def _one_of(left: str, items: list[exp.Expression], scope: Scope, negated: bool) -> str:
    """'genreid one of 1, 3 or 5' (at most a few values named, then 'N other values')."""
    shown = items if len(items) <= _MAX_LIST_VALUES + 1 else items[:_MAX_LIST_VALUES]
    values = [value_np(item, scope) for item in shown]
    if len(items) > len(shown):  # never 'or 1 other values': that one is named instead
        values.append(f"{len(items) - len(shown)} other values")
    if not values:
        return f"{left} in a given list"
    if len(values) == 1:
        return f"{left} not equal to {values[0]}" if negated else f"{left} {values[0]}"
    if len(values) == 2 and not negated:
        return f"{left} {values[0]} or {values[1]}"
    return f"{left} {'not one of' if negated else 'one of'} {and_list(values, 'or')}"


def _is(node: exp.Expression, scope: Scope, negated: bool) -> str:
    target = value_np(node.this, scope)
    other = node.expression
    if isinstance(other, exp.Null):
        return f"a known {target}" if negated else f"no {target}"
    if isinstance(other, exp.Boolean):
        truth = bool(other.this) != negated
        flag = _flag_phrase(node.this, truth, scope)
        return flag if flag is not None else f"{target} {'true' if truth else 'false'}"
    return f"{target} {'not equal to' if negated else 'equal to'} {value_np(other, scope)}"


def _exists(node: exp.Expression, scope: Scope, negated: bool) -> str:
    query = node.this
    while isinstance(query, exp.Subquery):
        query = query.this
    if not isinstance(query, exp.Select) or scope.depth >= MAX_DEPTH:
        return "no matching record" if negated else "a matching record"
    inner = build_scope(query, scope)
    inner.correlation = "drop"
    kept = [c for c in filters_of(query) if not is_correlation(c, inner)]
    cond = " and ".join(cond_phrase(c, inner, nested=True) for c in kept)
    quantity = "no" if negated else "at least one"
    return f"{quantity} {inner.entity().singular}" + (f" with {cond}" if cond else "")


def is_correlation(node: exp.Expression, scope: Scope) -> bool:
    """A comparison of a column of this scope with a column of an outer scope."""
    if not isinstance(node, (exp.EQ, exp.NullSafeEQ)):
        return False
    left, right = node.this, node.expression
    if not isinstance(left, exp.Column) or not isinstance(right, exp.Column):
        return False
    sides = [bool(col.table) and scope.resolve(col.table)[1] for col in (left, right)]
    return sides[0] != sides[1]
