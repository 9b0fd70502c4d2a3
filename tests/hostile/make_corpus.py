"""Write the generated part of the hostile-input corpus into a folder.

The small, readable cases are committed next to this file (``tests/hostile/*``).
Cases that are big (a 1 MB query, a 10,000-statement script, 5,000 levels of
nesting) or binary (bytes that are not UTF-8, NUL bytes, Parquet) are generated
here instead, at test time, into a temporary folder: a megabyte of SQL in git
helps nobody review it, and editors and diff tools mangle invalid bytes.

    python tests/hostile/make_corpus.py /tmp/hostile   # writes the files, prints their names

Every function returns the path it wrote; the content is deterministic.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Callable

#: Nesting depth of the deep-SQL cases: far past Python's default recursion limit (1,000).
DEEP = 5000
#: Statements in the big script.
MANY_STATEMENTS = 10_000
#: Size of the big query, in bytes.
BIG_QUERY_BYTES = 1_000_000  # "a 1 MB query": just under --max_sql_bytes (1 MiB), so it is read whole


def not_utf8_sql(folder: pathlib.Path) -> pathlib.Path:
    """Latin-1 bytes inside the second statement; the first and third are fine."""
    path = folder / "not_utf8.sql"
    path.write_bytes(b"SELECT Name FROM Artist;\nSELECT 'caf\xe9' FROM Album;\nSELECT Title FROM Album;\n")
    return path


def nul_byte_sql(folder: pathlib.Path) -> pathlib.Path:
    """A NUL byte inside the second statement's string literal."""
    path = folder / "nul_byte.sql"
    path.write_bytes(b"SELECT Name FROM Genre;\nSELECT 'a\x00b' FROM Genre;\nSELECT Name FROM MediaType;\n")
    return path


def not_utf8_jsonl(folder: pathlib.Path) -> pathlib.Path:
    """JSONL whose second line holds a byte that is not UTF-8, and whose third holds a NUL escape."""
    path = folder / "not_utf8.jsonl"
    path.write_bytes(
        b'{"sql": "SELECT Name FROM Artist"}\n'
        b'{"sql": "SELECT Name FROM Artist WHERE Name = \'\xff\'"}\n'
        b'{"sql": "SELECT \'\\u0000\' FROM Artist"}\n'
    )
    return path


def big_query_sql(folder: pathlib.Path) -> pathlib.Path:
    """One ~1 MB SELECT (a long IN list) followed by a small one."""
    path = folder / "big_query.sql"
    values = []
    size = 0
    number = 0
    while size < BIG_QUERY_BYTES:
        item = str(number)
        values.append(item)
        size += len(item) + 2
        number += 1
    path.write_text(f"SELECT Name FROM Track WHERE TrackId IN ({', '.join(values)});\nSELECT Name FROM Genre;\n")
    return path


def many_statements_sql(folder: pathlib.Path) -> pathlib.Path:
    """10,000 statements: 9,990 valid (5 distinct texts repeated), 10 broken ones spread through."""
    path = folder / "many_statements.sql"
    valid = [
        "SELECT Name FROM Artist WHERE ArtistId = {n}",
        "SELECT Title FROM Album WHERE AlbumId = {n}",
        "SELECT COUNT(*) FROM Track WHERE GenreId = {n}",
        "SELECT Name FROM Genre ORDER BY Name LIMIT {n}",
        "SELECT FirstName FROM Customer WHERE CustomerId > {n}",
    ]
    lines = []
    for n in range(MANY_STATEMENTS):
        if n % 1000 == 999:
            lines.append("SELECT FROM WHERE;")
        else:
            lines.append(valid[n % len(valid)].format(n=n % 50) + ";")
    path.write_text("\n".join(lines) + "\n")
    return path


def deep_parentheses_sql(folder: pathlib.Path) -> pathlib.Path:
    """``SELECT ((((…1…))))`` with 5,000 levels, then a normal statement."""
    path = folder / "deep_parentheses.sql"
    path.write_text("SELECT " + "(" * DEEP + "1" + ")" * DEEP + ";\nSELECT Name FROM Artist;\n")
    return path


def deep_subqueries_sql(folder: pathlib.Path) -> pathlib.Path:
    """5,000 nested derived tables ``SELECT * FROM (SELECT * FROM (… Artist …) AS t) AS t``."""
    path = folder / "deep_subqueries.sql"
    sql = "SELECT * FROM Artist"
    for level in range(DEEP):
        sql = f"SELECT * FROM ({sql}) AS t{level}"
    path.write_text(sql + ";\nSELECT Name FROM Genre;\n")
    return path


def deep_json(folder: pathlib.Path) -> pathlib.Path:
    """A JSONL line nested 100,000 arrays deep (past the json module's recursion), then a good line."""
    path = folder / "deep.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + '\n{"sql": "SELECT Name FROM Artist"}\n')
    return path


def _parquet(path: pathlib.Path, columns: dict) -> pathlib.Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def parquet_missing_sql_column(folder: pathlib.Path) -> pathlib.Path:
    """Parquet whose SQL column is called ``query`` instead of ``sql``."""
    return _parquet(folder / "missing_sql.parquet",
                    {"query": ["SELECT Name FROM Artist"], "question": ["Artist names?"]})


def parquet_missing_question_column(folder: pathlib.Path) -> pathlib.Path:
    """Seed pairs in Parquet without a ``question`` column."""
    return _parquet(folder / "missing_question.parquet", {"sql": ["SELECT Name FROM Artist"]})


def parquet_wrong_types(folder: pathlib.Path) -> pathlib.Path:
    """Parquet with an integer ``sql`` column."""
    return _parquet(folder / "wrong_types.parquet", {"sql": [1, 2]})


def not_parquet(folder: pathlib.Path) -> pathlib.Path:
    """A ``.parquet`` file that is really text (or a truncated download)."""
    path = folder / "not_really.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file at all")
    return path


def not_gzip(folder: pathlib.Path) -> pathlib.Path:
    """A ``.sql.gz`` file that is plain text: the decompressor fails part-way."""
    path = folder / "not_gzip.sql.gz"
    path.write_bytes(b"SELECT Name FROM Artist;\n")
    return path


#: Every generator, by the name of the file it writes (without folder).
GENERATORS: dict[str, Callable[[pathlib.Path], pathlib.Path]] = {
    "not_utf8.sql": not_utf8_sql,
    "nul_byte.sql": nul_byte_sql,
    "not_utf8.jsonl": not_utf8_jsonl,
    "big_query.sql": big_query_sql,
    "many_statements.sql": many_statements_sql,
    "deep_parentheses.sql": deep_parentheses_sql,
    "deep_subqueries.sql": deep_subqueries_sql,
    "deep.jsonl": deep_json,
    "missing_sql.parquet": parquet_missing_sql_column,
    "missing_question.parquet": parquet_missing_question_column,
    "wrong_types.parquet": parquet_wrong_types,
    "not_really.parquet": not_parquet,
    "not_gzip.sql.gz": not_gzip,
}


def write_corpus(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write every generated case into ``folder``; returns the paths by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: generate(folder) for name, generate in GENERATORS.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile/make_corpus.py FOLDER")
    for written in write_corpus(pathlib.Path(sys.argv[1])).values():
        print(written)
