"""Test databases on the local PostgreSQL and MariaDB servers: load once, reuse across runs.

Every loader is idempotent: a database is (re)loaded only when its marker — a
``COMMENT ON DATABASE`` holding a hash of the source file — is missing or stale,
so a second test run skips loading entirely. Loading holds a PostgreSQL advisory
lock, so two test processes never load the same database at once. Our databases
are prefixed ``sqlpairs_`` so they never clobber anyone else's; Chinook's own
script creates ``chinook``, which we reuse when it already holds the full data.

Servers: PostgreSQL at 127.0.0.1:5432 as ``postgres`` (trust auth), MariaDB at
127.0.0.1:3306 as ``root`` (empty password). A test that needs a server that is
down is skipped on a developer's machine and fails in CI (``CI=true``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import time
from typing import Iterator, Optional

import pytest

from tests.conftest import IN_CI, SHARED_DATA

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
PG_ADMIN_DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
#: Our databases are named ``sqlpairs_<name>``; this template maps a record's db_id onto them.
PG_PREFIX = "sqlpairs_"
DEFOG_TEMPLATE = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_PREFIX}{{db_id}}"
CHINOOK_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/chinook"
HOSTILE_DB = f"{PG_PREFIX}hostile"
HOSTILE_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{HOSTILE_DB}"

DEFOG_DIR = SHARED_DATA / "defog"
#: The 11 Defog sql-eval databases: 7 pg_dump files and 4 DDL+INSERT scripts.
DEFOG_DUMPS = ("academic", "advising", "atis", "geography", "restaurants", "scholar", "yelp")
DEFOG_SCRIPTS = ("broker", "car_dealership", "derm_treatment", "ewallet")
DEFOG_DATABASES = DEFOG_DUMPS + DEFOG_SCRIPTS
CHINOOK_TRACKS = 3503

MY_HOST, MY_PORT, MY_USER = "127.0.0.1", 3306, "root"
MY_DB = f"{PG_PREFIX}test"
MARIADB_URL = f"mysql://{MY_USER}@{MY_HOST}:{MY_PORT}/{MY_DB}"
MARIADBD = "/usr/sbin/mariadbd"

_LOAD_LOCK_KEY = 0x5351_4C50  # "SQLP": one advisory lock for every fixture load


def _unavailable(message: str) -> None:
    """Skip on a developer's machine, fail in CI where the servers must be up."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# --- PostgreSQL -------------------------------------------------------------------------

def pg_connect(dbname: str = "postgres", autocommit: bool = True):
    """A plain admin connection (superuser ``postgres``), bypassing our executor."""
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname,
                           autocommit=autocommit, connect_timeout=3)


def postgres_is_up() -> bool:
    try:
        with pg_connect() as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def require_postgres() -> None:
    if not postgres_is_up():
        _unavailable(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER}")
    if shutil.which("psql") is None:
        _unavailable("psql is not installed (needed to load the pg_dump fixtures)")


@contextlib.contextmanager
def _load_lock() -> Iterator[None]:
    with pg_connect() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOAD_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOAD_LOCK_KEY,))


def _file_marker(*paths: pathlib.Path) -> str:
    digest = hashlib.sha256(b"sqlpairs-fixture-v1")
    for path in paths:
        digest.update(path.read_bytes())
    return "sqlpairs fixture " + digest.hexdigest()[:16]


def _database_comment(conn, name: str) -> Optional[str]:
    row = conn.execute(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s", (name,)
    ).fetchone()
    return None if row is None else row[0]


def _recreate(conn, name: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _mark(conn, name: str, marker: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(marker)))


def psql_file(dbname: str, path: pathlib.Path) -> None:
    """Run an SQL file with psql, stopping at the first error."""
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER,
         "-d", dbname, "-f", str(path)],
        capture_output=True, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql -f {path} into {dbname} failed: {result.stderr.strip()[-2000:]}")


def _defog_file(name: str) -> pathlib.Path:
    return DEFOG_DIR / "pypi_dumps" / f"{name}.sql" if name in DEFOG_DUMPS else DEFOG_DIR / f"{name}.sql"


@functools.cache
def load_defog_databases() -> str:
    """Load the 11 Defog databases as ``sqlpairs_<name>``; returns the ``{db_id}`` URL template."""
    require_postgres()
    if not DEFOG_DIR.exists():
        _unavailable(f"{DEFOG_DIR} is absent: ../shared/data comes with the developers' checkout")
    with _load_lock(), pg_connect() as conn:
        for name in DEFOG_DATABASES:
            database, source = PG_PREFIX + name, _defog_file(name)
            marker = _file_marker(source)
            if _database_comment(conn, database) == marker:
                continue
            _recreate(conn, database)
            psql_file(database, source)
            _mark(conn, database, marker)
    return DEFOG_TEMPLATE


