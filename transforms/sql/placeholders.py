"""Placeholders in logged SQL: find them per dialect, make the query parseable, describe them.

Real logs rarely hold literal SQL. ``pg_stat_statements`` stores ``WHERE id = $1``;
application logs hold JDBC ``?``, named ``:name`` and Python ``%(name)s`` / ``%s``;
T-SQL scripts bind ``@name`` variables in ``DECLARE @name type = value`` headers;
Stack Exchange Data Explorer (SEDE) queries use ``##Name##``, ``##Name:type##`` and
``##Name:type?default##``. Left alone these either fail to parse or parse only as an
opaque ``Command`` (a SEDE ``##UserId##`` reads as a global temporary table name).

:func:`parse_templated` is a drop-in for ``sqlglot.parse`` that understands them:

1. a lexical scan (strings, quoted identifiers and comments are skipped) rewrites
   every placeholder into a sentinel ``:sqlpairs_pN`` that sqlglot parses as a value
   in every dialect and position (``=``, ``IN``, ``LIMIT``, ``TOP``, function arguments);
   SEDE placeholders inside string literals (``LIKE '%##Tag##%'``, which SEDE
   substitutes textually) stay as they are — the literal parses — and are recorded;
2. T-SQL ``DECLARE``/``SET @var = …`` headers, which T-SQL does not need to end with
   ``;``, are split off and folded into the query: a variable bound to a placeholder
   becomes that parameter (typed by the declaration), one bound to a literal becomes a
   parameter with that default, one bound to an expression (``GETDATE() - 30``) is
   inlined, and undeclared ``@name`` references become parameters;
3. every placeholder becomes one canonical node, ``exp.Parameter(this=exp.Var(name))``,
   which each dialect prints in its own style (``$1``/``$UserId`` in PostgreSQL and
   DuckDB, ``@UserId`` in T-SQL, SQLite, MySQL and BigQuery) and parses back.

Positional placeholders (``$n``, ``?``, ``%s``, ``:n``) are named by their position
(``"1"``, ``"2"``, …); named ones keep their name (SEDE and ``@`` names match
case-insensitively, as SEDE and T-SQL do). Nothing here touches a database.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Optional

from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from transforms.core.record import Parameter
from transforms.sql import parsing

#: Prefix of the sentinel each placeholder is rewritten to before parsing.
SENTINEL = "sqlpairs_p"

#: Dialects whose strings accept backslash escapes (``'it\\'s'``).
_BACKSLASH_DIALECTS = frozenset({"mysql", "bigquery", "spark", "databricks", "hive", "doris", "starrocks"})
#: Dialects that write identifiers in ``[brackets]``.
_BRACKET_DIALECTS = frozenset({"tsql", "fabric"})
#: Dialects that write identifiers in ```backticks```.
_BACKTICK_DIALECTS = frozenset({"mysql", "bigquery", "spark", "databricks", "hive", "doris", "starrocks",
                                "sqlite", "clickhouse", "singlestore"})
#: Dialects where ``#`` starts a line comment.
_HASH_COMMENT_DIALECTS = frozenset({"mysql", "doris", "starrocks", "singlestore"})
#: Dialects whose scripts bind variables in DECLARE headers without needing ``;``.
_DECLARE_DIALECTS = frozenset({"tsql", "fabric"})

_SEDE = r"##(?P<sede>[A-Za-z_]\w*)(?::(?P<sede_type>[A-Za-z]\w*))?(?:\?(?P<sede_default>[^#\r\n]*))?##"
_SEDE_RE = re.compile(_SEDE)


def _scanner(dialect: str) -> re.Pattern:
    """One regex whose alternatives, tried left to right, are what a lexical scan meets."""
    string = r"'(?:[^'\\]|\\.|'')*'" if dialect in _BACKSLASH_DIALECTS else r"'(?:[^']|'')*'"
    skipped = [rf"(?P<string>[NnEeBbXxUu]?{string})", r'(?P<quoted>"(?:[^"]|"")*")',
               r"(?P<comment>--[^\n]*|/\*.*?\*/)", r"(?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$)"]
    if dialect in _BRACKET_DIALECTS:
        skipped.append(r"(?P<bracket>\[[^\]]*\])")
    if dialect in _BACKTICK_DIALECTS:
        skipped.append(r"(?P<backtick>`[^`]*`)")
    if dialect in _HASH_COMMENT_DIALECTS:
        skipped.append(r"(?P<hash_comment>#(?!#\w)[^\n]*)")
    placeholders = [
        _SEDE,
        r"(?<![\w$])\$(?P<dollar_n>\d+)",
        r"%\((?P<pyname>\w+)\)s",
        r"(?<!%)%s(?!\w)",
        r"\?(?P<qmark_n>\d+)?(?![|&])",
        r"(?<![:\w]):(?P<colon>[A-Za-z_]\w*|\d+)",
    ]
    return re.compile("|".join([_SEDE] + skipped + placeholders[1:]), re.DOTALL)


_SCANNERS: dict[str, re.Pattern] = {}
#: Characters that end a name for sqlglot's tokenizer, so a sentinel may be followed by them directly.
_ENDS_TOKEN = frozenset("()[]{},;:+-*/%<>=!|&^~.'\"`")


class Found(NamedTuple):
    """One placeholder occurrence met by the scan."""

    key: str  # identity: same key, same parameter
    name: str
    offset: int
    style: str  # dollar, qmark, pyformat, colon, sede, at
    position: Optional[int] = None  # explicit binding index ($2, ?2, :2), or the ordinal of a ? / %s
    type: Optional[str] = None
    default: Optional[str] = None
    in_string: bool = False


class Scanned(NamedTuple):
    """The text with placeholders rewritten to sentinels, what was found (in text order), and
    which parameter (``Found.key``) each sentinel name stands for."""

    sql: str
    found: tuple[Found, ...]
    sentinels: dict[str, str] = {}


class Parsed(NamedTuple):
    """What :func:`parse_templated` gives: sqlglot statements and the query's parameters."""

    statements: list
    parameters: tuple[Parameter, ...]


