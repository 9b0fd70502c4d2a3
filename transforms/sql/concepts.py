"""SQL concept tags of a parsed query, from a fixed vocabulary (``CONCEPTS``).

``concept_tags`` walks the tree once and returns the sorted tags of the
constructs it uses, for any dialect sqlglot parses. It never generates SQL,
so it can run per record after the one parse. Tags are about what the query
*uses*, anywhere in it (CTE bodies and subqueries included).

Example:
    >>> import sqlglot
    >>> concept_tags(sqlglot.parse_one(
    ...     "SELECT g.name, COUNT(*) FROM track AS t JOIN genre AS g"
    ...     " ON t.genre_id = g.id GROUP BY g.name ORDER BY 2 DESC LIMIT 3"))
    ('aggregation', 'group_by', 'join', 'order_limit')
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Callable, Mapping

from sqlglot import exp

#: Every tag ``concept_tags`` can return, with what it means.
CONCEPTS: Mapping[str, str] = MappingProxyType({
    "join": "two or more row sources combined: JOIN of any kind, or comma-separated FROM",
    "aggregation": "an aggregate function (COUNT, SUM, AVG, MIN, MAX, ...) not used as a window function",
    "group_by": "a GROUP BY clause",
    "having": "a HAVING clause",
    "subquery": "a query nested in another: derived table, scalar, IN/EXISTS/ANY subquery (not CTE bodies or set-operation operands)",
    "cte": "a WITH common table expression",
    "recursive_cte": "WITH RECURSIVE",
    "window": "a window function (OVER ...)",
    "set_op": "UNION, INTERSECT or EXCEPT",
    "case": "conditional expression: CASE, IF/IIF",
    "date_fn": "date/time functions, EXTRACT, INTERVAL arithmetic, current date/time",
    "string_fn": "string functions: UPPER/LOWER, SUBSTR, TRIM, LENGTH, REPLACE, concatenation, ...",
    "order_limit": "ORDER BY or LIMIT/TOP/FETCH on a query (not ORDER BY inside OVER or an aggregate)",
    "distinct": "SELECT DISTINCT or an aggregate over DISTINCT values",
    "null_handling": "IS [NOT] NULL, COALESCE/IFNULL/NVL, NULLIF",
    "like": "LIKE/ILIKE pattern match (also GLOB, SIMILAR TO)",
    "in_list": "IN / NOT IN with a list of values",
    "between": "BETWEEN",
    "cast": "explicit type conversion: CAST, TRY_CAST, ::, CONVERT",
    "math": "arithmetic (+ - * / %, unary minus on a non-literal) or math functions (ROUND, ABS, POWER, ...)",
    "ratio": "a division whose divisor holds an aggregate: aggregate / aggregate, x / COUNT(*)",
    "self_join": "the same table twice among one query's FROM/JOIN sources",
    "exists": "EXISTS / NOT EXISTS",
})

_DATE_CLASS = re.compile(
    r"Date|Time|Year|Month|Day|Week|Quarter|Hour|Minute|Second|Epoch|Unix|Extract"
    r"|Interval|AddMonths|ToDays"
)
_NOT_DATE_CLASS = re.compile(r"^(JSON|Regexp|Struct|GetExtract|FeaturesAtTime|CurrentSecondaryRoles)")

_UNCONDITIONAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("join", ("Join",)),
    ("group_by", ("Group",)),
    ("having", ("Having",)),
    ("cte", ("CTE",)),
    ("window", ("Window",)),
    ("set_op", ("SetOperation",)),
    ("case", ("Case", "If", "DecodeCase")),
    ("date_fn", ("Interval",)),
    ("string_fn", (
        "Upper", "Lower", "Substring", "SubstringIndex", "Concat", "ConcatWs", "DPipe", "Trim",
        "Length", "Replace", "StrPosition", "Left", "Right", "Initcap", "Pad", "Split",
        "SplitPart", "Reverse", "Repeat", "RegexpReplace", "RegexpExtract", "RegexpExtractAll",
        "RegexpSubstr", "RegexpCount", "RegexpInstr", "RegexpSplit", "Translate", "Ascii", "Chr",
        "Unicode", "Soundex", "Levenshtein", "Overlay", "Space", "StartsWith", "EndsWith",
    )),
    ("distinct", ("Distinct",)),
    ("null_handling", ("Coalesce", "Nullif", "Nvl2")),
    ("like", ("Like", "ILike", "Glob", "SimilarTo")),
    ("between", ("Between",)),
    ("cast", ("Cast", "Convert", "CastToStrType")),
    ("math", (
        "Add", "Sub", "Mul", "Div", "Mod", "IntDiv", "SafeDivide", "Pow", "Round", "Abs", "Ceil",
        "Floor", "Sqrt", "Cbrt", "Ln", "Log", "Exp", "Sign", "Trunc", "Radians", "Degrees",
        "Sin", "Cos", "Tan", "Atan", "Atan2",
    )),
    ("exists", ("Exists",)),
)

# Functions sqlglot leaves as exp.Anonymous in some dialect, by lower-case name.
_ANONYMOUS: Mapping[str, str] = MappingProxyType({
    **dict.fromkeys(("julianday", "datetime", "unixepoch", "timediff", "age", "datename",
                     "eomonth", "getutcdate", "sysdatetime", "unix_timestamp", "from_unixtime",
                     "to_days", "date_format", "makedate"), "date_fn"),
    **dict.fromkeys(("printf", "format", "ltrim", "rtrim", "quote", "char", "lcase", "ucase",
                     "mid", "instr", "locate", "strpos", "charindex", "len", "btrim",
                     "regexp_substr"), "string_fn"),
    **dict.fromkeys(("power", "truncate", "div0", "ceiling", "log10", "log2"), "math"),
    **dict.fromkeys(("isnull", "ifnull", "nvl", "zeroifnull", "nullifzero"), "null_handling"),
})


def concept_tags(tree: exp.Expression) -> tuple[str, ...]:
    """Sorted concept tags (keys of ``CONCEPTS``) of everything the query uses.

    Example:
        >>> import sqlglot
        >>> concept_tags(sqlglot.parse_one(
        ...     "SELECT name FROM artist WHERE id NOT IN (SELECT artist_id FROM album)"))
        ('subquery',)
        >>> concept_tags(sqlglot.parse_one(
        ...     "SELECT CAST(SUM(CASE WHEN x IS NULL THEN 1 ELSE 0 END) AS REAL) / COUNT(*) FROM t"))
        ('aggregation', 'case', 'cast', 'math', 'null_handling', 'ratio')
    """
    tags: set[str] = set()
    rules = _RULES
    stack = [tree]
    while stack:
        node = stack.pop()
        cls = type(node)
        rule = rules.get(cls) or _rule_for(cls)
        static, check = rule
        if static:
            tags.update(static)
        if check is not None:
            check(node, tags)
        stack.extend(node.iter_expressions())
    return tuple(sorted(tags))


_Check = Callable[[exp.Expression, set], None]


def _check_aggregate(node: exp.Expression, tags: set) -> None:
    """An aggregate is a window function when it is the function of an OVER (...)."""
    child, parent = node, node.parent
    while isinstance(parent, (exp.Filter, exp.IgnoreNulls, exp.RespectNulls)):
        child, parent = parent, parent.parent
    if not (isinstance(parent, exp.Window) and child.arg_key == "this"):
        tags.add("aggregation")


def _check_query(node: exp.Expression, tags: set) -> None:
    """Select / set operation: nested in another query? self join among its sources?"""
    child, parent = node, node.parent
    while isinstance(parent, (exp.Subquery, exp.Paren)):
        child, parent = parent, parent.parent
    if parent is not None and not isinstance(
        parent, (exp.SetOperation, exp.CTE, exp.Insert, exp.Create)
    ):
        tags.add("subquery")
    joins = node.args.get("joins")
    if joins:
        from_ = node.args.get("from_")
        sources = [from_.this] if from_ is not None else []
        sources.extend(join.this for join in joins)
        seen = set()
        for source in sources:
            if isinstance(source, exp.Table):
                key = (source.text("catalog").lower(), source.text("db").lower(), source.name.lower())
                if key in seen:
                    tags.add("self_join")
                    return
                seen.add(key)


def _check_order(node: exp.Expression, tags: set) -> None:
    if isinstance(node.parent, exp.Query):
        tags.add("order_limit")


def _check_in(node: exp.Expression, tags: set) -> None:
    if node.args.get("expressions") and node.args.get("query") is None:
        tags.add("in_list")


def _check_is(node: exp.Expression, tags: set) -> None:
    if isinstance(node.args.get("expression"), exp.Null):
        tags.add("null_handling")


def _check_with(node: exp.Expression, tags: set) -> None:
    if node.args.get("recursive"):
        tags.add("recursive_cte")


def _check_division(node: exp.Expression, tags: set) -> None:
    divisor = node.args.get("expression")
    if divisor is not None and (isinstance(divisor, exp.AggFunc) or divisor.find(exp.AggFunc)):
        tags.add("ratio")


def _check_negation(node: exp.Expression, tags: set) -> None:
    if not isinstance(node.this, exp.Literal):
        tags.add("math")


def _check_cast(node: exp.Expression, tags: set) -> None:
    # T-SQL LEN/LEFT/RIGHT(x) parse as Length(Cast(x AS TEXT)): not the user's cast
    if isinstance(node.parent, (exp.Length, exp.Left, exp.Right)):
        to = node.args.get("to")
        if isinstance(to, exp.DataType) and to.this == exp.DataType.Type.TEXT:
            return
    tags.add("cast")


def _check_anonymous(node: exp.Expression, tags: set) -> None:
    tag = _ANONYMOUS.get(node.name.lower())
    if tag:
        tags.add(tag)


_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("AggFunc", _check_aggregate),
    ("Select", _check_query),
    ("SetOperation", _check_query),
    ("Order", _check_order),
    ("Limit", _check_order),
    ("Fetch", _check_order),
    ("In", _check_in),
    ("Is", _check_is),
    ("With", _check_with),
    ("Div", _check_division),
    ("IntDiv", _check_division),
    ("SafeDivide", _check_division),
    ("Neg", _check_negation),
    ("Cast", _check_cast),
    ("Anonymous", _check_anonymous),
)

_Rule = tuple[tuple[str, ...], "_Check | None"]

#: Cache: expression class -> (tags it always gets, check deciding the rest).
_RULES: dict[type, _Rule] = {}


def _classes(names: tuple[str, ...]) -> tuple[type, ...]:
    return tuple(c for c in (getattr(exp, name, None) for name in names) if isinstance(c, type))


_STATIC_BASES = tuple((tag, _classes(names)) for tag, names in _UNCONDITIONAL)
_CHECK_BASES = tuple((cls, check) for name, check in _CHECKS for cls in _classes((name,)))


def _rule_for(cls: type) -> _Rule:
    """Tags and check for one expression class, from its bases (computed once per class)."""
    static = [tag for tag, bases in _STATIC_BASES if bases and issubclass(cls, bases)]
    if (
        issubclass(cls, exp.Func)
        and _DATE_CLASS.search(cls.__name__)
        and not _NOT_DATE_CLASS.search(cls.__name__)
    ):
        static.append("date_fn")
    check = next((c for base, c in _CHECK_BASES if issubclass(cls, base)), None)
    if check is _check_cast:
        static.remove("cast")  # decided by _check_cast
    rule = (tuple(static), check)
    _RULES[cls] = rule
    return rule
