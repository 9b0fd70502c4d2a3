"""sqlglot's tokenizer, parser and generator, built once per thread and dialect instead of per call.

``sqlglot.parse(sql, read="postgres")`` looks the dialect up, builds a new
``Dialect``, a new tokenizer (whose compiled core takes as long to set up as a short
query takes to tokenize), a new parser; ``tree.sql(...)`` builds a generator and
deep-copies the whole tree first. Per statement that set-up costs about as much as
the parse itself, and the deep copy more. Normalize, Classify, Describe and Execute
parse or tokenize every distinct query, so they go through here: the same objects,
reused. They keep per-call state (the text being tokenized, the parser's error
list), so they are per thread; sqlglot resets that state at the start of every call.

The results are exactly sqlglot's (``tests/stages/validate/test_normalize.py`` compares them).
"""

from __future__ import annotations

import functools
import threading
from typing import Optional

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError
from sqlglot.generator import Generator
from sqlglot.parser import Parser
from sqlglot.tokens import Token, Tokenizer

_local = threading.local()


@functools.lru_cache(maxsize=None)
def dialect(name: Optional[str]) -> Dialect:
    """The ``Dialect`` instance for a name (``None`` or ``""``: sqlglot's default), shared by every thread.

    >>> dialect("postgres") is dialect("postgres")
    True
    """
    return Dialect.get_or_raise(name or None)


def _per_thread(key: tuple, make):
    """This thread's object for ``key``, made by ``make()`` on first use."""
    objects = getattr(_local, "objects", None)
    if objects is None:
        objects = _local.objects = {}
    found = objects.get(key)
    if found is None:
        found = objects[key] = make()
    return found


def tokenizer(name: Optional[str]) -> Tokenizer:
    """This thread's tokenizer for a dialect."""
    return _per_thread(("tokenizer", name or ""), lambda: dialect(name).tokenizer())


def _parser(name: Optional[str]) -> Parser:
    return _per_thread(("parser", name or ""), lambda: dialect(name).parser())


def _generator(name: Optional[str], level: ErrorLevel) -> Generator:
    return _per_thread(("generator", name or "", level),
                       lambda: dialect(name).generator(comments=False, unsupported_level=level))


def tokenize(sql: str, name: Optional[str]) -> list[Token]:
    """``Dialect.get_or_raise(name).tokenize(sql)``.

    >>> [t.text for t in tokenize("SELECT a FROM t", "postgres")]
    ['SELECT', 'a', 'FROM', 't']
    """
    return tokenizer(name).tokenize(sql)


def parse(sql: str, name: Optional[str]) -> list[Optional[exp.Expression]]:
    """``sqlglot.parse(sql, read=name)``: every statement's tree (``None`` for an empty one).

    >>> parse("SELECT 1; SELECT 2", "postgres")[1].sql()
    'SELECT 2'
    """
    return _parser(name).parse(tokenize(sql, name), sql)


def parse_one(sql: str, name: Optional[str]) -> exp.Expression:
    """``sqlglot.parse_one(sql, read=name)``: the first statement's tree.

    >>> parse_one("select a from t", "postgres").sql()
    'SELECT a FROM t'
    """
    for tree in parse(sql, name):
        if tree is not None:
            return tree
    raise ParseError(f"No expression was parsed from '{sql}'")


def generate(tree: exp.Expression, name: Optional[str], *, level: ErrorLevel = ErrorLevel.IGNORE,
             copy: bool = True) -> str:
    """``tree.sql(dialect=name, comments=False, unsupported_level=level, copy=copy)``.

    With ``copy=False`` the generator's dialect transforms may rewrite ``tree`` in
    place (QUALIFY or DISTINCT ON into subqueries, T-SQL's TOP, ...): pass it only
    for a tree nobody reads afterwards, or check as ``transforms.sql.normalize`` does.

    >>> generate(parse_one("select a from t -- note", "postgres"), "postgres", copy=False)
    'SELECT a FROM t'
    """
    return _generator(name, level).generate(tree, copy=copy)
