"""What a question's text may be: no SQL in it, not empty, not too long; and its cleaning.

The question writer (label), the generators (generate) and the guardrails all judge question
text the same way, so it lives here, below the families, as pure functions.
"""

from __future__ import annotations

import re
from typing import Any, Optional

#: Questions longer than this are rejected (a model that rambles did not write a question).
MAX_QUESTION_CHARS = 1000

_SQL_PATTERNS = (
    re.compile(r"```"),
    re.compile(r"\bSELECT\b[\s\S]*\bFROM\b"),
    re.compile(r"\b(GROUP|ORDER|PARTITION)\s+BY\b"),
    re.compile(r"\b(INNER|LEFT|RIGHT|FULL|CROSS|OUTER)\s+JOIN\b"),
    re.compile(r"\bINSERT\s+INTO\b|\bDELETE\s+FROM\b|\bUPDATE\s+\w+\s+SET\b", re.IGNORECASE),
    re.compile(r"\bselect\s+(\*|distinct\b|count\s*\()", re.IGNORECASE),
    re.compile(r"\b(count|sum|avg|min|max)\s*\(\s*(\*|distinct\b|[a-z_]+\.[a-z_]+\s*\))", re.IGNORECASE),
    re.compile(r"\bfrom\s+[\w.\"`]+\s+(as\s+\w+\s+)?(where|join|group\s+by|order\s+by|limit)\b", re.IGNORECASE),
    re.compile(r"\b\w+\.\w+\s*(=|<>|!=|<=|>=)\s*\S", re.IGNORECASE),
    re.compile(r"\bWHERE\b\s+\w+\s*(=|<>|!=|<|>|\bIN\b|\bLIKE\b)"),
    re.compile(r"\bLIMIT\s+\d+"),
    re.compile(r";\s*$"),
)
_WORD = re.compile(r"[a-z0-9_]+")
_SQL_KEYWORDS = frozenset({"select", "from", "where", "join", "group", "order", "by", "limit", "having", "on", "as"})


def words(text: str) -> list[str]:
    """The lowercased words of a text (letters, digits, underscores)."""
    return _WORD.findall(text.lower())


def contains_sql(question: str, sql: str = "") -> bool:
    """Whether a question carries SQL: clause syntax, or a verbatim run of the record's SQL.

    >>> contains_sql("How many tracks are longer than five minutes?", "SELECT COUNT(*) FROM track")
    False
    >>> contains_sql("What is SELECT COUNT(*) FROM track?")
    True
    >>> contains_sql("select * from track where milliseconds > 300000")
    True
    >>> contains_sql("Which artist names from track albums sort first?", "SELECT name FROM artist ORDER BY name")
    False
    >>> contains_sql("Get name from artist order by name please", "SELECT name FROM artist ORDER BY name")
    True
    """
    if any(pattern.search(question) for pattern in _SQL_PATTERNS):
        return True
    if not sql:
        return False
    asked, source = words(question), words(sql)
    run = 4
    grams = {tuple(source[i : i + run]) for i in range(len(source) - run + 1)}
    for i in range(len(asked) - run + 1):
        gram = tuple(asked[i : i + run])
        if gram in grams and _SQL_KEYWORDS.intersection(gram):
            return True
    return False


def question_problem(question: Any, sql: str) -> Optional[str]:
    """Why a candidate cannot be a question (a dead-letter reason), or None when it can."""
    if not isinstance(question, str) or not question.strip():
        return "empty_question"
    if len(question) > MAX_QUESTION_CHARS:
        return "question_too_long"
    if contains_sql(question, sql):
        return "question_contains_sql"
    return None


def clean_question(text: str) -> str:
    """Single spaces, no wrapping quotes.

    >>> clean_question('  "How many  artists are there?" ')
    'How many artists are there?'
    """
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text
