"""The whole database's schema for generation prompts: every table, its columns, keys and sample rows.

``transforms.sql.table_schema`` describes the tables one query reads. Synthesis, evolution
and the round-trip check need more: the tables a *new* query could read. This module
lists them from the live database (through the ``Executor`` contract: read-only,
time-limited, capped), describes each with ``table_schema.introspect_table`` (columns,
types, foreign keys, three sample rows — the value hints a model needs to write filters
that match real data) and merges what ``--schema`` DDL says.

``Workbench`` is what a generation DoFn builds in ``setup``: the executors of the
``--database`` map (shared per process, like ``transforms.validate.execute``), the DDL, and one
catalogue per database URL, computed on first use and kept for the worker's lifetime.

A catalogue too large for one prompt is cut to the tables that matter: those a query
reads plus their foreign-key neighbours (``focus``), so a 300-table warehouse does not
become a 300-table prompt.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

from apache_beam.utils.shared import Shared

from transforms.sql import table_schema
from transforms.kit.ddl_files import load_ddl
from transforms.sql.table_schema import Table

_LOGGER = logging.getLogger(__name__)
#: Tables listed from one database at most (the rest are ignored, with a warning).
MAX_TABLES = 500
#: Tables rendered into one prompt at most; bigger schemas are focused (see ``focus``).
MAX_PROMPT_TABLES = 12

_LIST_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    "duckdb": ("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
               "AND table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"),
    "postgres": ("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                 "AND table_schema NOT IN ('information_schema', 'pg_catalog') AND table_schema NOT LIKE 'pg_%' "
                 "ORDER BY 1, 2"),
    "mysql": ("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
              "AND table_schema = DATABASE() ORDER BY 1, 2"),
}
_DEFAULT_SCHEMAS = {"main", "public"}


class Catalog(NamedTuple):
    """The tables of one database, in a stable order (as the database lists them, else as the DDL does)."""

    dialect: str
    tables: tuple[Table, ...] = ()


def list_tables(executor: Any) -> list[str]:
    """Names of the base tables of the executor's database (schema-qualified outside the default schema).

    MySQL lists the connected database only; PostgreSQL and DuckDB every user schema.
    """
    dialect = getattr(executor, "dialect", "postgres")
    _, rows = executor.fetch_rows(_LIST_TABLES.get(dialect, _LIST_TABLES["postgres"]))
    names = []
    for row in rows:
        if len(row) == 1:
            names.append(str(row[0]))
        else:
            schema, name = str(row[0]), str(row[1])
            names.append(name if schema in _DEFAULT_SCHEMAS or dialect == "mysql" else f"{schema}.{name}")
    if len(names) > MAX_TABLES:
        _LOGGER.warning("the database has %d tables; only the first %d are described", len(names), MAX_TABLES)
    return names[:MAX_TABLES]


def load_catalog(executor: Optional[Any], ddl: Mapping[str, Table], dialect: str) -> Catalog:
    """The database's tables (live columns and samples, DDL keys where known), else the DDL's tables."""
    tables: list[Table] = []
    seen: set[str] = set()
    if executor is not None:
        try:
            names = list_tables(executor)
        except Exception as error:  # noqa: BLE001 - fall back to the DDL
            _LOGGER.warning("cannot list the tables of %r: %s", executor, type(error).__name__)
            names = []
        for name in names:
            live = table_schema.introspect_table(executor, name)
            table = table_schema.merge(ddl.get(table_schema.table_key(name)), live)
            if table is not None and table_schema.table_key(name) not in seen:
                seen.add(table_schema.table_key(name))
                tables.append(table)
    for key, table in ddl.items():
        if key not in seen:
            seen.add(key)
            tables.append(table)
    return Catalog(dialect, tuple(tables))


def schema_names(catalog: Catalog) -> frozenset[str]:
    """Every table and column name of the catalogue, lowercased (for the invented-name guardrail).

    >>> sorted(schema_names(Catalog("sqlite", (Table("Album", (table_schema.Column("AlbumId"),)),))))
    ['album', 'albumid']
    """
    names = set()
    for table in catalog.tables:
        names.add(table_schema.table_key(table.name))
        names.update(column.name.lower() for column in table.columns)
    return frozenset(names)


def focus(catalog: Catalog, names: Sequence[str] = (), limit: int = MAX_PROMPT_TABLES,
          seed: int = 0) -> tuple[Table, ...]:
    """At most ``limit`` tables: ``names`` (a query's tables) first, then their foreign-key neighbours.

    With no ``names``, the walk starts at table number ``seed`` (mod the table count),
    so successive synthesis requests see different corners of a large schema. A
    catalogue within the limit is returned whole, in its own order.

    >>> c = Catalog("sqlite", tuple(Table(n) for n in ("a", "b", "c")))
    >>> [t.name for t in focus(c, ["c"], limit=2)], [t.name for t in focus(c, limit=5)]
    (['c', 'a'], ['a', 'b', 'c'])
    """
    if len(catalog.tables) <= limit:
        return catalog.tables
    by_key = {table_schema.table_key(t.name): t for t in catalog.tables}
    order = [table_schema.table_key(t.name) for t in catalog.tables]
    start = [table_schema.table_key(n) for n in names if table_schema.table_key(n) in by_key]
    if not start:
        start = [order[seed % len(order)]]
    links = table_schema.foreign_key_links(catalog.tables)
    chosen: list[str] = []
    queue = list(dict.fromkeys(start))
    while queue and len(chosen) < limit:
        key = queue.pop(0)
        if key in chosen:
            continue
        chosen.append(key)
        queue.extend(sorted(links.get(key, ()) - set(chosen), key=order.index))
    for key in order:  # a disconnected schema: fill up in catalogue order
        if len(chosen) >= limit:
            break
        if key not in chosen:
            chosen.append(key)
    return tuple(by_key[key] for key in chosen)


def render(tables: Iterable[Table]) -> str:
    """The prompt's schema section."""
    return table_schema.render_tables(list(tables))


class Workbench:
    """A generation DoFn's view of the databases: executors, DDL and catalogues, built lazily.

    ``database`` is the ``--database`` spec; ``settings`` the executor settings
    (``timeout_s``, ``max_rows``, ``password_env``, and where given ``max_result_bytes``
    and ``max_connections``: the executors' defaults otherwise). Executors are shared by
    every DoFn instance of the process through ``apache_beam.utils.shared``, and so is
    their connection budget (``ExecutorSet``). A ``db_id`` that is not a plain name
    cannot select a ``{db_id}`` URL: ``executor`` and ``catalog`` raise ``InvalidDbId``,
    a ``LookupError`` like an id no ``--database`` entry serves.
    """

    def __init__(self, database: str, settings: Mapping[str, Any], schema_patterns: Sequence[str] = (),
                 schema_dialect: Optional[str] = None):
        self.database = database
        self.settings = dict(settings)
        self.schema_patterns = tuple(schema_patterns)
        self.schema_dialect = schema_dialect

    def setup(self) -> "Workbench":
        from adapters.db import DatabaseMap
        from transforms.kit.executors import ExecutorSet

        settings = dict(self.settings)
        tag = "workbench:" + hashlib.sha256(repr((self.database, sorted(settings.items()))).encode()).hexdigest()
        self._executors = _SHARED.acquire(lambda: ExecutorSet(settings), tag=tag)
        self._databases = DatabaseMap.parse(self.database)
        self._ddl = load_ddl(self.schema_patterns, self.schema_dialect)
        return self

    def url_for(self, db_id: Optional[str]) -> Optional[str]:
        return self._databases.url_for(db_id)

    def executor(self, db_id: Optional[str]) -> Any:
        """The executor serving ``db_id``; ``LookupError`` when no ``--database`` entry does."""
        url = self.url_for(db_id)
        if url is None:
            raise LookupError(f"no --database entry serves db_id {db_id!r}")
        return self._executors.get(url)

    def catalog(self, db_id: Optional[str]) -> Catalog:
        """The catalogue of ``db_id``'s database (computed once per URL and worker process)."""
        url = self.url_for(db_id)
        if url is None:
            raise LookupError(f"no --database entry serves db_id {db_id!r}")
        key = (url, self.schema_patterns, self.schema_dialect)
        with _CATALOG_LOCK:
            found = _CATALOGS.get(key)
        if found is None:
            executor = self._executors.get(url)
            found = load_catalog(executor, self._ddl, getattr(executor, "dialect", "postgres"))
            with _CATALOG_LOCK:
                found = _CATALOGS.setdefault(key, found)
        return found

    def pair_catalog(self, record: Any, stage: str, why_question: str) -> tuple[Optional[Catalog], Any]:
        """``(catalog, None)`` for a pair a model stage can prompt about, else ``(None, dead letter)``:
        ``no_question`` (``why_question`` says why it needs one), ``no_database`` (no ``--database``
        entry serves its db_id) or ``database_unavailable`` (the error, password redacted).
        The judge, the evidence writer and the round-trip check start the same way."""
        from adapters.db import DatabaseUnavailable, redact
        from transforms.kit.stage import reject

        if not record.question:
            return None, reject(stage, "no_question", why_question, record)
        try:
            return self.catalog(record.db_id), None
        except LookupError as error:
            return None, reject(stage, "no_database", str(error), record)
        except DatabaseUnavailable as error:
            return None, reject(stage, "database_unavailable", redact(str(error)), record)


_SHARED = Shared()
#: Catalogues of this worker process, by (URL, DDL patterns, DDL dialect): every generation
#: DoFn of the process reads the same one, and a 500-table database is described once.
_CATALOGS: dict[tuple, Catalog] = {}
_CATALOG_LOCK = threading.Lock()


def targets(database: str) -> list[tuple[str, str]]:
    """``(db_id or "", url)`` of every database a ``--database`` spec names explicitly, sorted.

    A ``{db_id}`` template names none (its ids come from the records).

    >>> targets("a=sqlite:///a.db,b=sqlite:///b.db"), targets("sqlite:///x.db"), targets("sqlite:///{db_id}.db")
    ([('a', 'sqlite:///a.db'), ('b', 'sqlite:///b.db')], [('', 'sqlite:///x.db')], [])
    """
    from adapters.db import DatabaseMap

    databases = DatabaseMap.parse(database)
    if databases.default:
        return [("", databases.default)]
    return sorted(databases.by_id)


def db_key(db_id: Optional[str]) -> str:
    """The key personas and teachings are filed under: the db_id, or "" for the single database."""
    return db_id or ""