def _type_name(text: Optional[str]) -> Optional[str]:
    """A SEDE or declared type as one of our kinds (``int``, ``float``, ``string``, …) or as written."""
    if not text:
        return None
    try:
        return kind_of(exp.DataType.build(text, dialect="tsql"))
    except Exception:  # noqa: BLE001 - an unknown type name is kept as written
        return text.lower()


_T = exp.DataType.Type
_DECIMALS = {_T.DECIMAL, _T.DECIMAL32, _T.DECIMAL64, _T.DECIMAL128, _T.DECIMAL256, _T.BIGDECIMAL, _T.UDECIMAL,
             _T.MONEY, _T.SMALLMONEY}
_KINDS = (
    (exp.DataType.INTEGER_TYPES, "int"),
    (exp.DataType.REAL_TYPES - _DECIMALS, "float"),
    (_DECIMALS, "decimal"),
    (exp.DataType.TEXT_TYPES | {_T.CHAR, _T.NCHAR}, "string"),
    ({_T.DATE, _T.DATE32}, "date"),
    ({_T.TIME, _T.TIMETZ}, "time"),
    (exp.DataType.TEMPORAL_TYPES, "datetime"),
    ({_T.BOOLEAN, _T.BIT}, "bool"),
    ({_T.UUID}, "uuid"),
)


def kind_of(data_type: exp.DataType) -> str:
    """The kind of a SQL type: int, float, decimal, string, date, datetime, time, bool, uuid, or its SQL.

    >>> kind_of(exp.DataType.build("nvarchar(25)", dialect="tsql")), kind_of(exp.DataType.build("bigint"))
    ('string', 'int')
    """
    for types, kind in _KINDS:
        if data_type.this in types:
            return kind
    return data_type.sql().lower()


