"""Read-only guard: decide from a parsed sqlglot tree whether a SQL text may be executed.

The guard is the first line of defence before any query reaches a database; the database
side (read-only transaction, statement timeout, unprivileged role) is the second. It is a
pure function of the trees that ``sqlglot.parse(sql, read=dialect)`` returned for ONE input
text, walks each tree once, never re-parses and never generates SQL, so it is cheap enough to
run on every record.

A text is accepted only when it holds exactly one read-only query: a SELECT (``TABLE t`` and
DuckDB's ``FROM t`` parse as SELECT too), a WITH ... SELECT, a set operation of those, or a
parenthesized form of any of them. Everything else gets a short, stable, low-cardinality
reason string fit for a metrics counter name:

==================================  ===========================================================
reason                              cause
==================================  ===========================================================
``empty``                           no statement (blank text, only comments or semicolons)
``multiple_statements``             more than one statement (``SELECT 1; DROP TABLE t``)
``transaction_control``             BEGIN / START TRANSACTION / COMMIT / ROLLBACK / SAVEPOINT
``command:<KEYWORD>``               sqlglot's opaque ``exp.Command`` (CALL, DO, SET ROLE, RESET,
                                    EXPLAIN, VACUUM, LOAD, LOCK, PREPARE, ...)
``not_a_query:<Class>``             any other statement, named by its sqlglot class (Insert,
                                    Update, Delete, Merge, Copy, Create, Drop, Set, Grant,
                                    Pragma, Attach, Install, Execute, Values, ...)
``data_modifying_cte``              a CTE whose body is not a query (``WITH d AS (DELETE ...)``)
``nested_statement:<Class>``        any other statement nested inside the query
``select_into``                     ``SELECT ... INTO`` (creates a table / assigns variables)
``locking_clause``                  ``FOR UPDATE`` / ``FOR SHARE`` / ``LOCK IN SHARE MODE``
``side_effect_function:<name>``     a call to a function in :data:`DENYLISTED_FUNCTIONS` (or
                                    with a prefix in :data:`DENYLISTED_FUNCTION_PREFIXES`)
``file_table_reference``            a quoted table name that is a path or file (DuckDB reads
                                    ``FROM 'x.csv'`` / ``FROM "s3://b/x.parquet"`` from disk)
``executable_comment``              MySQL/MariaDB ``/*! ... */`` comments, which MySQL executes
``unparseable:<ErrorClass>``        only from :func:`is_read_only_query`: the text did not parse
==================================  ===========================================================

The ``<Class>`` parts are sqlglot class names, so they may change when sqlglot changes how it
parses a statement; the fixed reasons do not.

Example:
    >>> import sqlglot
    >>> refusal_reason(sqlglot.parse("SELECT a FROM t", read="postgres")) is None
    True
    >>> refusal_reason(sqlglot.parse("SELECT 1; DROP TABLE t", read="postgres"))
    'multiple_statements'
    >>> is_read_only_query("SELECT pg_catalog.PG_SLEEP(60)", "postgres")
    (False, 'side_effect_function:pg_sleep')
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError

__all__ = [
    "DENYLISTED_FUNCTIONS",
    "DENYLISTED_FUNCTION_PREFIXES",
    "DENYLISTED_PACKAGES",
    "is_read_only_query",
    "refusal_reason",
]

#: Functions (lower-case, unqualified) whose call is refused wherever it appears in the tree,
#: whatever its schema (``pg_catalog.f``, ``public.f``) and however it is cased or quoted.
#: They sleep, take locks, touch sequences or settings, read or write the server's file
#: system, signal backends, reach other servers, run SQL given as a string, or write pages,
#: WAL or statistics — which PostgreSQL lets even a ``READ ONLY`` transaction do, so the
#: database's own read-only session does not stop them. A user-defined function that calls
#: one of these is invisible here: only a role without the privilege stops that.
DENYLISTED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # PostgreSQL: delays
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        # PostgreSQL: server file system (adminpack's pg_file_* are covered by prefix)
        "pg_read_file",
        "pg_read_binary_file",
        "pg_stat_file",
        "pg_logdir_ls",
        # PostgreSQL: server administration and signalling
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_switch_xlog",
        "pg_create_restore_point",
        "pg_promote",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_export_snapshot",
        "pg_import_system_collations",
        "pg_notify",
        "pg_log_backend_memory_contexts",
        "pg_stat_statements_reset",
        "pg_drop_replication_slot",
        "pg_current_xact_id",
        # PostgreSQL: settings and sequences
        "set_config",
        "nextval",
        "setval",
        "currval",
        "lastval",
        "next_value_for",
        # PostgreSQL: physical writes that a READ ONLY transaction allows (index maintenance,
        # buffer cache, visibility map, heap surgery, planner statistics, WAL records)
        "brin_summarize_new_values",
        "brin_summarize_range",
        "brin_desummarize_range",
        "gin_clean_pending_list",
        "pg_prewarm",
        "autoprewarm_start_worker",
        "autoprewarm_dump_now",
        "pg_truncate_visibility_map",
        "heap_force_kill",
        "heap_force_freeze",
        "pg_clear_relation_stats",
        "pg_clear_attribute_stats",
        "pg_restore_relation_stats",
        "pg_restore_attribute_stats",
        "pg_log_standby_snapshot",
        "pg_sync_replication_slots",
        # PostgreSQL: large objects by their old names (the lo_* family is covered by prefix)
        "loread",
        "lowrite",
        # PostgreSQL: server configuration files
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_show_all_file_settings",
        # PostgreSQL: run SQL given as a string, or dump whole tables, schemas, the database
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",  # ts_stat('SELECT ...') runs its argument
        "ts_rewrite",  # ts_rewrite(query, 'SELECT ...') runs its second argument
        # MySQL / MariaDB
        "sleep",
        "benchmark",
        "load_file",
        "get_lock",
        "release_lock",
        "release_all_locks",
        "sys_exec",
        "sys_eval",
        "master_pos_wait",
        "source_pos_wait",
        "wait_for_executed_gtid_set",
        "wait_until_sql_thread_after_gtids",
        "master_gtid_wait",  # MariaDB: waits for replication
        "wsrep_sync_wait_upto_gtid",  # MariaDB Galera: waits for the cluster
        # SQLite (CLI and common extensions)
        "load_extension",
        "writefile",
        "readfile",
        "edit",
        "fsdir",
        "zipfile",
        "fts3_tokenizer",
        # DuckDB: file system, other databases, SQL in strings, environment
        "glob",
        "sniff_csv",
        "delta_scan",
        "sqlite_scan",
        "sqlite_attach",
        "postgres_scan",
        "postgres_scan_pushdown",
        "postgres_query",
        "postgres_execute",
        "postgres_attach",
        "mysql_query",
        "mysql_execute",
        "query",
        "query_table",
        "getenv",
        "st_read",
        "st_read_meta",
        "load_aws_credentials",
        "json_execute_serialized_sql",
        "duckdb_secrets",
        "which_secret",
        # SQL Server, Snowflake-style, BigQuery federated queries
        "openrowset",
        "opendatasource",
        "openquery",
        "external_query",
        # ClickHouse table functions that reach files, URLs or other servers
        "file",
        "url",
        "s3",
        "s3cluster",
        "remote",
        "remotesecure",
        "hdfs",
        "executable",
        "jdbc",
        "odbc",
    }
)

#: Lower-case name prefixes refused like :data:`DENYLISTED_FUNCTIONS` (families of functions).
DENYLISTED_FUNCTION_PREFIXES: tuple[str, ...] = (
    "dblink",  # dblink, dblink_exec, dblink_connect, dblink_send_query, ...
    "lo_",  # large objects: lo_import, lo_export, lo_unlink, lo_put, ...
    "pg_ls_",  # pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    "pg_file_",  # adminpack: pg_file_write, pg_file_rename, pg_file_unlink
    "pg_read_",  # pg_read_file, pg_read_binary_file: the server's files
    "pg_buffercache_evict",  # pg_buffercache_evict, _evict_relation, _evict_all
    "pg_background_",  # pg_background_launch('DELETE ...') runs SQL in a worker, read-write
    "binary_upgrade_",  # pg_upgrade's catalog writers
    "pg_advisory_",  # advisory locks
    "pg_try_advisory_",
    "txid_",  # txid_current assigns a transaction id
    "pg_stat_reset",  # pg_stat_reset, pg_stat_reset_shared, ...
    "pg_create_",  # replication slots, restore points
    "pg_replication_",
    "pg_logical_",
    "pg_copy_",  # replication slot copies
    "pg_wal_replay_",
    "pg_backup_",
    "read_",  # DuckDB: read_csv, read_csv_auto, read_parquet, read_json*, read_text, read_blob
    "parquet_",  # DuckDB: parquet_scan, parquet_metadata, parquet_schema, ...
    "iceberg_",  # DuckDB: iceberg_scan, iceberg_metadata, ...
    "system$",  # Snowflake: SYSTEM$WAIT, SYSTEM$CANCEL_QUERY, ...
)

#: Schemas/packages (lower-case) all of whose functions are refused, for the Oracle-style
#: ``package.function(...)`` calls: network, files, delays, dynamic SQL.
DENYLISTED_PACKAGES: frozenset[str] = frozenset(
    {
        "utl_http",
        "utl_file",
        "utl_inaddr",
        "utl_smtp",
        "utl_tcp",
        "dbms_pipe",
        "dbms_lock",
        "dbms_xmlgen",
        "dbms_java",
        "dbms_scheduler",
        "dbms_sql",
        "dbms_session",
        "dbms_system",
        "cron",  # pg_cron: cron.schedule('...', 'DELETE ...') runs it later, read-write
    }
)

# Sequence pseudo-columns: Oracle/Snowflake ``seq.NEXTVAL`` parses as a qualified column.
_SEQUENCE_PSEUDOCOLUMNS = frozenset({"nextval", "currval"})

# Command keywords (first word of an ``exp.Command``) that control transactions.
_TRANSACTION_COMMANDS = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}
)

# Statement classes that may never appear, at the top or nested. Looked up by name so that a
# class missing from some sqlglot version is simply skipped.
_STATEMENT_CLASS_NAMES = (
    "DML",  # Insert, Update, Delete, Merge, Copy
    "DDL",  # Create, Insert
    "Command",
    "Transaction",
    "Commit",
    "Rollback",
    "Drop",
    "Alter",
    "TruncateTable",
    "Set",
    "Pragma",
    "Attach",
    "Detach",
    "Install",
    "Grant",
    "Revoke",
    "Execute",
    "ExecuteSql",
    "Use",
    "Kill",
    "LoadData",
    "Analyze",
    "Refresh",
    "Cache",
    "Uncache",
    "Export",
    "Comment",
)
_STATEMENT_CLASSES: tuple[type, ...] = tuple(
    cls for name in _STATEMENT_CLASS_NAMES if isinstance(cls := getattr(exp, name, None), type)
)
_TRANSACTION_CLASSES: tuple[type, ...] = (exp.Transaction, exp.Commit, exp.Rollback)
# Calls to functions sqlglot does not know; their name is in ``.name``.
_ANONYMOUS_CLASSES: tuple[type, ...] = tuple(
    cls for name in ("Anonymous", "AnonymousAggFunc") if isinstance(cls := getattr(exp, name, None), type)
)

# A quoted table name that DuckDB would resolve to a file/URL by a replacement scan.
_FILE_LIKE_TABLE = re.compile(
    r"[/\\]|://|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|xlsx|arrow|feather|avro|orc"
    r"|db|duckdb|sqlite|sqlite3|gz|zst|bz2|xz|zip)$",
    re.IGNORECASE,
)

# Node kinds, one per class, computed once per class (see _node_kind).
_OTHER = 0
_STATEMENT = 1
_LOCK = 2
_INTO = 3
_ANONYMOUS_FUNC = 4
_DENIED_FUNC = 5
_TABLE = 6
_COLUMN = 7


def _is_denylisted_name(name: str) -> bool:
    """Whether a lower-case function name is denylisted.

    >>> _is_denylisted_name("pg_sleep"), _is_denylisted_name("dblink_exec"), _is_denylisted_name("sum")
    (True, True, False)
    """
    return name in DENYLISTED_FUNCTIONS or name.startswith(DENYLISTED_FUNCTION_PREFIXES)


@functools.cache
def _node_kind(cls: type) -> int:
    """Classify a sqlglot expression class once; the walk then costs one cached call per node.

    >>> _node_kind(exp.Delete) == _STATEMENT, _node_kind(exp.Column) == _COLUMN
    (True, True)
    """
    if issubclass(cls, exp.Query):
        return _OTHER
    if issubclass(cls, _STATEMENT_CLASSES):
        return _STATEMENT
    if issubclass(cls, exp.Lock):
        return _LOCK
    if issubclass(cls, exp.Into):
        return _INTO
    if issubclass(cls, _ANONYMOUS_CLASSES):
        return _ANONYMOUS_FUNC
    if issubclass(cls, exp.Func) and _denylisted_class_name(cls) is not None:
        return _DENIED_FUNC
    if issubclass(cls, exp.Table):
        return _TABLE
    if issubclass(cls, exp.Column):
        return _COLUMN
    return _OTHER


@functools.cache
def _denylisted_class_name(cls: type) -> str | None:
    """The denylisted SQL name of a named sqlglot function class, or None.

    >>> _denylisted_class_name(exp.ReadCSV), _denylisted_class_name(exp.Sum)
    ('read_csv', None)
    """
    try:
        names = cls.sql_names()  # type: ignore[attr-defined]
    except Exception:  # abstract helper classes may not define names
        return None
    for sql_name in names:
        name = sql_name.lower()
        if _is_denylisted_name(name):
            return name
    return None


def _anonymous_refusal(node: exp.Expr) -> str | None:
    """Reason for a call to a function sqlglot does not know (``exp.Anonymous``), or None.

    >>> _anonymous_refusal(sqlglot.parse_one("SELECT public.NextVal('s')").find(exp.Anonymous))
    'side_effect_function:nextval'
    """
    name = node.name.lower()
    if _is_denylisted_name(name):
        return f"side_effect_function:{name}"
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        package = parent.this.name.lower() if isinstance(parent.this, exp.Expr) else ""
        if package in DENYLISTED_PACKAGES:
            return f"side_effect_function:{package}.{name}"
    return None


def _column_refusal(node: exp.Expr) -> str | None:
    """Reason for a sequence pseudo-column such as ``seq.NEXTVAL``, or None.

    >>> _column_refusal(sqlglot.parse_one("SELECT s.nextval", read="snowflake").find(exp.Column))
    'side_effect_function:nextval'
    """
    if not node.args.get("table"):
        return None
    name = node.name.lower()
    return f"side_effect_function:{name}" if name in _SEQUENCE_PSEUDOCOLUMNS else None


def _table_refusal(node: exp.Expr) -> str | None:
    """Reason for a quoted table name that is really a file path or URL, or None.

    >>> _table_refusal(sqlglot.parse_one("SELECT * FROM 'x.csv'", read="duckdb").find(exp.Table))
    'file_table_reference'
    """
    ident = node.this
    if isinstance(ident, exp.Identifier) and ident.quoted and _FILE_LIKE_TABLE.search(ident.name):
        return "file_table_reference"
    return None


def _has_executable_comment(comments: Iterable[str]) -> bool:
    """Whether a comment is a MySQL/MariaDB executable comment (``/*! ... */``, ``/*M! ... */``).

    >>> _has_executable_comment(["!50000 UNION SELECT 1 "]), _has_executable_comment([" plain "])
    (True, False)
    """
    return any(c.startswith(("!", "M!")) for c in comments)


def _statement_refusal(statement: exp.Expr) -> str | None:
    """Reason why a top-level statement is not a query, or None when it is one.

    >>> _statement_refusal(sqlglot.parse_one("CALL p()", read="postgres"))
    'command:CALL'
    """
    if isinstance(statement, exp.Command):
        keyword = (statement.name.split() or ["?"])[0].upper()
        return "transaction_control" if keyword in _TRANSACTION_COMMANDS else f"command:{keyword}"
    if isinstance(statement, _TRANSACTION_CLASSES):
        return "transaction_control"
    inner = statement.unnest() if isinstance(statement, exp.Subquery) else statement
    if not isinstance(inner, exp.Query):
        return f"not_a_query:{type(inner).__name__}"
    return None


def _tree_refusal(statement: exp.Expr) -> str | None:
    """Reason found anywhere inside a query (one walk of the tree), or None.

    >>> _tree_refusal(sqlglot.parse_one("SELECT * FROM t FOR UPDATE", read="postgres"))
    'locking_clause'
    """
    for node in statement.walk():
        if node.comments and _has_executable_comment(node.comments):
            return "executable_comment"
        kind = _node_kind(type(node))
        if kind == _OTHER:
            continue
        reason: str | None
        if kind == _ANONYMOUS_FUNC:
            reason = _anonymous_refusal(node)
        elif kind == _COLUMN:
            reason = _column_refusal(node)
        elif kind == _TABLE:
            reason = _table_refusal(node)
        elif kind == _DENIED_FUNC:
            reason = f"side_effect_function:{_denylisted_class_name(type(node))}"
        elif kind == _LOCK:
            reason = "locking_clause"
        elif kind == _INTO:
            reason = "select_into"
        elif isinstance(node.parent, exp.CTE):
            reason = "data_modifying_cte"
        else:
            reason = f"nested_statement:{type(node).__name__}"
        if reason is not None:
            return reason
    return None


def refusal_reason(statements: Sequence[exp.Expr | None]) -> str | None:
    """Why the statements parsed from ONE text must not be executed, or None when they may.

    ``statements`` is what ``sqlglot.parse(sql, read=dialect)`` returned; ``None`` entries
    (empty statements between semicolons) are ignored. The text is accepted only when exactly
    one statement remains and it is a read-only query (see the module docstring for the
    reasons). The tree is walked once; nothing is re-parsed or regenerated.

    Example:
        >>> import sqlglot
        >>> refusal_reason(sqlglot.parse("WITH x AS (SELECT 1 AS a) SELECT a FROM x UNION SELECT 2"))
        >>> refusal_reason(sqlglot.parse("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", read="postgres"))
        'data_modifying_cte'
        >>> refusal_reason(sqlglot.parse("-- nothing"))
        'empty'
    """
    present = [s for s in statements if s is not None]
    if not present:
        return "empty"
    if len(present) > 1:
        return "multiple_statements"
    statement = present[0]
    return _statement_refusal(statement) or _tree_refusal(statement)


def is_read_only_query(sql: str, dialect: str | None) -> tuple[bool, str | None]:
    """Parse ``sql`` in ``dialect`` and apply :func:`refusal_reason`.

    Returns ``(True, None)`` for an accepted text and ``(False, reason)`` otherwise; a text
    sqlglot cannot parse (including one nested too deeply to parse) gets
    ``unparseable:<ErrorClass>``. An unknown dialect name is a programming error and raises.

    Example:
        >>> is_read_only_query("SELECT a FROM t ORDER BY a", "postgres")
        (True, None)
        >>> is_read_only_query("SELECT * FROM t INTO OUTFILE '/tmp/x'", "mysql")
        (False, 'unparseable:ParseError')
    """
    read = Dialect.get_or_raise(dialect)
    try:
        statements = sqlglot.parse(sql, read=read)
    except (SqlglotError, RecursionError) as error:
        return False, f"unparseable:{type(error).__name__}"
    reason = refusal_reason(statements)
    return reason is None, reason
