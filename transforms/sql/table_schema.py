"""The schema of the tables a query reads, as prompt text: columns, types, keys, sample rows.

A question written from the SQL alone guesses what ``t1.c3`` means; one written with the
referenced tables' columns, keys and a few real values does not. This module gets that
context from two places, both optional:

* ``--schema`` DDL files: ``CREATE TABLE`` and ``ALTER TABLE ... ADD CONSTRAINT`` statements
  (anything else — the INSERTs of a dump — is skipped before parsing, so a 600 kB dump
  costs one scan), parsed with sqlglot;
* the database (``--database``): column names and types from the catalogue and
  ``SELECT * FROM t LIMIT 3`` for sample values, through the ``Executor`` contract
  (read-only session, time limit, row cap).

Everything is best effort: a table nobody describes is simply left out of the prompt.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import sqlglot
from sqlglot import exp

_LOGGER = logging.getLogger(__name__)
#: Sample rows shown per table, and characters per sample value.
SAMPLE_ROWS = 3
SAMPLE_CHARS = 40
#: A column's comment beside its ``information_schema.columns`` row, where the database keeps one.
_COLUMN_COMMENT_SQL = {
    "postgres": "col_description((quote_ident(table_schema) || '.' || quote_ident(table_name))::regclass, "
                "ordinal_position)",
    "mysql": "column_comment",
}


class Column(NamedTuple):
    name: str
    type: str = ""
    primary_key: bool = False
    references: Optional[str] = None  # "table.column"
    comment: str = ""  # from the DDL (COMMENT '...' or COMMENT ON COLUMN); shown by --prompt_schema noisy|full


class Table(NamedTuple):
    name: str
    columns: tuple[Column, ...] = ()
    samples: tuple[tuple[str, ...], ...] = ()


def table_key(name: str) -> str:
    """Tables are matched by their unqualified, lowercased name ("public.Track" -> "track")."""
    return name.rsplit(".", 1)[-1].strip('"`[]').lower()


def split_statements(text: str) -> Iterator[str]:
    """Statements of a SQL script, split at ``;`` outside quotes and comments.

    >>> list(split_statements("CREATE TABLE a (x INT); -- c;\\nINSERT INTO a VALUES ('x;y');"))
    ['CREATE TABLE a (x INT)', "-- c;\\nINSERT INTO a VALUES ('x;y')"]
    """
    start, i, n = 0, 0, len(text)
    while i < n:
        char = text[i]
        if char in ("'", '"', "`"):
            end = text.find(char, i + 1)
            while end != -1 and end + 1 < n and text[end + 1] == char:  # doubled quote
                end = text.find(char, end + 2)
            i = n if end == -1 else end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif char == ";":
            statement = text[start:i].strip()
            if statement:
                yield statement
            start = i = i + 1
        else:
            i += 1
    tail = text[start:].strip()
    if tail:
        yield tail


def _strip_leading_comments(statement: str) -> str:
    text = statement.lstrip()
    while text.startswith(("--", "/*")):
        if text.startswith("--"):
            end = text.find("\n")
            text = "" if end == -1 else text[end + 1 :].lstrip()
        else:
            end = text.find("*/")
            text = "" if end == -1 else text[end + 2 :].lstrip()
    return text


def _is_ddl(statement: str) -> bool:
    words = _strip_leading_comments(statement)[:64].upper().split()
    if words[:3] == ["COMMENT", "ON", "COLUMN"]:
        return True
    return len(words) >= 2 and words[0] in ("CREATE", "ALTER") and "TABLE" in words[1:4]


def _reference(node: Optional[exp.Expression]) -> Optional[tuple[str, list[str]]]:
    if not isinstance(node, exp.Reference) or not isinstance(node.this, exp.Schema):
        return None
    target = node.this.this
    name = target.name if isinstance(target, exp.Table) else ""
    return name, [e.name for e in node.this.expressions]


class _Builder:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.columns: dict[str, dict[str, dict[str, Any]]] = {}
        self.names: dict[str, str] = {}

    def table(self, name: str) -> dict[str, dict[str, Any]]:
        key = table_key(name)
        if key not in self.columns:
            self.order.append(key)
            self.columns[key] = {}
            self.names[key] = name
        return self.columns[key]

    def constraint(self, table: str, node: exp.Expression) -> None:
        columns = self.table(table)
        if isinstance(node, exp.Constraint):
            for inner in node.expressions:
                self.constraint(table, inner)
        elif isinstance(node, exp.PrimaryKey):
            for column in node.expressions:
                columns.setdefault(column.name.lower(), {"name": column.name})["primary_key"] = True
        elif isinstance(node, exp.ForeignKey):
            target = _reference(node.args.get("reference"))
            if target:
                for index, column in enumerate(node.expressions):
                    ref_column = target[1][index] if index < len(target[1]) else (target[1][0] if target[1] else "")
                    entry = columns.setdefault(column.name.lower(), {"name": column.name})
                    entry["references"] = f"{target[0]}.{ref_column}" if ref_column else target[0]

    def statement(self, tree: exp.Expression, dialect: Optional[str]) -> None:
        if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema) and isinstance(tree.this.this, exp.Table):
            name = tree.this.this.name
            columns = self.table(name)
            for item in tree.this.expressions:
                if isinstance(item, exp.ColumnDef):
                    entry = columns.setdefault(item.name.lower(), {"name": item.name})
                    kind = item.args.get("kind")
                    entry["type"] = kind.sql(dialect=dialect) if kind is not None else ""
                    for constraint in item.args.get("constraints") or ():
                        kind = constraint.args.get("kind")
                        if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                            entry["primary_key"] = True
                        target = _reference(kind)
                        if target:
                            entry["references"] = f"{target[0]}.{target[1][0]}" if target[1] else target[0]
                        if isinstance(kind, exp.CommentColumnConstraint):
                            entry["comment"] = kind.this.name
                else:
                    self.constraint(name, item)
        elif isinstance(tree, exp.Alter) and isinstance(tree.this, exp.Table):
            for action in tree.args.get("actions") or ():
                for node in action.expressions if isinstance(action, exp.AddConstraint) else [action]:
                    self.constraint(tree.this.name, node)
        elif (isinstance(tree, exp.Comment) and isinstance(tree.this, exp.Column)
              and table_key(tree.this.table) in self.columns):  # a comment on a column the DDL created
            column = tree.this
            entry = self.table(column.table).setdefault(column.name.lower(), {"name": column.name})
            entry["comment"] = tree.expression.name if tree.expression is not None else ""

    def tables(self) -> dict[str, Table]:
        result = {}
        for key in self.order:
            columns = tuple(
                Column(c["name"], c.get("type", ""), bool(c.get("primary_key")), c.get("references"),
                       c.get("comment", ""))
                for c in self.columns[key].values()
            )
            result[key] = Table(self.names[key], columns)
        return result


def tables_from_ddl(texts: Iterable[str], dialect: Optional[str] = None) -> dict[str, Table]:
    """Tables described by DDL scripts, keyed by ``table_key`` (statements sqlglot cannot parse are skipped).

    >>> t = tables_from_ddl(["CREATE TABLE album (album_id INT PRIMARY KEY, artist_id INT); ALTER TABLE album "
    ...                      "ADD CONSTRAINT f FOREIGN KEY (artist_id) REFERENCES artist (artist_id);"])
    >>> [(c.name, c.type, c.primary_key, c.references) for c in t["album"].columns]
    [('album_id', 'INT', True, None), ('artist_id', 'INT', False, 'artist.artist_id')]
    """
    builder = _Builder()
    for text in texts:
        for statement in split_statements(text):
            if not _is_ddl(statement):
                continue
            try:
                tree = sqlglot.parse_one(statement, read=dialect or None)
            except Exception:  # noqa: BLE001 - one odd statement must not lose the rest
                _LOGGER.debug("skipping unparsable DDL statement: %.80s", statement)
                continue
            builder.statement(tree, dialect)
    return builder.tables()


def sample_value_text(value: Any) -> str:
    """A sample value as SQL-literal-like text, short enough for a prompt.

    >>> sample_value_text("AC/DC"), sample_value_text(None), sample_value_text(3.5), sample_value_text("a\\nb")
    ("'AC/DC'", 'NULL', '3.5', "'a b'")
    """
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "<binary>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = " ".join(str(value).split())
    if len(text) > SAMPLE_CHARS:
        text = text[: SAMPLE_CHARS - 1] + "…"
    return "'" + text.replace("'", "''") + "'"


def render_table(table: Table) -> str:
    """One table as prompt text.

    >>> print(render_table(Table("album", (Column("album_id", "INT", True), Column("artist_id", "INT", False,
    ...       "artist.artist_id")), (("1", "'AC/DC'"),))))
    album(album_id INT primary key, artist_id INT references artist.artist_id)
      sample rows: (1, 'AC/DC')
    """
    parts = []
    for column in table.columns:
        text = column.name + (f" {column.type}" if column.type else "")
        if column.primary_key:
            text += " primary key"
        if column.references:
            text += f" references {column.references}"
        parts.append(text)
    lines = [f"{table.name}({', '.join(parts)})"]
    if table.samples:
        lines.append("  sample rows: " + "; ".join(f"({', '.join(row)})" for row in table.samples))
    return "\n".join(lines)


def render_tables(tables: Sequence[Table]) -> str:
    """The prompt's schema section; says so plainly when nothing is known."""
    if not tables:
        return "(no schema available: write the question from the SQL alone)"
    return "\n".join(render_table(table) for table in tables)


