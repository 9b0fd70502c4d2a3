"""Read the live ``pg_stat_statements`` view (``--sql_logs pg_stat_statements`` with ``--database``).

Why one streaming read on a worker, not ``beam.Create`` of rows fetched at pipeline
construction (which would put every row in the job graph) and not paged queries:

* the view is a snapshot of shared memory, bounded by ``pg_stat_statements.max``
  (5,000 statements by default; tens of thousands at most), and every query on it
  re-reads the query-text file; one read is both the cheapest and the only
  consistent one (pages by ``queryid`` would see calls change between pages);
* a server-side cursor (``DECLARE … CURSOR``, fetched 2,000 rows at a time) means the
  worker never holds more than one batch, whatever the size;
* a ``Reshuffle`` right after spreads the records over all workers, so the one
  reader is never what the rest of the job waits on.

The read runs in a read-only transaction; the password comes from the environment
variable named by ``--database_password_env`` on the worker. Which rows: with one
database URL, the statements of that database; with ``db_id=URL`` pairs, the
statements of those databases (``db_id`` = the database name); with a
``{db_id}`` template, every database in the cluster. Rows come ordered by database,
user and ``queryid``, so the input is the same for the same view. Statements sqlpairs
itself ran (this reader's, marked ``/* sqlpairs */``, and the PostgreSQL executor's
``DECLARE sqlpairs_cursor`` / ``FETCH``) are left out: they are the tool's traffic, not
the users'.
"""

from __future__ import annotations

import os
from typing import Iterator, Optional, Sequence

import apache_beam as beam

from adapters.db import display_url, redact
from transforms.core.record import DeadLetter, new_record
from transforms.kit.stage import DEAD, count, reject
from transforms.formats import ReadReject
from transforms.formats.pg_stat_statements import frequency_of, stat_row_to_pair

#: The ``--sql_logs`` value that means "read the view of --database".
LIVE_VIEW = "pg_stat_statements"
#: Rows per FETCH from the server-side cursor.
BATCH = 2000

#: Marks the statements this module runs, so the view's rows for them can be left out.
MARKER = "/* sqlpairs */"
#: Statements of sqlpairs itself (this reader, and the PostgreSQL executor's cursor), not the users'.
_OWN_TRAFFIC = (
    "position('/* sqlpairs */' in s.query) = 0 AND s.query !~ '^DECLARE sqlpairs_cursor ' "
    "AND s.query !~ '^FETCH FORWARD [0-9]+ FROM sqlpairs_cursor$'"
)

_QUERY = MARKER + """
SELECT s.query, s.calls, s.{mean} AS mean_exec_time, s.rows, s.queryid, d.datname, r.rolname,
       s.{total} AS total_exec_time
FROM {schema}.pg_stat_statements s
JOIN pg_catalog.pg_database d ON d.oid = s.dbid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE {where} AND {own}
ORDER BY d.datname, s.userid, s.queryid
"""


def view_query(server_version: int, schema: str, databases: Optional[Sequence[str]]) -> tuple[str, tuple]:
    """The SELECT over the view for this server version, and its parameters.

    ``databases``: None for the connected database only, () for every database, or names.

    >>> view_query(150000, "public", None)[0].split("WHERE")[1].split()[:3]
    ['d.datname', '=', 'current_database()']
    """
    mean, total = ("mean_exec_time", "total_exec_time") if server_version >= 130000 else ("mean_time", "total_time")
    if databases is None:
        where, params = "d.datname = current_database()", ()
    elif not databases:
        where, params = "true", ()
    else:
        where, params = "d.datname = ANY(%s)", (list(databases),)
    return _QUERY.format(mean=mean, total=total, schema=schema, where=where, own=_OWN_TRAFFIC), params


