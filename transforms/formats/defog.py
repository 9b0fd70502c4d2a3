"""Defog sql-eval question files: one pair per acceptable query, alternatives expanded.

The CSVs (``questions_gen_postgres.csv``, ``instruct_*_postgres.csv``,
``questions_gen_sqlite.csv``) have columns ``question``, ``query``, ``db_name`` and
usually ``query_category``, ``instructions`` (``db_type`` and ``full_instructions``
in some). A ``query`` cell may hold

* several acceptable queries separated by top-level ``;``, and
* a column set ``{a, b}``: any non-empty subset of those columns is acceptable, and
  a later ``{}`` (as in ``GROUP BY {}``) stands for the same subset.

:func:`expand_alternatives` turns one cell into the list of plain queries; the
parser yields one ``RawPair`` per query (source ``seed``, ``db_id`` = ``db_name``).
"""

from __future__ import annotations

import itertools
from typing import BinaryIO, Iterator, NamedTuple, Optional, Union

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from transforms.formats.shared import MAX_SQL_BYTES, csv_rows, excerpt, text_problem
from transforms.formats.sql_file import split_statements
from transforms.formats.types import RawPair, ReadReject

#: Most queries one cell may expand to (column sets grow as 2^n - 1).
MAX_ALTERNATIVES = 4096
#: Columns a sql-eval file must have.
REQUIRED_COLUMNS = ("question", "query", "db_name")
#: sql-eval ``db_type`` values → sqlglot dialects (files without the column are PostgreSQL).
_DIALECTS = {"postgres": "postgres", "sqlite": "sqlite", "mysql": "mysql", "bigquery": "bigquery",
             "snowflake": "snowflake", "tsql": "tsql", "sqlserver": "tsql", "duckdb": "duckdb"}
_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}


class _Braces(NamedTuple):
    start: int  # offset of "{"
    end: int  # offset just after "}"
    columns: tuple[str, ...]  # empty for a "{}" placeholder


def expand_alternatives(query: str, dialect: Optional[str] = "postgres") -> list[str]:
    """Every plain query a sql-eval ``query`` cell accepts, in order.

    Alternatives are split on top-level semicolons (not inside strings, quoted
    names or comments). In each, a column set ``{a, b}`` becomes each non-empty
    subset of its columns — by size, then in the written order, joined with ``", "``
    — and each ``{}`` after it becomes the same subset. Several sets in one query
    multiply. A query the cell gives twice (sql-eval repeats some alternatives) is
    listed once, where it first appears: the two would be one pair with one id, told
    apart only by their index, and which of them survived dedup would depend on the
    order they arrived in. ``ValueError`` for a cell that cannot be tokenized or
    expands to more than ``MAX_ALTERNATIVES`` queries.

    >>> expand_alternatives("SELECT {t.id,t.name}, COUNT(*) FROM t GROUP BY {};SELECT 1;")
    ['SELECT t.id, COUNT(*) FROM t GROUP BY t.id', 'SELECT t.name, COUNT(*) FROM t GROUP BY t.name', \
'SELECT t.id, t.name, COUNT(*) FROM t GROUP BY t.id, t.name', 'SELECT 1']
    >>> expand_alternatives("SELECT 'a;{b}' FROM t")
    ["SELECT 'a;{b}' FROM t"]
    >>> expand_alternatives("SELECT {a, a} FROM t;SELECT a FROM t")
    ['SELECT a FROM t', 'SELECT a, a FROM t']
    """
    tokenizer = Dialect.get_or_raise(dialect).tokenizer()
    queries: dict[str, None] = {}  # insertion-ordered set
    for statement in split_statements(query, dialect):
        queries.update(dict.fromkeys(_expand_column_sets(statement.text, tokenizer)))
        if len(queries) > MAX_ALTERNATIVES:
            raise ValueError(f"more than {MAX_ALTERNATIVES} alternatives")
    return list(queries)


