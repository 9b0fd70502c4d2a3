"""The record types every parser yields: :class:`RawPair`, :class:`ReadReject` and ``SOURCES``.

They live in their own module, not in the package's ``__init__``, so that the parser modules
can import them without importing the package that imports those modules back (an import
cycle). ``transforms.formats`` re-exports them for existing importers.
"""

from __future__ import annotations

from typing import NamedTuple, Optional


class RawPair(NamedTuple):
    """What a parser yields for one usable item."""

    sql: str  # verbatim SQL text as in the input, stripped of surrounding whitespace only
    question: Optional[str]
    context: tuple[str, ...]  # preceding turns as "User: …"/"Assistant: …" strings (chat only)
    success: bool  # False for failed tool calls / error log lines
    db_id: Optional[str]
    source: str  # 'log' | 'chat' | 'seed'
    origin: str  # "path:line" or "path#index"
    extra: dict[str, str]  # anything else worth keeping (query_category, tool, duration_ms, ...)


class ReadReject(NamedTuple):
    """One input item (or a whole file) that could not become a :class:`RawPair`.

    ``reason`` is a short stable code, e.g. ``invalid_json``, ``not_utf8``,
    ``nul_byte``, ``missing_field:sql``, ``wrong_type:sql``, ``empty_sql``,
    ``csv_error``, ``wrong_field_count``, ``missing_column:sql``, ``parquet_error``,
    ``truncated_json``, ``malformed_part``, ``malformed_message``,
    ``tokenize_error``, ``sql_too_long`` (an item over ``--max_sql_bytes``), ``malformed_query``,
    ``unreadable_file`` (a file that cannot be opened, a dangling link, a link loop).
    """

    origin: str
    reason: str
    detail: str


#: Values allowed for ``RawPair.source``.
SOURCES = ("log", "chat", "seed")
