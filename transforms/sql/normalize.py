"""Normalizing SQL: parse once with sqlglot, refuse anything but one read-only query, canonicalize.

``normalized_sql`` is the canonical one-line SQL in the target dialect: comments
dropped, whitespace normalized (as SQLCoder 2 does for training labels), keywords
upper-cased, unquoted identifiers case-normalized by the source dialect's rules (then
the target's) —
and string literals left exactly as written ('Italy' and 'italy' are different
queries). ``sql_fingerprint`` hashes it; ``template_fingerprint`` hashes it with
literals masked; ``tables`` lists referenced tables (CTE names excluded).
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from typing import NamedTuple, Optional

import sqlglot  # noqa: F401 - the doctests use it
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.tokens import TokenType

from transforms.core.record import Parameter
from transforms.sql import parsing, placeholders, trees
from transforms.sql.safety import refusal_reason

_LITERAL_TOKENS = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.NATIONAL_STRING,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.BYTE_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
    }
)


#: Dialects whose generator leaves an ordinary tree as it is (``tests/stages/validate/test_normalize.py`` checks each).
_PRINTS_WITHOUT_REWRITING = frozenset({"postgres", "sqlite", "duckdb", "mysql"})

_CONTROL_CHARACTER = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


_local = threading.local()


def _regexp_like_sql(generator, expression: exp.RegexpLike) -> str:
    """``a REGEXP b``: MySQL's and MariaDB's own operator, where sqlglot prints ``REGEXP_LIKE(a, b)``.

    MariaDB has no ``REGEXP_LIKE`` (error 1305), so a valid ``REGEXP``/``RLIKE`` (or
    PostgreSQL ``~``) query would become an execution error. A call with match flags
    or full-match semantics keeps sqlglot's function form (only MySQL 8 can run it).
    """
    if expression.args.get("flag") or expression.args.get("full_match"):
        return generator.function_fallback_sql(expression)
    return generator.binary(expression, "REGEXP")


def _regexp_ilike_sql(generator, expression: exp.RegexpILike) -> str:
    """``a REGEXP '(?i)b'``: PostgreSQL's ``~*`` in MySQL/MariaDB, which have no ``REGEXP_I_LIKE``.

    Both MariaDB's PCRE and MySQL 8's ICU read the inline ``(?i)`` flag.
    """
    if expression.args.get("flag"):
        return generator.function_fallback_sql(expression)
    pattern = expression.expression
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        flagged: exp.Expression = exp.Literal.string("(?i)" + pattern.this)
    else:
        flagged = exp.func("CONCAT", exp.Literal.string("(?i)"), pattern.copy())
    return generator.binary(exp.RegexpLike(this=expression.this.copy(), expression=flagged), "REGEXP")


def _mysql_generator(level: ErrorLevel):
    """This thread's MySQL generator that prints regular-expression matches as MariaDB can run them.

    sqlglot's generator classes are compiled (they cannot be subclassed here), so the two
    entries are added to this one instance's dispatch table; the class and every other
    generator are untouched. ``tests/integration/test_reliability_sql.py`` runs the output on MariaDB.
    """
    generators = getattr(_local, "mysql_generators", None)
    if generators is None:
        generators = _local.mysql_generators = {}
    generator = generators.get(level)
    if generator is None:
        generator = parsing.dialect("mysql").generator(comments=False, unsupported_level=level)
        generator._dispatch = {
            **generator._dispatch,
            exp.RegexpLike: _regexp_like_sql,
            exp.RegexpILike: _regexp_ilike_sql,
        }
        generators[level] = generator
    return generator


def generate_sql(tree: exp.Expression, dialect: str, *, level: ErrorLevel = ErrorLevel.IGNORE,
                 copy: bool = True) -> str:
    """``parsing.generate``, except that MySQL output keeps MySQL's own ``REGEXP`` operator.

    >>> generate_sql(sqlglot.parse_one("SELECT * FROM t WHERE name ~ '^a'", read="postgres"), "mysql")
    "SELECT * FROM t WHERE name REGEXP '^a'"
    >>> generate_sql(sqlglot.parse_one("SELECT name ~* '^a' FROM t", read="postgres"), "mysql")
    "SELECT name REGEXP '(?i)^a' FROM t"
    """
    if dialect == "mysql":
        return _mysql_generator(level).generate(tree, copy=copy)
    return parsing.generate(tree, dialect, level=level, copy=copy)


class SqlRejected(Exception):
    """A query that cannot become a training pair: which stage refused it and why."""

    def __init__(self, stage: str, reason: str, detail: str):
        super().__init__(detail)
        self.stage, self.reason, self.detail = stage, reason, detail


class Normalized(NamedTuple):
    tree: Optional[exp.Expression]  # None when it comes from ``normalize_cached``
    sql: str
    sql_fingerprint: str
    template_fingerprint: str
    tables: tuple[str, ...]
    parameters: tuple[Parameter, ...] = ()  # placeholders ($1, ?, :name, @var, ##Name##)


def fingerprint(text: str) -> str:
    """A 16-hex-digit SHA-256 prefix.

    >>> fingerprint("SELECT 1")
    'e004ebd5b5532a4b'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def template_of(normalized_sql: str, dialect: str) -> str:
    """The normalized SQL with every literal replaced by ``?`` (tokens, not a re-parse).

    >>> template_of("SELECT a FROM t WHERE b = 'x' AND c > 3", "postgres")
    'SELECT a FROM t WHERE b = ? AND c > ?'
    """
    tokens = parsing.tokenize(normalized_sql, dialect)
    return " ".join("?" if t.token_type in _LITERAL_TOKENS else t.text for t in tokens)


