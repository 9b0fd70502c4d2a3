"""Issue 19, the SQL side: writes a read-only session allows, MariaDB's REGEXP, one choice per duplicate group.

* PostgreSQL lets a ``READ ONLY`` transaction summarize BRIN ranges, clean GIN pending lists,
  prewarm buffers and call ``dblink_exec`` back into a database: the guard refuses those calls
  by name (any case, any schema), so they never reach a server.
* MariaDB has no ``REGEXP_LIKE``: MySQL output keeps the ``REGEXP`` operator, and MariaDB runs it.
* Records that tie on every preference (one id, one origin) are ordered by their whole content,
  so dedup keeps the same one whatever order a runner delivers them in; Defog rows that give
  one query twice yield it once, so expansions of a row have distinct ids.

The database tests use the servers on 127.0.0.1 only (``tests/fakes/db_fixtures.py`` skips, or fails
in CI, when one is down) and touch only tables named ``sqlpairs_rel19_*`` in database ``test``.
"""

from __future__ import annotations

import io
import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.core.record import Execution, Record, new_record, record_to_json
from tests.fakes import db_fixtures as fx
from tests.conftest import make_pipeline
from tests.integration.test_postgres import run_job
from transforms.select.dedup import ChooseRepresentative, DedupPairs
from transforms.formats import RawPair
from transforms.formats.defog import expand_alternatives, parse_defog_csv
from transforms.sql.normalize import SqlRejected, normalize_sql
from transforms.sql.safety import is_read_only_query

# --- the guard: functions with side effects that a read-only transaction allows -----------------

#: Each must be refused as ``side_effect_function:<name>``, from PostgreSQL and MySQL input alike.
SIDE_EFFECT_FUNCTIONS = (
    # index maintenance and buffer cache: physical writes inside BEGIN READ ONLY
    "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range",
    "gin_clean_pending_list", "pg_prewarm", "autoprewarm_dump_now", "pg_truncate_visibility_map",
    "heap_force_kill", "pg_buffercache_evict",
    # other connections, SQL in strings
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query", "dblink_open",
    "pg_background_launch", "query_to_xml", "query_to_xmlschema", "cursor_to_xml", "table_to_xml",
    "schema_to_xml", "database_to_xml", "ts_stat",
    # locks, notifications, large objects, settings, sequences, transaction ids
    "pg_advisory_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_lock", "pg_notify",
    "lo_import", "lo_export", "lo_unlink", "lo_put", "lo_from_bytea", "loread", "lowrite",
    "set_config", "nextval", "setval", "txid_current", "pg_current_xact_id",
    # administration, WAL, the server's files
    "pg_reload_conf", "pg_rotate_logfile", "pg_terminate_backend", "pg_cancel_backend", "pg_stat_reset",
    "pg_stat_reset_shared", "pg_switch_wal", "pg_create_restore_point", "pg_file_write", "pg_read_file",
    "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_hba_file_rules",
    # MySQL / MariaDB
    "sleep", "benchmark", "get_lock", "release_lock", "load_file", "master_pos_wait", "master_gtid_wait",
)

#: How a call may be written: plain, upper-case, schema-qualified, quoted, as a table function, nested.
CALL_FORMS = {
    "postgres": ("SELECT {name}('x', 1)", "SELECT {upper}('x')", "SELECT public.{name}('x')",
                 "SELECT pg_catalog.{upper}('x')", 'SELECT "{name}"(\'x\')', 'SELECT "public"."{name}"(\'x\')',
                 "SELECT * FROM {name}('x') AS r(a text)", "SELECT a FROM t WHERE a IN (SELECT {name}('x'))",
                 "SELECT (({name}('x')))", "WITH c AS (SELECT {name}('x') AS v) SELECT v FROM c"),
    "mysql": ("SELECT {name}('x', 1)", "SELECT {upper}('x')", "SELECT test.{name}('x')", "SELECT `{name}`('x')",
              "SELECT `test`.`{upper}`('x')", "SELECT a FROM t WHERE a IN (SELECT {name}('x'))",
              "SELECT {name} /* c */ ('x')"),
}


def _calls():
    for name in SIDE_EFFECT_FUNCTIONS:
        for dialect, forms in CALL_FORMS.items():
            for form in forms:
                yield pytest.param(dialect, form.format(name=name, upper=name.upper()), name,
                                   id=f"{dialect}-{form.format(name=name, upper=name.upper())}")