@functools.cache
def load_chinook() -> str:
    """Load Chinook into database ``chinook`` (its script creates it) unless it is already complete."""
    require_postgres()
    source = SHARED_DATA / "chinook" / "Chinook_PostgreSql.sql"
    if not source.exists():
        _unavailable(f"{source} is absent: ../shared/data comes with the developers' checkout")
    with _load_lock():
        if _chinook_tracks() != CHINOOK_TRACKS:
            with pg_connect() as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'chinook'")
            psql_file("postgres", source)
    return CHINOOK_URL


def _chinook_tracks() -> int:
    try:
        with pg_connect("chinook") as conn:
            return conn.execute("SELECT count(*) FROM track").fetchone()[0]
    except Exception:  # noqa: BLE001 - absent database or table: not loaded
        return -1


#: The hostile test database: small tables, a large one to cross join, a sequence, a view.
_HOSTILE_SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL);
INSERT INTO accounts SELECT i, 'owner' || i, i * 10.5 FROM generate_series(1, 100) i;
CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, 20000) i;
CREATE SEQUENCE ticket_seq;
CREATE VIEW rich AS SELECT * FROM accounts WHERE balance > 500;
-- Functions that write: a plain SELECT calls them, and the guard cannot know what they do.
CREATE FUNCTION sqlpairs_write() RETURNS int LANGUAGE sql VOLATILE
    AS 'INSERT INTO accounts VALUES (999, ''mallory'', 1) RETURNING 1';
