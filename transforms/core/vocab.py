"""Shared vocabularies: defined once, used by the options, the stages and the pages."""

#: Spider's hardness levels (test-suite-sql-eval's ``eval_hardness``), easiest first.
DIFFICULTIES = ("easy", "medium", "hard", "extra")

#: OmniSQL's question styles, with the instruction each adds to the prompt.
STYLES: dict[str, str] = {
    "formal": "formal, precise English, as in a written report request",
    "colloquial": "casual everyday language, as one colleague asks another",
    "imperative": "a command (\"Show ...\", \"List ...\", \"Find ...\") rather than a question",
    "interrogative": "a direct question (\"Which ...?\", \"How many ...?\", \"What ...?\")",
    "descriptive": "a description of the information wanted, with its conditions spelled out",
    "concise": "as few words as possible while keeping every condition",
    "vague": "loose wording that leaves obvious details implicit, while still asking for the same result",
    "metaphorical": "a figurative or metaphorical turn of phrase, while still asking for the same result",
    "conversational": "a friendly conversational request (\"Could you tell me ...?\")",
}

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


def split_patterns(value: "str | None") -> list[str]:
    """How every list of paths or patterns is written in an option (inputs, schemas, DDL files).

    >>> split_patterns("a/*.sql, b.jsonl"), split_patterns(None)
    (['a/*.sql', 'b.jsonl'], [])
    """
    return [p.strip() for p in (value or "").split(",") if p.strip()]