@pytest.mark.parametrize(("dialect", "sql", "name"), _calls())
def test_a_call_with_side_effects_is_refused_however_it_is_written(dialect: str, sql: str, name: str) -> None:
    assert is_read_only_query(sql, dialect) == (False, f"side_effect_function:{name}")


@pytest.mark.parametrize("dialect", sorted(CALL_FORMS))
def test_normalize_makes_it_a_dead_letter_of_stage_safety(dialect: str) -> None:
    with pytest.raises(SqlRejected) as refused:
        normalize_sql("SELECT pg_catalog.BRIN_SUMMARIZE_NEW_VALUES('some_brin_index')", dialect, "postgres")
    assert (refused.value.stage, refused.value.reason) == ("safety", "side_effect_function")
    assert refused.value.detail == "side_effect_function:brin_summarize_new_values"


@pytest.mark.parametrize(("dialect", "sql"), [
    ("postgres", "SELECT current_setting('statement_timeout'), pg_backend_pid(), version()"),
    ("postgres", "SELECT brin_summarize_range, dblink, sleep FROM t"),  # columns, not calls
    ("postgres", "SELECT * FROM pg_stat_user_indexes WHERE indexrelname LIKE 'brin%'"),
    ("postgres", "SELECT lower(name), loc FROM t"),
    ("mysql", "SELECT IS_FREE_LOCK('x'), NOW(), name FROM t WHERE name REGEXP '^a'"),
])
def test_ordinary_reads_stay_allowed(dialect: str, sql: str) -> None:
    assert is_read_only_query(sql, dialect) == (True, None)


# --- PostgreSQL: the BRIN summary is never written --------------------------------------------------

BRIN_TABLE, BRIN_INDEX = "sqlpairs_rel19_brin", "sqlpairs_rel19_brin_idx"
PG_TEST_URL = f"postgresql://{fx.PG_USER}@{fx.PG_HOST}:{fx.PG_PORT}/test"


@pytest.fixture
def unsummarized_brin_index():
    """A BRIN index in database ``test`` whose newest page ranges are not summarized yet.

    Rows inserted after ``CREATE INDEX`` are left unsummarized: autosummarize is off, and so is
    autovacuum on the table (a VACUUM would summarize them).
    """
    fx.require_postgres()
    with fx.pg_connect() as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = 'test'").fetchone() is None:
            admin.execute("CREATE DATABASE test")
    with fx.pg_connect("test") as conn:
        conn.execute(f"DROP TABLE IF EXISTS {BRIN_TABLE}")
        conn.execute(f"CREATE TABLE {BRIN_TABLE} (id int) WITH (autovacuum_enabled = off)")
        conn.execute(f"CREATE INDEX {BRIN_INDEX} ON {BRIN_TABLE} USING brin (id) "
                     "WITH (pages_per_range = 1, autosummarize = off)")
        conn.execute(f"INSERT INTO {BRIN_TABLE} SELECT generate_series(1, 3000)")
    yield BRIN_INDEX
    with fx.pg_connect("test") as conn:
        conn.execute(f"DROP TABLE IF EXISTS {BRIN_TABLE}")


def _summarize_now(index: str) -> int:
    """Summarize the index as the admin: how many ranges were still unsummarized."""
    with fx.pg_connect("test") as conn:
        return conn.execute("SELECT brin_summarize_new_values(%s::regclass)", (index,)).fetchone()[0]


def test_a_read_only_transaction_does_not_stop_a_brin_summary(unsummarized_brin_index):
    """Why the guard must refuse it: PostgreSQL itself writes the index inside BEGIN READ ONLY."""
    with fx.pg_connect("test", autocommit=False) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        written = conn.execute("SELECT brin_summarize_new_values(%s::regclass)", (BRIN_INDEX,)).fetchone()[0]
        conn.rollback()
    assert written > 0
    assert _summarize_now(BRIN_INDEX) == 0  # the ROLLBACK did not undo it