def connect(url: str, password_env: Optional[str]):
    """A psycopg connection (read-only session) to the database of ``url``."""
    import psycopg

    from adapters.db.postgres import libpq_url

    kwargs = {"autocommit": False, "connect_timeout": 10, "application_name": "sqlpairs-read"}
    if password_env:
        kwargs["password"] = os.environ.get(password_env)
    conn = psycopg.connect(libpq_url(url), **kwargs)
    conn.read_only = True
    return conn


def view_schema(conn) -> Optional[str]:
    """The schema the extension was created in, or None when the view is not there."""
    row = conn.execute(
        MARKER + " SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'"
    ).fetchone()
    return row[0] if row else None


def check_view(url: str, password_env: Optional[str]) -> Optional[str]:
    """None when the view can be read through ``url``, else what is wrong (for a one-line user error)."""
    try:
        with connect(url, password_env) as conn:
            schema = view_schema(conn)
            if schema is None:
                return (f"pg_stat_statements is not installed in {display_url(url)}: run CREATE EXTENSION "
                        "pg_stat_statements there (the server needs shared_preload_libraries = 'pg_stat_statements')")
            conn.execute(f'{MARKER} SELECT 1 FROM "{schema}".pg_stat_statements LIMIT 1').fetchall()
    except Exception as error:  # noqa: BLE001 - every failure is the user's to fix, as one line
        return redact(f"cannot read pg_stat_statements through {display_url(url)}: {error}".splitlines()[0])
    return None


class _ReadViewFn(beam.DoFn):
    """Yields records and dead letters on one output, so both travel through the Reshuffle."""

    def __init__(self, password_env: Optional[str], databases: Optional[Sequence[str]], db_id_field: Optional[str]):
        self.password_env = password_env
        self.databases = None if databases is None else tuple(databases)
        self.db_id_field = db_id_field

    def process(self, url: str) -> Iterator:
        with connect(url, self.password_env) as conn:
            schema = view_schema(conn)
            if schema is None:
                yield reject("read", "no_pg_stat_statements", f"the extension is not installed in {display_url(url)}",
                             origin=f"{display_url(url)}#pg_stat_statements").value
                return
            sql, params = view_query(conn.info.server_version, f'"{schema}"', self.databases)
            with conn.cursor(name="sqlpairs_stat_statements") as cursor:
                cursor.itersize = BATCH
                cursor.execute(sql, params or None)
                names = [column.name for column in cursor.description]
                for row in cursor:
                    values = dict(zip(names, row))
                    origin = f"pg_stat_statements@{values.get('datname')}#{values.get('queryid')}"
                    item = stat_row_to_pair(values, origin, self.db_id_field)
                    if isinstance(item, ReadReject):
                        yield reject("read", item.reason, item.detail, origin=item.origin).value
                        continue
                    count("read.out")
                    yield new_record(item.sql, None, db_id=item.db_id, source=item.source, origin=item.origin,
                                     frequency=frequency_of(item.extra), extra=item.extra)
            conn.rollback()


def _route(item) -> Iterator:
    if isinstance(item, DeadLetter):
        yield beam.pvalue.TaggedOutput(DEAD, item)
    else:
        yield item


class ReadPgStatStatements(beam.PTransform):
    """Records from the live view of the database at ``url`` (see the module docstring);
    outputs ``records`` and ``dead`` like ``transforms.ingest.read.ReadInputs``."""

    def __init__(self, url: str, *, password_env: Optional[str] = None,
                 databases: Optional[Sequence[str]] = None, db_id_field: Optional[str] = None):
        super().__init__()
        self.url, self.password_env, self.databases, self.db_id_field = url, password_env, databases, db_id_field

    def expand(self, pbegin):
        return (
            pbegin
            | "ViewUrl" >> beam.Create([self.url])
            | "ReadView" >> beam.ParDo(_ReadViewFn(self.password_env, self.databases, self.db_id_field))
            | "Spread" >> beam.Reshuffle()
            | "Route" >> beam.FlatMap(_route).with_outputs(DEAD, main="records")
        )