def referenced_tables(tree: exp.Expression) -> tuple[str, ...]:
    """Sorted names of the tables a query reads, without its CTE names.

    >>> referenced_tables(sqlglot.parse_one("WITH c AS (SELECT * FROM s.a) SELECT * FROM c JOIN b ON 1=1"))
    ('b', 's.a')
    """
    ctes, tables = set(), []
    for node in tree.find_all(exp.CTE, exp.Table):  # one walk of the tree
        if isinstance(node, exp.CTE):
            ctes.add(node.alias_or_name)
        else:
            tables.append(node)
    names = set()
    for table in tables:
        name = table.name
        if not name or (not table.db and name in ctes):
            continue
        names.add(f"{table.db}.{name}" if table.db else name)
    return tuple(sorted(names))


def normalize_sql(sql: str, source_dialect: str, target_dialect: str) -> Normalized:
    """Parse ``sql`` once and return its canonical form, or raise ``SqlRejected``.

    >>> normalize_sql("select Name  from Artist where Name = 'AC/DC' -- x", "sqlite", "sqlite").sql
    "SELECT name FROM artist WHERE name = 'AC/DC'"
    """
    if not sql or not sql.strip():
        raise SqlRejected("parse", "empty_sql", "the SQL text is empty")
    if "\x00" in sql:
        raise SqlRejected("parse", "nul_byte", "the SQL text contains a NUL byte")
    control = _CONTROL_CHARACTER.search(sql)
    if control:
        # escape codes and other C0 controls are never SQL: tokenizers disagree on them
        raise SqlRejected("parse", "control_character", f"the SQL text contains {control.group()!r}")
    try:
        # sqlglot.parse, plus placeholders and T-SQL DECLARE headers (transforms.sql.placeholders)
        parsed = placeholders.parse_templated(sql, source_dialect)
        statements = parsed.statements
    except (ParseError, TokenError) as error:
        raise SqlRejected("parse", "unparseable", f"{source_dialect}: {str(error)[:500]}") from None
    except RecursionError:
        raise SqlRejected("parse", "too_deeply_nested", "the SQL nests deeper than the parser allows") from None
    reason = refusal_reason(statements)
    if reason:
        raise SqlRejected("safety", reason.split(":", 1)[0], reason)
    tree = next(s for s in statements if s is not None)  # `;SELECT 1` parses as [None, Select]
    try:
        tree = normalize_identifiers(tree, dialect=parsing.dialect(source_dialect))
        if target_dialect != source_dialect:
            # then by the target's rules, so the output is already in the target's canonical
            # case (Snowflake's NAME is PostgreSQL's name): normalizing it again changes nothing
            tree = normalize_identifiers(tree, dialect=parsing.dialect(target_dialect))
        level = ErrorLevel.IGNORE if source_dialect == target_dialect else ErrorLevel.RAISE
        # Within one of these dialects the generator prints the tree without copying it first
        # (the copy costs more than the parse). Their transforms only touch constructs the
        # dialect cannot print (QUALIFY, DISTINCT ON, ...); when one wrapped the tree in a new
        # query, the printed SQL is parsed again, so Classify and Describe read what was
        # printed. Elsewhere transforms rewrite ordinary trees in place (T-SQL's TOP): copy.
        in_place = source_dialect == target_dialect and target_dialect in _PRINTS_WITHOUT_REWRITING
        normalized = generate_sql(tree, target_dialect, level=level, copy=not in_place)
        if in_place and tree.parent is not None:
            tree = parsing.parse_one(normalized, target_dialect)
    except UnsupportedError as error:
        raise SqlRejected(
            "normalize", "untranspilable", f"{source_dialect} -> {target_dialect}: {str(error)[:500]}"
        ) from None
    except RecursionError:
        raise SqlRejected("parse", "too_deeply_nested", "the SQL nests deeper than the generator allows") from None
    template = normalized
    if parsed.parameters:  # mask placeholders like literals: `id = $1` shares the template of `id = 5`
        # from the printed SQL, not `tree`: printing may have rewritten the tree in place (T-SQL TOP)
        printed = parsing.parse_one(normalized, target_dialect)
        masked = placeholders.mask_parameters(printed, [p.name for p in parsed.parameters])
        template = generate_sql(masked, target_dialect, level=ErrorLevel.IGNORE)
    return Normalized(
        tree=tree,
        sql=normalized,
        sql_fingerprint=fingerprint(normalized),
        template_fingerprint=fingerprint(template_of(template, target_dialect)),
        tables=referenced_tables(tree),
        parameters=parsed.parameters,
    )


#: Distinct texts whose normalization each worker process remembers (about 1 KB each: strings
#: only, no trees). Sized for the long tail of real logs: a 100k-query log holds ~43k
#: distinct texts, and the cache is what lets repeats skip parsing altogether.
CACHE_ENTRIES = 65536


class Rejection(NamedTuple):
    """A remembered ``SqlRejected``: the same text is refused the same way without parsing it again."""

    stage: str
    reason: str
    detail: str


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def normalize_cached(sql: str, source_dialect: str, target_dialect: str) -> "Normalized | Rejection":
    """``normalize_sql`` remembered per process, refusals included; the result carries no tree.

    Logs repeat themselves (dashboards, retries, agents re-running a query), so most
    records were seen before. Trees are large, so the cache keeps strings only; the
    tree of a text parsed here goes to this thread's ``trees`` cache, where Classify
    and Describe, fused right after Normalize, find it (they parse again only if not).
    """
    try:
        result = normalize_sql(sql, source_dialect, target_dialect)
    except SqlRejected as rejected:
        return Rejection(rejected.stage, rejected.reason, rejected.detail)
    trees.remember(result.sql, target_dialect, result.tree)
    return result._replace(tree=None)