def _find_braces(text: str, tokenizer) -> list[_Braces]:
    try:
        tokens = tokenizer.tokenize(text)
    except TokenError as error:
        raise ValueError(f"cannot tokenize: {error}") from error
    found = []
    index = 0
    while index < len(tokens):
        if tokens[index].token_type != TokenType.L_BRACE:
            index += 1
            continue
        opening = tokens[index]
        columns = []
        item_start = opening.end + 1
        depth = 0
        index += 1
        while index < len(tokens):
            token = tokens[index]
            if depth == 0 and token.token_type == TokenType.R_BRACE:
                break
            if token.token_type in _OPENING:
                depth += 1
            elif token.token_type in _CLOSING:
                depth -= 1
            elif depth == 0 and token.token_type == TokenType.COMMA:
                columns.append(text[item_start : token.start].strip())
                item_start = token.end + 1
            index += 1
        else:
            raise ValueError(f"unclosed {{ at offset {opening.start}")
        closing = tokens[index]
        columns.append(text[item_start : closing.start].strip())
        found.append(_Braces(opening.start, closing.end + 1, tuple(c for c in columns if c)))
        index += 1
    return found


def _subsets(columns: tuple[str, ...]) -> list[str]:
    return [
        ", ".join(chosen)
        for size in range(1, len(columns) + 1)
        for chosen in itertools.combinations(columns, size)
    ]


def _expand_column_sets(text: str, tokenizer) -> list[str]:
    braces = _find_braces(text, tokenizer)
    sets = [b for b in braces if b.columns]
    if not sets:
        return [text]
    options = [_subsets(b.columns) for b in sets]
    total = 1
    for choices in options:
        total *= len(choices)
    if total > MAX_ALTERNATIVES:
        raise ValueError(f"{total} alternatives (more than {MAX_ALTERNATIVES})")
    expanded = []
    for combination in itertools.product(*options):
        parts = []
        position = 0
        current = combination[0]  # a "{}" before any set takes the first set's subset
        chosen = iter(combination)
        for brace in braces:
            parts.append(text[position : brace.start])
            if brace.columns:
                current = next(chosen)
            parts.append(current)
            position = brace.end
        parts.append(text[position:])
        expanded.append("".join(parts))
    return expanded


def parse_defog_csv(
    stream: BinaryIO, path: str, max_sql_bytes: int = MAX_SQL_BYTES
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per expanded query of each row of a sql-eval CSV (source ``seed``).

    ``extra`` holds the row's other non-empty columns (``query_category``,
    ``instructions``, …), ``db_type`` (``postgres`` when the file has no such
    column), ``alternative`` (0-based index) and ``alternatives`` (how many distinct
    queries the row gave), and ``query_template`` (the cell as written) when the cell
    held more than one query or a column set. All alternatives of a row share its origin
    ``path:line``; their SQL texts differ, so their ids (a hash of the content) differ
    too. A cell that cannot be expanded is ``malformed_query``.
    """
    header = None
    for line, row in csv_rows(stream, path, max_sql_bytes):  # a record over --max_sql_bytes: sql_too_long
        origin = f"{path}:{line}"
        if isinstance(row, ReadReject):
            yield row
            continue
        if header is None:
            header = [name.strip() for name in row]
            for column in REQUIRED_COLUMNS:
                if column not in header:
                    yield ReadReject(path, f"missing_column:{column}", f"header has {header}")
                    return
            continue
        if len(row) != len(header):
            yield ReadReject(origin, "wrong_field_count", f"expected {len(header)} fields, got {len(row)}")
            continue
        yield from _row_pairs(dict(zip(header, row)), origin)


def _row_pairs(row: dict[str, str], origin: str) -> Iterator[Union[RawPair, ReadReject]]:
    for column, value in row.items():
        problem = text_problem(value, origin, column)
        if problem:
            yield problem
            return
    query = row["query"].strip()
    if not query:
        yield ReadReject(origin, "empty_sql", "'query' is blank")
        return
    db_type = (row.get("db_type") or "postgres").strip().lower()
    try:
        alternatives = expand_alternatives(query, _DIALECTS.get(db_type, "postgres"))
    except ValueError as error:
        yield ReadReject(origin, "malformed_query", excerpt(str(error)))
        return
    if not alternatives:
        yield ReadReject(origin, "empty_sql", "'query' holds no statement")
        return
    question = row["question"].strip() or None
    db_id = row["db_name"].strip() or None
    extra = {k: v for k, v in row.items() if k not in ("question", "query", "db_name") and v.strip()}
    extra["db_type"] = db_type
    extra["alternatives"] = str(len(alternatives))
    if len(alternatives) > 1 or alternatives[0] != query.rstrip(";").strip():
        extra["query_template"] = query
    for index, sql in enumerate(alternatives):
        yield RawPair(sql, question, (), True, db_id, "seed", origin, {**extra, "alternative": str(index)})
