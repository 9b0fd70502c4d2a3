"""Rule-based English questions for parsed SQL: the offline ``rules`` question writer.

Plain SQL logs carry no natural-language question. :func:`describe_sql` renders one from an
already-parsed sqlglot tree (any dialect), deterministically and without a model, so a
text-to-SQL pair can be built offline. The LLM question writer sits behind the same contract
later: ``tree -> question``.

How it works, in one walk over the tree:

* every ``SELECT`` gets a scope: its tables (aliases resolved to table names), the main table
  (the first one in ``FROM``) and the parent scope for correlated subqueries;
* values (columns, aggregates, arithmetic, dates, ``CASE``...) become noun phrases
  ("the average milliseconds"), conditions become phrases that read after "with"/"have"
  ("milliseconds greater than 300000");
* the parts are assembled into a template chosen by the query's shape: a count
  ("How many tracks have ...?"), an aggregate ("What is the average ... of ...?"), a grouped
  aggregate ("For each ..., what is ...?") or a listing ("List the ... of every ...."), followed by
  an ordering/limit sentence ("Show the top 5 by ..., highest first.").

Anything the rules do not know degrades locally ("a value computed from x") and any internal
error degrades to :func:`generic_question`; :func:`describe_sql` never raises
(:func:`render_question` is the rules alone, for tests). Identifiers are humanized and
lowercased and no SQL text is generated, so SQL keywords never appear in the output (string
literals are quoted verbatim, in double quotes). Per call the state lives in small scope
objects; the modules keep only caches (humanized words, rules per node type), so the package is
safe to use from any Beam worker thread.

The package follows those steps, one module each, every module importing only the ones above it:
``words`` (identifiers as words, plurals, lists) and ``nodes`` (tree helpers), ``scopes``,
``values`` and ``functions`` (noun phrases), ``conditions``, ``select`` (parts and templates)
and this ``__init__`` (the entry points). The walk is recursive across them (a derived table's
scope needs its conditions, a ``CASE`` value needs conditions, a condition needs nested
queries): a lower module calls a higher one through the hooks of ``dispatch``, which this
module fills at import, so the import graph has no cycle.
"""

from __future__ import annotations

import re

from sqlglot import exp

from transforms.sql.question_rules import dispatch
from transforms.sql.question_rules.conditions import cond_phrase
from transforms.sql.question_rules.select import outer_join_matching, query_np, render_question
from transforms.sql.question_rules.values import value_np
from transforms.sql.question_rules.words import and_list, humanize, pluralize, singularize

__all__ = [
    "MAX_QUESTION_CHARS",
    "describe_sql",
    "generic_question",
    "humanize",
    "pluralize",
    "render_question",
    "singularize",
]

# Every module is imported above: the hooks the lower ones call the higher ones through (see
# ``dispatch``) are filled before anything is described.
dispatch.value_np = value_np
dispatch.cond_phrase = cond_phrase
dispatch.query_np = query_np
dispatch.outer_join_matching = outer_join_matching


MAX_QUESTION_CHARS = 1000
"""Upper bound on the length of a question; longer ones are cut at a word boundary.

The bound :mod:`transforms.sql.question_text` puts on a model's question. A cut drops conditions and
values, and a question that says less than its SQL is wrong where a long one is only long, so
a rules question is cut only past this (no query of the Defog and SEDE sets comes near it).
"""
_FALLBACK_QUESTION = "Show the requested data."


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

_TRAILING_FILLERS = frozenset(
    {"and", "or", "of", "with", "the", "a", "an", "to", "by", "in", "than", "between", "for",
     "each", "named", "titled", "that", "are", "is", "not", "then", "either", "neither", "nor",
     "one", "set", "among", "before", "after", "plus", "times", "divided", "at", "no", "all"}
)


_SENTENCE_END = re.compile(r"[.?](?=\s|$)")


def _truncate(text: str, limit: int) -> str:
    """Cut at a word boundary below ``limit``, drop dangling filler words and half-quoted values,
    and end the cut sentence as it would have ended ('?' or '.')."""
    body = text[: limit - 1]
    cut = body.rfind(" ")
    if cut > limit // 2:
        body = body[:cut]
    end = _SENTENCE_END.search(text, len(body))
    ending = end.group() if end else "."
    if body.count('"') % 2:
        body = body[: body.rfind('"')]
    words = body.rstrip(" ,;:(-").split(" ")
    while len(words) > 1 and words[-1].lower().strip(",") in _TRAILING_FILLERS:
        words.pop()
    body = " ".join(words).rstrip(" ,;:(-")
    return body if body.endswith(("?", ".")) else body + ending


def _finish(text: str) -> str:
    """Single spaces, capital first letter, terminal punctuation, length cap."""
    text = " ".join(text.split())
    if not text:
        return _FALLBACK_QUESTION
    text = text[0].upper() + text[1:]
    if text[-1] not in ".?":
        text += "."
    if len(text) > MAX_QUESTION_CHARS:
        text = _truncate(text, MAX_QUESTION_CHARS)
    return text


def generic_question(tree: exp.Expression) -> str:
    """A generic but valid question naming the selected columns and the tables read.

    Used when the rules cannot describe a statement; never raises.

    >>> from sqlglot import parse_one
    >>> generic_question(parse_one("SELECT a.x, b.y FROM t1 AS a JOIN t2 AS b ON a.id = b.id WHERE a.z > 1"))
    'Show the x and y from the t1 and t2 records matching the given conditions.'
    """
    try:
        columns: list[str] = []
        query = tree if isinstance(tree, exp.Query) else tree.find(exp.Query)
        selects = query.selects if query is not None else []
        for selected in selects:
            for column in selected.find_all(exp.Column):
                words = humanize(column.name)
                if words not in columns:
                    columns.append(words)
        tables: list[str] = []
        for table in tree.find_all(exp.Table):
            words = humanize(table.name) if table.name else ""
            if words and words not in tables:
                tables.append(words)
        matching = " matching the given conditions" if tree.find(exp.Where) is not None else ""
        shown = f"the {and_list(columns[:4])}" if columns else "the data"
        if not tables:
            return _finish(f"Show {shown}{matching}.") if columns else _FALLBACK_QUESTION
        return _finish(f"Show {shown} from the {and_list(tables[:3])} records{matching}.")
    except Exception:  # noqa: BLE001 - the last resort must not fail
        return _FALLBACK_QUESTION


def describe_sql(tree: exp.Expression) -> str:
    """A readable English question for a parsed SQL statement, from rules alone.

    Deterministic (same tree, same string), never raises, ends with '?' or '.', starts with a
    capital letter and is at most :data:`MAX_QUESTION_CHARS` characters long. The tree is read,
    never modified and never turned back into SQL.

    >>> from sqlglot import parse_one
    >>> describe_sql(parse_one("SELECT name FROM artist"))
    'List the name of every artist.'
    >>> describe_sql(parse_one("SELECT COUNT(*) FROM track WHERE milliseconds > 300000"))
    'How many tracks have milliseconds greater than 300000?'
    >>> describe_sql(parse_one(
    ...     "SELECT a.name, COUNT(*) FROM album al JOIN artist a ON al.artistid = a.artistid "
    ...     "GROUP BY a.name ORDER BY COUNT(*) DESC LIMIT 5"))
    'For each artist name, what is the number of albums? Show the top 5 by the number of albums, highest first.'
    """
    try:
        text = render_question(tree)
    except Exception:  # noqa: BLE001 - any surprise degrades to the generic sentence
        text = ""
    if not text:
        return generic_question(tree)
    return _finish(text)