def scan(sql: str, dialect: str) -> Scanned:
    """Rewrite every placeholder outside strings and comments to ``:sqlpairs_pN``.

    >>> s = scan("SELECT * FROM t WHERE a = $2 AND b = '$1' -- $3\\n AND c LIKE '%##Tag##%' LIMIT ##n:int?10##", "postgres")
    >>> s.sql
    "SELECT * FROM t WHERE a = :sqlpairs_p1 AND b = '$1' -- $3\\n AND c LIKE '%##Tag##%' LIMIT :sqlpairs_p2"
    >>> [(f.name, f.style, f.default, f.in_string) for f in s.found]
    [('2', 'dollar', None, False), ('Tag', 'sede', None, True), ('n', 'sede', '10', False)]
    """
    pattern = _SCANNERS.get(dialect)
    if pattern is None:
        pattern = _SCANNERS[dialect] = _scanner(dialect)
    found: list[Found] = []
    pieces: list[str] = []
    sentinels: dict[str, str] = {}
    last = 0
    ordinal = 0
    has_dollar = "$" in sql and re.search(r"(?<![\w$])\$\d", sql) is not None
    for match in pattern.finditer(sql):
        kind = match.lastgroup
        if kind in ("string", "quoted", "comment", "dollar", "tag", "bracket", "backtick", "hash_comment"):
            if kind == "string" and "##" in match.group():
                for inner in _SEDE_RE.finditer(match.group()):
                    found.append(_sede(inner, match.start() + inner.start(), in_string=True))
            continue
        if match.group("sede"):
            item = _sede(match, match.start())
        elif match.group("dollar_n"):
            number = int(match.group("dollar_n"))
            item = Found(str(number), str(number), match.start(), "dollar", number)
        elif match.group("pyname"):
            name = match.group("pyname")
            item = Found(f"py:{name}", name, match.start(), "pyformat")
        elif match.group().startswith("%s"):
            ordinal += 1
            item = Found(str(ordinal), str(ordinal), match.start(), "pyformat", ordinal)
        elif match.group().startswith("?"):
            if dialect == "postgres" and has_dollar:
                continue  # with $n placeholders present, a ? is PostgreSQL's jsonb operator
            if match.group("qmark_n"):
                number = int(match.group("qmark_n"))
            else:
                ordinal += 1
                number = ordinal
            item = Found(str(number), str(number), match.start(), "qmark", number)
        else:
            name = match.group("colon")
            if name.startswith(SENTINEL) and name[len(SENTINEL):].isdigit():
                name = name[len(SENTINEL):]  # our own sentinel read back: keep its number
            number = int(name) if name.isdigit() else None
            item = Found(str(number) if number else f"colon:{name}", name, match.start(), "colon", number)
        found.append(item)
        sentinel = sentinels.setdefault(item.key, f"{SENTINEL}{len(sentinels) + 1}")
        pieces.append(sql[last:match.start()])
        # a sentinel glued to the word after it would be read as another name (`a?b` -> `:sqlpairs_p1b`)
        glued = match.end() < len(sql) and not (sql[match.end()].isspace() or sql[match.end()] in _ENDS_TOKEN)
        pieces.append(f":{sentinel} " if glued else f":{sentinel}")
        last = match.end()
    by_sentinel = {sentinel: key for key, sentinel in sentinels.items()}
    if not pieces:
        return Scanned(sql, tuple(found), by_sentinel)
    pieces.append(sql[last:])
    return Scanned("".join(pieces), tuple(found), by_sentinel)


def _sede(match: re.Match, offset: int, in_string: bool = False) -> Found:
    name = match.group("sede")
    default = match.group("sede_default")
    type_name = match.group("sede_type")
    return Found(f"sede:{name.lower()}", name, offset, "sede", None,
                 _type_name(type_name) if type_name else None, default if default else None, in_string)


# --- DECLARE headers (T-SQL) ------------------------------------------------------------------

_STATEMENT_STARTS = frozenset({
    TokenType.SELECT, TokenType.WITH, TokenType.DECLARE, TokenType.SET, TokenType.INSERT, TokenType.UPDATE,
    TokenType.DELETE, TokenType.MERGE, TokenType.CREATE, TokenType.DROP, TokenType.USE, TokenType.COMMAND,
    TokenType.EXECUTE, TokenType.BEGIN,
})
_DECLARE_AT_START = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(?:declare|set)\s+@", re.IGNORECASE | re.DOTALL)


