"""Question guardrails for generated pairs: no SQL in the question, no invented schema names, no lost values.

A generated question is training *input*: a question that quotes SQL teaches a model
to expect SQL in its prompt, and one that names a column the database does not have
(``customer_lifetime_value``) teaches it to hallucinate schema. These checks are pure
functions; the generators turn a non-None answer into a dead letter with that reason.

What counts as "schema-looking": a token with an underscore (``billing_country``),
an inner capital (``BillingCountry``), or a dot between two names (``invoice.total``).
Plain words are never checked — "customers" is English, not a claim about the schema.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from sqlglot import exp

from transforms.sql.question_text import question_problem

_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)(?![\w])")
_INNER_CAPITAL = re.compile(r"[a-z][A-Z]")
_WORD = re.compile(r"[a-z0-9]+")


def schema_looking_tokens(question: str) -> list[str]:
    """Tokens of ``question`` that look like table or column names.

    >>> schema_looking_tokens("Which BillingCountry has the most invoice_lines? See track.name, e.g. McDonald")
    ['BillingCountry', 'invoice_lines', 'track.name']
    """
    found = []
    for match in _IDENTIFIER.finditer(question):
        token = match.group(1)
        if "." in token:
            if min(len(part) for part in token.split(".")) >= 2:  # not "e.g" or "i.e"
                found.append(token)
        elif "_" in token.strip("_") or (_INNER_CAPITAL.search(token) and not _is_name(token)):
            found.append(token)
    return found


def _is_name(token: str) -> bool:
    """Proper names with one inner capital after a short prefix (McDonald, DeVito, iPhone) are words."""
    return bool(re.fullmatch(r"(Mc|Mac|De|Di|La|Le|O|i|e)[A-Z][a-z]+", token))


def invented_names(question: str, names: frozenset[str]) -> list[str]:
    """Schema-looking tokens of ``question`` that are not table or column names in ``names`` (lowercased).

    >>> invented_names("Total of BillingCountry and customer_ltv per invoice.Total", frozenset({"billingcountry", "invoice", "total"}))
    ['customer_ltv']
    """
    invented = []
    for token in schema_looking_tokens(question):
        parts = [p.lower() for p in token.split(".")]
        if not all(p in names for p in parts):
            invented.append(token)
    return invented


def question_rejection(question: object, sql: str, names: Optional[frozenset[str]] = None) -> Optional[tuple[str, str]]:
    """Why a generated question cannot be kept, as ``(reason, detail)``, or None.

    Reasons: ``empty_question``, ``question_too_long``, ``question_contains_sql`` (from
    ``transforms.sql.question_text``) and ``invented_schema_name``.
    """
    problem = question_problem(question, sql)
    if problem:
        return problem, f"question {str(question)[:300]!r}"
    if names:
        invented = invented_names(str(question), names)
        if invented:
            return "invented_schema_name", f"question {str(question)[:300]!r} names {', '.join(invented[:5])}, not in the schema"
    return None


def normalized_text(question: str) -> str:
    """Lowercased words only, for comparing phrasings.

    >>> normalized_text("How many  Tracks?")
    'how many tracks'
    """
    return " ".join(_WORD.findall(question.lower()))


def literal_values(tree: exp.Expression) -> list[str]:
    """String and number literals of a query, as text (for the specificity guardrail)."""
    values = []
    for literal in tree.find_all(exp.Literal):
        text = str(literal.this).strip()
        if text:
            values.append(text)
    return sorted(set(values))


def lost_values(original: str, paraphrase: str, values: Iterable[str]) -> list[str]:
    """Literal values the original question spells out that the paraphrase dropped.

    A paraphrase may not lose specificity: if the original says 'USA' or 300000, so must
    the paraphrase (case-insensitive).

    >>> lost_values("Invoices billed to USA over 5 dollars", "Invoices over five dollars", ["USA", "5"])
    ['USA', '5']
    >>> lost_values("Tracks by AC/DC", "Songs recorded by ac/dc", ["AC/DC"])
    []
    """
    before, after = original.lower(), paraphrase.lower()
    lost = []
    for value in values:
        needle = value.lower()
        if _mentions(before, needle) and not _mentions(after, needle):
            lost.append(value)
    return lost


def _mentions(text: str, value: str) -> bool:
    if value.replace(".", "", 1).isdigit():
        return re.search(rf"(?<![\d.]){re.escape(value)}(?![\d])", text) is not None
    return value in text
