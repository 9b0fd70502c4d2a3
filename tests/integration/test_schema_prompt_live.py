"""Column comments read from live PostgreSQL and MariaDB catalogues (``table_schema.introspect_table``),
so ``--prompt_schema full|noisy`` can show (and drop) them; the default prompt never shows them.

Each test creates its own table in the servers' scratch database ``test`` (not the fixtures' databases,
whose fingerprints other tests check)."""

from __future__ import annotations

import pytest

from adapters.db import open_executor
from tests.fakes import db_fixtures as fx
from transforms.publish import schema_prompt as sp
from transforms.sql.table_schema import introspect_table

TABLE = "sqlpairs_prompt_schema_comments"
PG_URL = f"postgresql://{fx.PG_USER}@{fx.PG_HOST}:{fx.PG_PORT}/test"
MY_URL = f"mysql://{fx.MY_USER}@{fx.MY_HOST}:{fx.MY_PORT}/test"


@pytest.fixture(scope="module")
def postgres_table() -> str:
    fx.require_postgres()
    with fx.pg_connect("test") as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, country TEXT, city TEXT)")
        conn.execute(f"COMMENT ON COLUMN {TABLE}.country IS 'billing country'")
        conn.execute(f"INSERT INTO {TABLE} VALUES (1, 'Brazil', 'Rio'), (2, 'Norway', 'Oslo')")
    return PG_URL


@pytest.fixture(scope="module")
def mariadb_table() -> str:
    if not fx.mariadb_is_up():
        pytest.skip("MariaDB is not running at 127.0.0.1:3306")
    conn = fx.my_connect("test")
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cursor.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, country TEXT COMMENT 'billing country', "
                           "city TEXT)")
        conn.commit()
    finally:
        conn.close()
    return MY_URL


@pytest.mark.parametrize("url_fixture", ["postgres_table", "mariadb_table"])
def test_introspection_reads_column_comments(url_fixture, request):
    executor = open_executor(request.getfixturevalue(url_fixture), timeout_s=5, max_rows=100)
    try:
        table = introspect_table(executor, TABLE)
    finally:
        executor.close()
    assert [(c.name, c.comment) for c in table.columns] == [("id", ""), ("country", "billing country"),
                                                            ("city", "")]


def test_full_prompt_shows_live_comments_and_referenced_does_not(postgres_table):
    executor = open_executor(postgres_table, timeout_s=5, max_rows=sp.LOOKUP_MAX_ROWS)
    try:
        table = introspect_table(executor, TABLE)

        def text(mode: str) -> str:
            lookup = sp.PromptSchema(sp.PromptSchemaSettings(mode=mode), {}, lambda url, name: introspect_table(
                executor, name), lambda url: executor)
            return lookup.text("p", "Customers in Brazil?", [table], postgres_table, 0)

        assert "  country text, -- billing country\n" in text(sp.FULL)
        assert "--" not in text(sp.REFERENCED)
        noisy = text(sp.NOISY)
        assert "example values: 'Brazil'" in noisy and "'Norway'" not in noisy
    finally:
        executor.close()