def split_header(sql: str, dialect: str) -> str:
    """End each leading ``DECLARE``/``SET`` statement with ``;`` so sqlglot parses them one by one.

    T-SQL needs no statement terminator; sqlglot does. A header statement ends at the
    next statement keyword met outside parentheses.

    >>> split_header("DECLARE @n int = 5\\nSELECT TOP (@n) * FROM t", "tsql")
    'DECLARE @n int = 5\\n;SELECT TOP (@n) * FROM t'
    """
    if not _DECLARE_AT_START.match(sql):
        return sql
    try:
        tokens = parsing.tokenize(sql, dialect)
    except TokenError:
        return sql
    cuts: list[int] = []
    depth = 0
    in_header = False
    statement_start = True
    for token in tokens:
        kind = token.token_type
        if kind == TokenType.SEMICOLON:
            statement_start = True
            continue
        if depth == 0 and kind in _STATEMENT_STARTS and not statement_start and in_header:
            cuts.append(token.start)
            statement_start = True
        if statement_start:
            if kind not in (TokenType.DECLARE, TokenType.SET):
                break  # the body begins: nothing after it is split
            in_header = True
            statement_start = False
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth = max(0, depth - 1)
    for cut in reversed(cuts):
        sql = f"{sql[:cut]};{sql[cut:]}"
    return sql


class _Binding(NamedTuple):
    """What a declared ``@variable`` stands for in the query body."""

    parameter_key: Optional[str] = None  # the parameter it becomes
    inline: Optional[exp.Expression] = None  # or the expression it is replaced by


def _literal_text(node: exp.Expression) -> Optional[str]:
    """The value of a literal (``5``, ``-5``, ``'x'``, ``N'x'``) as text, else None."""
    if isinstance(node, exp.Literal):
        return node.this
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return f"-{node.this.this}"
    if isinstance(node, exp.National):
        return node.this
    return None


def _sentinel_name(node: exp.Expression) -> Optional[str]:
    if isinstance(node, exp.Placeholder) and isinstance(node.this, str) and node.this.startswith(SENTINEL):
        return node.this
    return None


def _fold_header(statements: list, scanned: Scanned, params: dict, order: dict, sql: str) -> tuple[list, dict]:
    """Drop leading DECLARE / SET @var statements; return the rest and each variable's binding."""
    bindings: dict[str, _Binding] = {}
    index = 0
    while index < len(statements):
        statement = statements[index]
        if isinstance(statement, exp.Semicolon):
            index += 1
            continue
        items = _header_items(statement)
        if items is None:
            break
        for variable, data_type, value in items:
            bindings[variable.lower()] = _bind(variable, data_type, value, bindings.get(variable.lower()),
                                               scanned.sentinels, params, order, sql)
        index += 1
    return statements[index:], bindings


def _header_items(statement: exp.Expression) -> Optional[list]:
    """``(variable, type, value)`` for each variable a DECLARE or SET @var statement binds; None otherwise."""
    if isinstance(statement, exp.Declare):
        items = []
        for item in statement.expressions:
            targets = item.this if isinstance(item.this, list) else [item.this]
            kind = item.args.get("kind")
            if not isinstance(kind, exp.DataType) or len(targets) != 1 or not isinstance(targets[0], exp.Parameter):
                return None  # a table variable, a cursor: a script, not a header
            default = item.args.get("default")
            items.append((targets[0].name, kind, default if isinstance(default, exp.Expression) else None))
        return items
    if isinstance(statement, exp.Set):
        items = []
        for item in statement.expressions:
            assignment = item.this if isinstance(item, exp.SetItem) else None
            if isinstance(assignment, exp.EQ) and isinstance(assignment.this, exp.Parameter) \
                    and isinstance(assignment.this.this, exp.Var):
                items.append((assignment.this.name, None, assignment.expression))
            elif isinstance(assignment, exp.EQ) and assignment.this.name.upper() in ("NOCOUNT", "ANSI_WARNINGS"):
                continue  # SET NOCOUNT ON: a session switch with no effect on the result
            else:
                return None
        return items
    return None


