"""Stage family ingest: inputs (logs, chats, seed pairs, pg_stat_statements) -> records and dead letters."""