# -- from a live database ------------------------------------------------------------------


def _run(executor: Any, sql: str) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """Columns and rows through the Executor contract's ``fetch_rows`` (read-only, time-limited, capped)."""
    return executor.fetch_rows(sql)


def introspect_table(executor: Any, name: str) -> Optional[Table]:
    """Columns, types and sample rows of table ``name`` from the database, or None.

    Types come from ``pragma_table_info`` (SQLite) or ``information_schema.columns`` (with the
    column comments of PostgreSQL and MySQL);
    sample values from ``SELECT * FROM name LIMIT 3``. Failures (no such table, no
    catalogue access) give what could be read, never an exception.
    """
    dialect = getattr(executor, "dialect", None) or "postgres"
    parts = name.split(".")
    table = exp.to_table(name, dialect=dialect)
    columns: list[Column] = []
    try:
        if dialect == "sqlite":
            sql = f"SELECT name, type, pk FROM pragma_table_info({exp.Literal.string(parts[-1]).sql(dialect)})"
            _, rows = _run(executor, sql)
            columns = [Column(str(r[0]), str(r[1] or ""), bool(r[2])) for r in rows]
            literal = exp.Literal.string(parts[-1]).sql(dialect)
            sql = f'SELECT "from", "table", "to" FROM pragma_foreign_key_list({literal})'
            _, keys = _run(executor, sql)
            targets = {str(k[0]).lower(): f"{k[1]}.{k[2]}" if k[2] else str(k[1]) for k in keys}
            columns = [c._replace(references=targets.get(c.name.lower())) for c in columns]
        else:
            where = f"lower(table_name) = {exp.Literal.string(parts[-1].lower()).sql(dialect)}"
            if len(parts) > 1:
                where += f" AND lower(table_schema) = {exp.Literal.string(parts[-2].lower()).sql(dialect)}"
            comment = _COLUMN_COMMENT_SQL.get(dialect, "''")
            sql = (f"SELECT column_name, data_type, {comment} FROM information_schema.columns WHERE {where} "
                   "ORDER BY ordinal_position")
            _, rows = _run(executor, sql)
            columns = [Column(str(r[0]), str(r[1] or ""), comment=str(r[2] or "")) for r in rows]
    except Exception as error:  # noqa: BLE001 - types are optional
        _LOGGER.debug("no catalogue entry for %s: %s", name, error)
    samples: tuple[tuple[str, ...], ...] = ()
    try:
        names, rows = _run(executor, exp.select("*").from_(table).limit(SAMPLE_ROWS).sql(dialect=dialect))
        samples = tuple(tuple(sample_value_text(v) for v in row) for row in rows[:SAMPLE_ROWS])
        if not columns:
            columns = [Column(str(c)) for c in names]
    except Exception as error:  # noqa: BLE001 - samples are optional
        _LOGGER.debug("no sample rows for %s: %s", name, error)
    if not columns:
        return None
    return Table(table.name or name, tuple(columns), samples)