def _first_offset(sql: str, variable: str) -> int:
    """Where ``@variable`` first appears in the original text (its declaration, in a header)."""
    found = re.search(rf"@{re.escape(variable)}\b", sql, re.IGNORECASE)
    return found.start() if found else len(sql)


def _bind(variable, data_type, value, previous, sentinel_keys, params, order, sql) -> _Binding:
    declared = kind_of(data_type) if data_type is not None else None
    key = f"at:{variable.lower()}"
    if value is None:
        if previous is not None:
            return previous
        params.setdefault(key, {"name": variable, "type": declared, "default": None, "style": "at"})
        order.setdefault(key, _first_offset(sql, variable))
        return _Binding(parameter_key=key)
    sentinel = _sentinel_name(value)
    if sentinel is not None:
        target = sentinel_keys[sentinel]
        if declared and not params[target].get("type"):
            params[target]["type"] = declared
        return _Binding(parameter_key=target)
    literal = _literal_text(value)
    if literal is not None:
        entry = params.setdefault(key, {"name": variable, "type": declared, "default": None, "style": "at"})
        entry["default"] = literal
        if declared and not entry.get("type"):
            entry["type"] = declared
        order.setdefault(key, _first_offset(sql, variable))
        return _Binding(parameter_key=key)
    return _Binding(inline=value)


# --- the whole thing --------------------------------------------------------------------------

def parse_templated(sql: str, dialect: str) -> Parsed:
    """``sqlglot.parse`` for SQL that may hold placeholders; raises what ``sqlglot.parse`` raises.

    >>> parsed = parse_templated("DECLARE @Tag nvarchar(25) = ##Tag:string?java##\\n"
    ...                          "SELECT TOP ##n?10## Id FROM Posts WHERE Tags LIKE @tag", "tsql")
    >>> parsed.statements[0].sql("tsql")
    'SELECT TOP (@n) Id FROM Posts WHERE Tags LIKE @Tag'
    >>> [(p.name, p.position, p.type, p.default) for p in parsed.parameters]
    [('Tag', 1, 'string', 'java'), ('n', 2, 'int', '10')]
    >>> parse_templated("SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)", "postgres").statements[0].sql("postgres")
    'SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)'
    """
    scanned = scan(sql, dialect)
    has_variables = "@" in sql
    if not scanned.found and not has_variables:
        return Parsed(parsing.parse(sql, dialect), ())
    text = split_header(scanned.sql, dialect) if dialect in _DECLARE_DIALECTS else scanned.sql
    statements = [s for s in parsing.parse(text, dialect) if s is not None]

    params: dict[str, dict] = {}
    order: dict[str, int] = {}
    for item in scanned.found:
        entry = params.setdefault(item.key, {"name": item.name, "type": item.type, "default": item.default,
                                             "style": item.style, "position": item.position})
        entry["type"] = entry["type"] or item.type
        entry["default"] = entry["default"] or item.default
        order.setdefault(item.key, item.offset)
    bindings: dict[str, _Binding] = {}
    if has_variables and dialect in _DECLARE_DIALECTS:
        statements, bindings = _fold_header(statements, scanned, params, order, sql)
    statements = [_canonical(s, scanned.sentinels, bindings, params, order, sql) for s in statements]
    parameters = _parameters(params, order, statements)
    return Parsed(statements, parameters)


def _canonical(statement, sentinel_keys, bindings, params, order, original_sql) -> exp.Expression:
    """Sentinels, bound variables and free ``@names`` → canonical parameter nodes (or inlined values)."""

    def replace(node: exp.Expression) -> exp.Expression:
        sentinel = _sentinel_name(node)
        if sentinel is not None:
            return parameter_node(params[sentinel_keys[sentinel]]["name"])
        if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Var) \
                and not isinstance(node.parent, exp.Parameter):
            variable = node.name
            binding = bindings.get(variable.lower())
            if binding is not None and binding.inline is not None:
                inline = binding.inline.copy().transform(replace)
                return inline if isinstance(inline, (exp.Literal, exp.Column, exp.Func)) else exp.Paren(this=inline)
            key = binding.parameter_key if binding is not None else f"at:{variable.lower()}"
            if key not in params:
                params[key] = {"name": variable, "type": None, "default": None, "style": "at"}
                order[key] = _first_offset(original_sql, variable)
            return parameter_node(params[key]["name"])
        return node

    return statement.transform(replace)


