"""Build SQLite copies of Defog's evaluation databases from the PostgreSQL dumps in ../shared/data.

sql-eval ships SQLite versions of its questions but not of the databases, so the
tests build them from the seven ``pg_dump`` files (``CREATE TABLE`` + ``COPY …
FROM stdin`` blocks): DDL is transpiled with sqlglot and COPY rows are inserted as
text (SQLite's type affinity turns numbers back into numbers). The four other
Defog databases (broker, car_dealership, derm_treatment, ewallet; 20 of the 210
SQLite questions) fill their tables with PostgreSQL date arithmetic evaluated at
load time, so they are not converted.
"""

from __future__ import annotations

import csv
import os
import pathlib
import re
import sqlite3

import pytest
import sqlglot
from sqlglot import exp

DUMPS = ("academic", "advising", "atis", "geography", "restaurants", "scholar", "yelp")


def _copy_value(text: str):
    if text == "\\N":
        return None
    return text.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\")


def _statements(script: str):
    """Split a pg_dump script into SQL statements and COPY blocks (kind, payload)."""
    lines = script.splitlines()
    buffer: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("COPY ") and line.rstrip().endswith("FROM stdin;"):
            rows = []
            i += 1
            while lines[i] != "\\.":
                rows.append(lines[i])
                i += 1
            yield "copy", (line, rows)
        elif not line.startswith("--"):
            buffer.append(line)
            if line.rstrip().endswith(";"):
                yield "sql", "\n".join(buffer)
                buffer = []
        i += 1


def _strip_schema(tree: exp.Expression) -> exp.Expression:
    for table in tree.find_all(exp.Table):
        table.set("db", None)
    for default in list(tree.find_all(exp.DefaultColumnConstraint)):
        default.parent.pop()  # SQLite wants parenthesized default expressions; the tests need none
    return tree


def _execute_ddl(connection: sqlite3.Connection, sql: str) -> None:
    head = sql.lstrip().upper()
    if not head.startswith("CREATE TABLE"):
        return
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError:
        return
    if isinstance(tree, exp.Create) and tree.kind == "TABLE":
        try:
            connection.execute(_strip_schema(tree).sql(dialect="sqlite"))
        except sqlite3.OperationalError as error:
            raise RuntimeError(f"{error}: {_strip_schema(tree).sql(dialect='sqlite')}") from error


def build(source_dir: pathlib.Path, target_dir: pathlib.Path, name: str) -> pathlib.Path:
    """Build (once) ``target_dir/name.sqlite`` from Defog's PostgreSQL file for ``name``."""
    target = target_dir / f"{name}.sqlite"
    if target.exists():
        return target
    script_path = source_dir / "pypi_dumps" / f"{name}.sql"
    script = script_path.read_text(encoding="utf-8")
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    connection = sqlite3.connect(partial)
    for kind, payload in _statements(script):
        if kind == "copy":
            header, rows = payload
            table = header.split()[1].split(".")[-1]
            columns = header[header.index("(") + 1 : header.index(")")]
            marks = ",".join("?" for _ in columns.split(","))
            connection.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                [[_copy_value(v) for v in row.split("\t")] for row in rows],
            )
        else:
            _execute_ddl(connection, payload)
    connection.commit()
    connection.close()
    partial.rename(target)
    return target


def build_all(source_dir: pathlib.Path, target_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    target_dir.mkdir(parents=True, exist_ok=True)
    return {name: build(source_dir, target_dir, name) for name in DUMPS}


def question_queries(csv_path: pathlib.Path) -> list[str]:
    """Every query of sql-eval's ``questions_gen_sqlite.csv`` (one per ``;``-separated statement),
    with its ``{a, b}`` column alternatives unwrapped; skipped without ``../shared``, a failure in CI."""
    if not csv_path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared data file is missing: {csv_path}")
        pytest.skip(f"shared data not present ({csv_path}); it lives beside the repo as ../shared")
    queries = []
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for sql in row["query"].split(";"):  # no ';' inside literals in this file
                if sql.strip():
                    queries.append(re.sub(r"\{([^{}]*)\}", r"\1", sql))
    return queries