def test_a_brin_summary_never_reaches_postgres(unsummarized_brin_index, tmp_path):
    calls = [f"SELECT brin_summarize_new_values('{BRIN_INDEX}')",
             f"SELECT pg_catalog.BRIN_SUMMARIZE_RANGE('{BRIN_INDEX}', 0)",
             f"SELECT gin_clean_pending_list('{BRIN_INDEX}')",
             f"SELECT * FROM public.dblink_exec('dbname=test', 'DELETE FROM {BRIN_TABLE}') AS r(status text)"]
    logs = tmp_path / "logs.jsonl"
    logs.write_text("".join(json.dumps({"sql": sql}) + "\n" for sql in calls + [f"SELECT count(*) FROM {BRIN_TABLE}"]),
                    encoding="utf-8")
    pairs, dead, _ = run_job(tmp_path / "out", "--sql_logs", str(logs), "--database", PG_TEST_URL,
                           "--timeout_s", "5", "--keep_failures", "--dedup", "none")
    assert {(d["record"]["sql"], d["stage"], d["reason"]) for d in dead} == {
        (sql, "safety", "side_effect_function") for sql in calls}
    # the job did reach the database, for the one plain read it was given
    assert [(p["sql"], p["execution"]["status"]) for p in pairs] == [(f"SELECT count(*) FROM {BRIN_TABLE}", "ok")]
    assert _summarize_now(BRIN_INDEX) > 0  # still unsummarized: no call reached the server


# --- MariaDB: REGEXP stays REGEXP ----------------------------------------------------------------

REGEXP_TABLE = "sqlpairs_rel19_names"


@pytest.fixture(scope="module")
def mariadb_names():
    """A table of four names in MariaDB's database ``test``, compared case-sensitively (like PostgreSQL)."""
    fx.require_mariadb()
    conn = fx.my_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS test")
            cursor.execute(f"DROP TABLE IF EXISTS test.{REGEXP_TABLE}")
            cursor.execute(f"CREATE TABLE test.{REGEXP_TABLE} (name VARCHAR(20) COLLATE utf8mb4_bin)")
            cursor.execute(f"INSERT INTO test.{REGEXP_TABLE} VALUES ('apple'), ('Avocado'), ('banana'), ('cherry')")
        yield
        with conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS test.{REGEXP_TABLE}")
    finally:
        conn.close()


def _on_mariadb(sql: str) -> set[str]:
    conn = fx.my_connect("test")
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()


@pytest.mark.parametrize(("source", "sql", "names"), [
    ("mysql", f"SELECT name FROM {REGEXP_TABLE} WHERE name REGEXP '^a'", {"apple"}),
    ("mysql", f"SELECT name FROM {REGEXP_TABLE} WHERE name RLIKE 'an'", {"banana"}),
    ("mysql", f"SELECT name FROM {REGEXP_TABLE} WHERE name NOT REGEXP '^a'", {"Avocado", "banana", "cherry"}),
    ("mysql", f"SELECT name FROM {REGEXP_TABLE} WHERE REGEXP_LIKE(name, 'rr')", {"cherry"}),
    ("postgres", f"SELECT name FROM {REGEXP_TABLE} WHERE name ~ '^a'", {"apple"}),
    ("postgres", f"SELECT name FROM {REGEXP_TABLE} WHERE name !~ '^a'", {"Avocado", "banana", "cherry"}),
    ("postgres", f"SELECT name FROM {REGEXP_TABLE} WHERE name ~* '^a'", {"apple", "Avocado"}),
    ("postgres", f"SELECT name FROM {REGEXP_TABLE} WHERE name ~* ('^' || 'A')", {"apple", "Avocado"}),
])
def test_a_regular_expression_match_runs_on_mariadb(mariadb_names, source: str, sql: str, names: set[str]) -> None:
    normalized = normalize_sql(sql, source, "mysql").sql
    assert "REGEXP_LIKE" not in normalized and "REGEXP_I_LIKE" not in normalized
    assert _on_mariadb(normalized) == names
    assert normalize_sql(normalized, "mysql", "mysql").sql == normalized  # a fixed point


def test_mysql_regexp_and_rlike_keep_their_operator_and_share_a_fingerprint() -> None:
    regexp = normalize_sql("SELECT * FROM t WHERE name REGEXP '^a'", "mysql", "mysql")
    rlike = normalize_sql("SELECT * FROM t WHERE name RLIKE '^a'", "mysql", "mysql")
    assert regexp.sql == rlike.sql == "SELECT * FROM t WHERE name REGEXP '^a'"
    assert regexp.sql_fingerprint == rlike.sql_fingerprint


def test_a_placeholder_regexp_shares_the_template_of_its_literal_form() -> None:
    literal = normalize_sql("SELECT * FROM t WHERE name REGEXP '^a'", "postgres", "mysql")
    placeholder = normalize_sql("SELECT * FROM t WHERE name ~ $1", "postgres", "mysql")
    assert placeholder.template_fingerprint == literal.template_fingerprint


