"""Shared vocabularies: defined once, used by the options, the stages and the pages."""

#: Spider's hardness levels (test-suite-sql-eval's ``eval_hardness``), easiest first.
DIFFICULTIES = ("easy", "medium", "hard", "extra")

#: Display names of sqlglot dialects, as prompts and exports say them ("PostgreSQL", not "postgres").
DIALECT_NAMES = {
    "postgres": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite", "duckdb": "DuckDB", "tsql": "SQL Server",
    "bigquery": "BigQuery", "snowflake": "Snowflake", "oracle": "Oracle", "redshift": "Redshift",
    "trino": "Trino", "spark": "Spark SQL", "clickhouse": "ClickHouse",
}


def dialect_name(dialect: "str | None") -> str:
    """How a prompt names a dialect.

    >>> dialect_name("postgres"), dialect_name("teradata"), dialect_name(None)
    ('PostgreSQL', 'teradata', 'SQL')
    """
    return DIALECT_NAMES.get(dialect or "", dialect or "SQL")