def _parameters(params: dict, order: dict, statements: list) -> tuple[Parameter, ...]:
    """The Parameter list, in text order, typed from how each is used where nothing declared a type."""
    used = {node.name for s in statements for node in s.find_all(exp.Parameter, exp.Placeholder)}
    keys = sorted(params, key=lambda k: (order.get(k, 0), k))
    out = []
    rank = 0
    contexts = _usage_types(statements, {params[k]["name"] for k in keys})
    for key in keys:
        entry = params[key]
        in_string_only = entry["style"] == "sede" and entry["name"] not in used
        if entry["name"] not in used and not in_string_only:
            continue  # declared but never used
        rank += 1
        position = entry.get("position") or rank
        kind = entry["type"] or contexts.get(entry["name"]) or ("string" if in_string_only else None)
        out.append(Parameter(name=entry["name"], position=position, type=kind, default=entry["default"]))
    return tuple(out)


def parameter_node(name: str) -> exp.Parameter:
    """The canonical node of parameter ``name`` (printed ``$name`` / ``@name`` by dialect)."""
    return exp.Parameter(this=exp.Var(this=name))


def parameter_nodes(tree: exp.Expression, names: Iterable[str]) -> list[exp.Expression]:
    """Every node in ``tree`` standing for one of the parameters ``names`` (any dialect's reading)."""
    wanted = set(names)
    return [node for node in tree.find_all(exp.Parameter, exp.Placeholder)
            if node.name in wanted and not isinstance(node.parent, exp.Parameter)]


def _usage_types(statements: list, names: set) -> dict[str, str]:
    """Types implied by where a parameter is used: LIMIT/OFFSET/TOP → int, LIKE → string, CAST → its type."""
    kinds: dict[str, str] = {}
    for statement in statements:
        for node in parameter_nodes(statement, names):
            parent = node.parent
            while isinstance(parent, exp.Paren):
                parent = parent.parent
            if isinstance(parent, (exp.Limit, exp.Offset, exp.Fetch)):
                kinds.setdefault(node.name, "int")
            elif isinstance(parent, (exp.Like, exp.ILike)):
                kinds.setdefault(node.name, "string")
            elif isinstance(parent, (exp.Cast, exp.TryCast)) and isinstance(parent.to, exp.DataType):
                kinds.setdefault(node.name, kind_of(parent.to))
    return kinds


def mask_parameters(tree: exp.Expression, names: Iterable[str]) -> exp.Expression:
    """A copy of ``tree`` with each parameter replaced by the literal 0, so its template
    fingerprint equals that of the same query logged with literal values.

    >>> tree = parse_templated("SELECT * FROM t WHERE a = $1", "postgres").statements[0]
    >>> mask_parameters(tree, ["1"]).sql()
    'SELECT * FROM t WHERE a = 0'
    """
    wanted = set(names)

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Parameter, exp.Placeholder)) and node.name in wanted \
                and not isinstance(node.parent, exp.Parameter):
            return exp.Literal.number(0)
        return node

    return tree.copy().transform(replace)


def sede_in_strings(tree: exp.Expression) -> list[exp.Literal]:
    """String literals of ``tree`` that hold a SEDE ``##name##`` placeholder (substituted textually)."""
    return [node for node in tree.find_all(exp.Literal) if node.is_string and "##" in node.this
            and _SEDE_RE.search(node.this)]


def substitute_in_string(text: str, values: dict[str, str]) -> str:
    """Replace SEDE placeholders inside a string literal's text by ``values`` (keys lower-cased names).

    >>> substitute_in_string("%##Tag:string?x##%", {"tag": "java"})
    '%java%'
    """
    def replace(match: re.Match) -> str:
        value = values.get(match.group("sede").lower())
        return match.group() if value is None else value

    return _SEDE_RE.sub(replace, text)