CREATE FUNCTION sqlpairs_ddl() RETURNS int LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN EXECUTE 'DROP TABLE big'; RETURN 1; END $$;
CREATE ROLE sqlpairs_nobody NOLOGIN;
"""


@functools.cache
def create_hostile_database() -> str:
    """``sqlpairs_hostile``: what a hostile corpus must leave exactly as it found it."""
    require_postgres()
    marker = "sqlpairs fixture " + hashlib.sha256(_HOSTILE_SCHEMA.encode()).hexdigest()[:16]
    with _load_lock(), pg_connect() as conn:
        if _database_comment(conn, HOSTILE_DB) != marker:
            _recreate(conn, HOSTILE_DB)
            with pg_connect(HOSTILE_DB) as target:
                if target.execute("SELECT 1 FROM pg_roles WHERE rolname = 'sqlpairs_nobody'").fetchone():
                    schema = _HOSTILE_SCHEMA.replace("CREATE ROLE sqlpairs_nobody NOLOGIN;", "")
                else:
                    schema = _HOSTILE_SCHEMA
                target.execute(schema)
            _mark(conn, HOSTILE_DB, marker)
    return HOSTILE_URL


def database_fingerprint(dbname: str) -> dict[str, str]:
    """A checksum of every user table, every sequence's state, and the catalog objects.

    Anything a query could have written — rows, sequence values, new tables,
    functions, roles, large objects, settings saved with ALTER — changes this.
    """
    out: dict[str, str] = {}
    with pg_connect(dbname) as conn:
        tables = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            out[f"table {table}"] = conn.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') "
                f"FROM {table} t"
            ).fetchone()[0]
        for (seq,) in conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences ORDER BY 1"
        ).fetchall():
            out[f"sequence {seq}"] = str(conn.execute(f"SELECT last_value, is_called FROM {seq}").fetchone())
        catalog = {
            "relations": "SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class "
                         "WHERE relpersistence <> 't' AND relnamespace NOT IN ('pg_catalog'::regnamespace, "
                         "'information_schema'::regnamespace, 'pg_toast'::regnamespace)",
            "functions": "SELECT count(*) FROM pg_proc",
            "large_objects": "SELECT count(*) FROM pg_largeobject_metadata",
            "db_settings": "SELECT count(*) FROM pg_db_role_setting",
            "extensions": "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
        }
        for name, query in catalog.items():
            out[name] = str(conn.execute(query).fetchone()[0])
    return out


def server_fingerprint() -> dict[str, str]:
    """What a query could change outside one database: ALTER SYSTEM's file, our roles, role settings, databases.

    Only roles and databases our tests name are compared: other projects' tests may share the server.
    """
    queries = {
        "auto.conf": "SELECT pg_read_file('postgresql.auto.conf')",
        "roles": "SELECT string_agg(rolname || rolsuper::text || rolcanlogin::text, ',' ORDER BY rolname) "
                 "FROM pg_roles WHERE rolname IN ('postgres', 'mallory', 'sqlpairs_nobody')",
        "role_settings": "SELECT count(*) FROM pg_db_role_setting",
        "databases": "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database "
                     "WHERE datname LIKE 'sqlpairs%'",
    }
    with pg_connect() as conn:
        return {name: str(conn.execute(query).fetchone()[0]) for name, query in queries.items()}


def _pg_cluster_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1]


def restart_postgres() -> None:
    """Restart the local cluster (fast shutdown: open sessions are cut)."""
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster_version(), "main", "restart"],
        check=True, capture_output=True, timeout=120,
    )


def ensure_postgres_running(wait_s: float = 60.0) -> None:
    """Start the cluster if it is down, and wait until it accepts connections."""
    deadline = time.monotonic() + wait_s
    if not postgres_is_up():
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster_version(), "main", "start"],
                       capture_output=True, timeout=120)
    while not postgres_is_up():
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not come back up")
        time.sleep(0.2)


# --- MariaDB ------------------------------------------------------------------------------

def my_connect(database: Optional[str] = None):
    import pymysql

    return pymysql.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, password="", database=database,
                           autocommit=True, connect_timeout=3)


def mariadb_is_up() -> bool:
    try:
        my_connect().close()
        return True
    except Exception:  # noqa: BLE001
        return False


def require_mariadb() -> None:
    if not mariadb_is_up():
        _unavailable(f"MariaDB/MySQL is not reachable at {MY_HOST}:{MY_PORT} as {MY_USER}")


_MARIADB_SCHEMA = (
    "CREATE TABLE artist (artist_id INT PRIMARY KEY, name VARCHAR(120))",
    "INSERT INTO artist VALUES (1, 'AC/DC'), (2, 'Accept'), (3, 'Aerosmith'), (4, 'Alanis Morissette'), "
    "(5, NULL)",
    "CREATE TABLE track (track_id INT PRIMARY KEY, artist_id INT NOT NULL, title VARCHAR(200) NOT NULL, "
    "price DECIMAL(6,2) NOT NULL, released DATE, length TIME)",
    "INSERT INTO track SELECT seq, 1 + seq % 4, CONCAT('song ', seq), 0.99 + (seq % 3), "
    "DATE_ADD('2000-01-01', INTERVAL seq DAY), SEC_TO_TIME(120 + seq % 300) FROM seq_1_to_3000",
    # A function that writes: a plain SELECT calls it, and the guard cannot know what it does.
    "CREATE FUNCTION sqlpairs_write() RETURNS INT MODIFIES SQL DATA "
    "BEGIN INSERT INTO artist VALUES (99, 'mallory'); RETURN 1; END",
)


@functools.cache
def create_mariadb_database() -> str:
    """``sqlpairs_test`` on MariaDB: two small tables; reloaded only when its marker is stale.

    The rows come from MariaDB's SEQUENCE engine (``seq_1_to_3000``), so this needs MariaDB, not MySQL.
    """
    require_mariadb()
    marker = "sqlpairs fixture " + hashlib.sha256("\n".join(_MARIADB_SCHEMA).encode()).hexdigest()[:16]
    conn = my_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK('sqlpairs_fixture', 60)")
            try:
                cur.execute("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (MY_DB,))
                row = cur.fetchone()
                if row is None or row[0] != marker:
                    cur.execute(f"DROP DATABASE IF EXISTS `{MY_DB}`")
                    cur.execute(f"CREATE DATABASE `{MY_DB}` COMMENT '{marker}'")
                    cur.execute(f"USE `{MY_DB}`")
                    for statement in _MARIADB_SCHEMA:
                        cur.execute(statement)
            finally:
                cur.execute("SELECT RELEASE_LOCK('sqlpairs_fixture')")
    finally:
        conn.close()
    return MARIADB_URL


def mariadb_fingerprint() -> dict[str, str]:
    conn = my_connect(MY_DB)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = sorted(r[0] for r in cur.fetchall())
            out = {"tables": ",".join(tables)}
            for table in tables:
                cur.execute(f"CHECKSUM TABLE `{table}` EXTENDED")
                out[table] = str(cur.fetchone()[1])
            return out
    finally:
        conn.close()


def stop_mariadb(wait_s: float = 30.0) -> None:
    subprocess.run(["start-stop-daemon", "--stop", "--oknodo", "--retry", "30", "--exec", MARIADBD],
                   capture_output=True, timeout=60)
    deadline = time.monotonic() + wait_s
    while mariadb_is_up() and time.monotonic() < deadline:
        time.sleep(0.2)


def ensure_mariadb_running(wait_s: float = 60.0) -> None:
    """Start mariadbd if it is down (as .ci/run does) and wait until it answers."""
    if not mariadb_is_up():
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", MARIADBD],
                       capture_output=True, timeout=60)
    deadline = time.monotonic() + wait_s
    while not mariadb_is_up():
        if time.monotonic() > deadline:
            raise RuntimeError("MariaDB did not come back up")
        time.sleep(0.2)