def test_other_targets_keep_their_own_regexp_form() -> None:
    assert normalize_sql("SELECT * FROM t WHERE name REGEXP '^a'", "mysql", "postgres").sql == \
        "SELECT * FROM t WHERE name ~ '^a'"


# --- determinism: dedup's choice is a total order ----------------------------------------------------

def _twins() -> list[Record]:
    """Records one dedup key, one id, one origin and one question: only ``extra`` tells them apart."""
    base = Record(id="same-id", question="How many?", sql="SELECT 1", db_id="d", sql_fingerprint="f",
                  template_fingerprint="t", question_source="given", origin="q.csv:3", execution=Execution("ok"),
                  extra={"alternative": "0", "alternatives": "3"})
    return [base, base._replace(extra={"alternative": "2", "alternatives": "3"}),
            base._replace(extra={"alternative": "1", "alternatives": "3"})]


def _assert_dedup_keeps(records: list[Record], expected: Record) -> None:
    with make_pipeline() as p:
        out = p | beam.Create(records, reshuffle=False) | DedupPairs("sql-only")
        assert_that(out | beam.Map(record_to_json), equal_to([record_to_json(expected)]))


def test_dedup_keeps_the_same_record_in_either_order() -> None:
    records = _twins()
    expected = records[0]._replace(duplicates=2, frequency=3)  # alternative "0": the smallest JSON form
    _assert_dedup_keeps(records, expected)
    _assert_dedup_keeps(records[::-1], expected)


def test_the_combiner_agrees_however_its_inputs_and_accumulators_are_split() -> None:
    combine = ChooseRepresentative()
    records = _twins()
    outputs = set()
    for order in (records, records[::-1], records[1:] + records[:1]):
        accumulator = combine.create_accumulator()
        for record in order:
            accumulator = combine.add_input(accumulator, record)
        outputs.add(record_to_json(combine.extract_output(accumulator)))
        parts = [combine.add_input(combine.create_accumulator(), record) for record in order]
        for merged in (combine.merge_accumulators(parts), combine.merge_accumulators(parts[::-1])):
            outputs.add(record_to_json(combine.extract_output(merged)))
    assert len(outputs) == 1


# --- determinism: Defog expansions have distinct ids ------------------------------------------------

REPEATED = (
    b"question,query,db_name\n"
    b"Citations per author?,\"SELECT {a.aid, a.name}, COUNT(*) FROM a GROUP BY {};"
    b"SELECT {a.aid, a.name}, COUNT(*) FROM a GROUP BY {};SELECT a.aid, COUNT(*) FROM a GROUP BY a.aid\",academic\n"
)


def _ids(items) -> list[str]:
    """The ids ``transforms.ingest.read`` gives these pairs (a hash of their content)."""
    return [new_record(p.sql, p.question, context=p.context, success=p.success, db_id=p.db_id, source=p.source,
                       origin=p.origin, extra=p.extra).id for p in items]


def test_a_repeated_alternative_is_one_pair() -> None:
    items = list(parse_defog_csv(io.BytesIO(REPEATED), "q.csv"))
    assert [p.sql for p in items] == ["SELECT a.aid, COUNT(*) FROM a GROUP BY a.aid",
                                      "SELECT a.name, COUNT(*) FROM a GROUP BY a.name",
                                      "SELECT a.aid, a.name, COUNT(*) FROM a GROUP BY a.aid, a.name"]
    assert [p.extra["alternative"] for p in items] == ["0", "1", "2"]
    assert {p.extra["alternatives"] for p in items} == {"3"}
    assert len(set(_ids(items))) == 3


def test_every_expansion_of_the_real_sql_eval_files_has_its_own_id(shared_data) -> None:
    for name in ("questions_gen_postgres.csv", "questions_gen_sqlite.csv", "instruct_basic_postgres.csv",
                 "instruct_advanced_postgres.csv"):
        path = shared_data("defog", name)
        with open(path, "rb") as stream:
            items = [p for p in parse_defog_csv(stream, name) if isinstance(p, RawPair)]
        ids = _ids(items)
        assert len(set(ids)) == len(ids), name


def test_expansion_keeps_the_first_place_of_a_repeated_query() -> None:
    assert expand_alternatives("SELECT 2;SELECT 1;SELECT 2") == ["SELECT 2", "SELECT 1"]