def merge(described: Optional[Table], live: Optional[Table]) -> Optional[Table]:
    """DDL's columns and keys (when known) with the database's sample rows."""
    if described is None:
        return live
    if live is None:
        return described
    return described._replace(samples=live.samples) if _same_columns(described, live) else described


def _same_columns(a: Table, b: Table) -> bool:
    return [c.name.lower() for c in a.columns] == [c.name.lower() for c in b.columns]


def collect_tables(
    names: Sequence[str],
    ddl: Mapping[str, Table],
    live: Optional[Callable[[str], Optional[Table]]] = None,
) -> list[Table]:
    """The described tables among ``names``, in order, each once: DDL merged with what ``live``
    (introspection of the database, if any) says about it; tables nobody describes are left out."""
    found: dict[str, Table] = {}
    for name in names:
        key = table_key(name)
        if key in found:
            continue
        table = merge(ddl.get(key), live(name) if live is not None else None)
        if table is not None:
            found[key] = table
    return list(found.values())


def foreign_key_links(tables: Sequence[Table]) -> dict[str, set[str]]:
    """Tables linked by a foreign key, in both directions, by ``table_key`` (links to unknown tables left out).

    >>> links = foreign_key_links([Table("album", (Column("artist_id", references="artist.id"),)), Table("artist")])
    >>> links["album"], links["artist"]
    ({'artist'}, {'album'})
    """
    links: dict[str, set[str]] = {table_key(t.name): set() for t in tables}
    for table in tables:
        key = table_key(table.name)
        for column in table.columns:
            if column.references:
                target = table_key(column.references.rsplit(".", 1)[0])
                if target in links and target != key:
                    links[key].add(target)
                    links[target].add(key)
    return links


def lookup(names: Sequence[str], tables: Mapping[str, Table]) -> list[Table]:
    """The described tables among ``names``, in query order, each once."""
    seen, found = set(), []
    for name in names:
        key = table_key(name)
        if key in tables and key not in seen:
            seen.add(key)
            found.append(tables[key])
    return found
