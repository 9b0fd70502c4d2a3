"""Hostile and broken input through the whole job: every bad item is a dead letter with a
precise reason, the good items around it still become pairs, and the run finishes with its
accounting check passing. An input that is unusable as a whole is one line on stderr, exit 2.

The corpus is ``tests/hostile/`` (small, readable cases) plus the big and binary cases
``tests/hostile/make_corpus.py`` writes into a temporary folder. Most cases share one run
(module fixture) — a real job reading every file at once, as a user's glob would — and
each test checks its own files' items by origin.
"""

from __future__ import annotations

import pytest

from pipeline.main import main
from tests.conftest import REPO
from tests.hostile.job import assert_accounts_for_everything, run_job
from tests.hostile.make_corpus import MANY_STATEMENTS, write_corpus

CORPUS = REPO / "tests" / "hostile"

SQL_LOGS = ["not_utf8.sql", "nul_byte.sql", "not_utf8.jsonl", "big_query.sql", "deep_parentheses.sql",
            "deep_subqueries.sql", "deep.jsonl", "missing_sql.parquet", "wrong_types.parquet",
            "not_really.parquet", "not_gzip.sql.gz"]
SQL_LOGS_COMMITTED = ["truncated.jsonl", "truncated.json", "empty.sql", "blank.jsonl", "unknown_format.txt"]
SEED_PAIRS = ["missing_question.parquet"]
SEED_PAIRS_COMMITTED = ["wrong_types.jsonl", "wrong_types.json", "quotes_newlines.csv"]
CHATS_COMMITTED = ["chat_malformed_parts.json", "chat_truncated.json"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def job(generated, tmp_path_factory):
    sql_logs = [generated[name] for name in SQL_LOGS] + [CORPUS / name for name in SQL_LOGS_COMMITTED]
    seeds = [generated[name] for name in SEED_PAIRS] + [CORPUS / name for name in SEED_PAIRS_COMMITTED]
    chats = [CORPUS / name for name in CHATS_COMMITTED]
    return run_job(
        ["--sql_logs", ",".join(map(str, sql_logs)),
         "--seed_pairs", ",".join(map(str, seeds)),
         "--chat_history", ",".join(map(str, chats))],
        tmp_path_factory.mktemp("out") / "hostile",
    )


def _dead(job, origin):
    return job.dead_by_origin().get(origin, set())


def test_the_run_finishes_and_accounts_for_every_item(job):
    assert_accounts_for_everything(job)
    assert len(job.pairs) > 0 and len(job.dead) > 0


def test_bytes_that_are_not_utf8_reject_only_their_own_statement(job):
    assert _dead(job, "not_utf8.sql:2") == {("read", "not_utf8")}
    assert _dead(job, "not_utf8.sql:1") == _dead(job, "not_utf8.sql:3") == set()
    assert {"SELECT name FROM artist", "SELECT title FROM album"} <= job.normalized()
    assert _dead(job, "not_utf8.jsonl:2") == {("read", "not_utf8")}


def test_nul_bytes_reject_only_their_own_item(job):
    assert _dead(job, "nul_byte.sql:2") == {("read", "nul_byte")}
    assert {"SELECT name FROM genre", "SELECT name FROM mediatype"} <= job.normalized()
    assert _dead(job, "not_utf8.jsonl:3") == {("read", "nul_byte")}  # a "\u0000" escape in JSON
    assert not any("\x00" in pair["sql"] for pair in job.pairs)


def test_a_one_megabyte_query_is_read_whole_and_the_next_statement_still_comes(job):
    big = [pair for pair in job.pairs if pair["origin"].endswith("big_query.sql:1")]
    assert len(big) == 1 and len(big[0]["sql"]) > 1_000_000
    assert big[0]["normalized_sql"].startswith("SELECT name FROM track WHERE trackid IN (0, 1, 2")
    assert big[0]["question"] and len(big[0]["question"]) < 2000
    assert _dead(job, "big_query.sql:2") == set() and "SELECT name FROM genre" in job.normalized()


@pytest.mark.parametrize("origin", ["deep_parentheses.sql:1", "deep_subqueries.sql:1"])
def test_sql_nested_past_the_recursion_limit_is_a_dead_letter(job, origin):
    assert _dead(job, origin) == {("parse", "too_deeply_nested")}


def test_statements_after_deep_sql_still_become_pairs(job):
    assert _dead(job, "deep_parentheses.sql:2") == _dead(job, "deep_subqueries.sql:2") == set()
    assert {"SELECT name FROM artist", "SELECT name FROM genre"} <= job.normalized()


def test_json_nested_past_the_recursion_limit_is_a_dead_letter(job):
    assert _dead(job, "deep.jsonl:1") == {("read", "invalid_json")}
    detail = next(d["detail"] for d in job.dead if d["origin"].endswith("deep.jsonl:1"))
    assert "RecursionError" in detail
    assert _dead(job, "deep.jsonl:2") == set()


def test_json_values_of_the_wrong_type_are_dead_letters_naming_the_field(job):
    assert {origin: reasons for origin, reasons in job.dead_by_origin().items()
            if origin.startswith("wrong_types.jsonl")} == {
        "wrong_types.jsonl:2": {("read", "wrong_type:sql")},  # a number
        "wrong_types.jsonl:3": {("read", "wrong_type:sql")},  # a list
        "wrong_types.jsonl:4": {("read", "missing_field:sql")},  # null
        "wrong_types.jsonl:5": {("read", "missing_field:sql")},  # absent
        "wrong_types.jsonl:6": {("read", "wrong_type:sql")},  # an object
        "wrong_types.jsonl:7": {("read", "wrong_type:question")},
        "wrong_types.jsonl:9": {("read", "empty_sql")},
        "wrong_types.jsonl:10": {("read", "wrong_type:record")},  # a bare string
        "wrong_types.jsonl:11": {("read", "wrong_type:record")},  # an array
    }
    given = {pair["question"] for pair in job.pairs if pair["source"] == "seed"}
    assert {"What is the first artist called?", "Which genre is number one?"} <= given


def test_a_json_array_with_wrong_types_rejects_only_those_entries(job):
    assert {origin: reasons for origin, reasons in job.dead_by_origin().items()
            if origin.startswith("wrong_types.json#")} == {
        "wrong_types.json#1": {("read", "wrong_type:record")},
        "wrong_types.json#2": {("read", "wrong_type:record")},
        "wrong_types.json#3": {("read", "wrong_type:record")},
        "wrong_types.json#4": {("read", "wrong_type:sql")},
    }
    assert any(pair["question"] == "Which playlist is number one?" for pair in job.pairs)


def test_truncated_files_are_dead_letters_and_what_came_before_is_kept(job):
    assert _dead(job, "truncated.jsonl:2") == {("read", "truncated_json")}
    assert any(pair["origin"].endswith("truncated.jsonl:1") for pair in job.pairs)
    # an array is read element by element: the element cut short is the dead letter, those before it are pairs
    assert _dead(job, "truncated.json#1") == {("read", "truncated_json")}
    assert any(pair["origin"].endswith("truncated.json#0") for pair in job.pairs)
    assert _dead(job, "chat_truncated.json") == {("read", "truncated_json")}


def test_empty_and_blank_files_are_valid_empty_inputs(job):
    origins = {d["origin"] for d in job.dead} | {p["origin"] for p in job.pairs}
    assert not any("empty.sql" in origin or "blank.jsonl" in origin for origin in origins)


def test_only_empty_files_give_an_empty_balanced_run(tmp_path):
    job = run_job(["--sql_logs", f"{CORPUS / 'empty.sql'},{CORPUS / 'blank.jsonl'}"], tmp_path / "empty")
    assert_accounts_for_everything(job)
    assert job.report["accounting"]["records_read"] == 0 and job.pairs == [] and job.dead == []


def test_csv_quotes_and_newlines_inside_fields_survive_exactly(job):
    by_question = {pair["question"]: pair for pair in job.pairs}
    assert by_question['Which artists are called "Queen"?']["sql"] == "SELECT Name\nFROM Artist\nWHERE Name = 'Queen'"
    assert 'List albums, with commas, by "AC/DC"' in by_question
    spanning = by_question["A question spanning\ntwo lines?"]
    assert spanning["sql"] == "SELECT Title FROM Album WHERE Title LIKE '%\"%'"
    assert spanning["origin"].endswith("quotes_newlines.csv:7")  # the line the record starts on


def test_csv_rows_with_the_wrong_field_count_are_dead_letters(job):
    assert {origin: reasons for origin, reasons in job.dead_by_origin().items()
            if origin.startswith("quotes_newlines.csv")} == {
        "quotes_newlines.csv:9": {("read", "wrong_field_count")},  # one field too many
        "quotes_newlines.csv:10": {("read", "wrong_field_count")},  # one field only
        "quotes_newlines.csv:11": {("read", "wrong_field_count")},  # a quote never closed swallows the rest
    }


def test_malformed_chat_parts_are_dead_letters_and_good_calls_become_pairs(job):
    found = {origin: reasons for origin, reasons in job.dead_by_origin().items()
             if origin.startswith("chat_malformed_parts.json")}
    assert found == {
        "chat_malformed_parts.json#1.0": {("read", "malformed_part")},  # a string, not a part
        "chat_malformed_parts.json#1.1": {("read", "malformed_part")},  # tool part without input
        "chat_malformed_parts.json#1.2": {("read", "malformed_part")},  # sql is a number
        "chat_malformed_parts.json#1.3": {("read", "malformed_part")},  # no sql argument
        "chat_malformed_parts.json#1.4": {("read", "empty_sql")},
        "chat_malformed_parts.json#2": {("read", "malformed_message")},  # no role
        "chat_malformed_parts.json#3": {("read", "malformed_message")},  # a string
        "chat_malformed_parts.json#5.0": {("read", "malformed_part")},  # arguments: cut-off JSON
        "chat_malformed_parts.json#5.1": {("read", "malformed_part")},  # arguments: not an object
        "chat_malformed_parts.json#5.2": {("read", "malformed_part")},  # no function
        "chat_malformed_parts.json#7": {("read", "malformed_part")},  # tool_calls is not a list
    }
    chat = {pair["question"]: pair["normalized_sql"] for pair in job.pairs if pair["source"] == "chat"}
    assert chat == {"How many albums are there?": "SELECT COUNT(*) FROM album",
                    "How many customers are there?": "SELECT COUNT(*) FROM customer"}


@pytest.mark.parametrize("origin, reason", [
    ("missing_sql.parquet", "missing_column:sql"),
    ("not_really.parquet", "parquet_error"),
    ("wrong_types.parquet#0", "wrong_type:sql"),
    ("wrong_types.parquet#1", "wrong_type:sql"),
])
def test_parquet_with_missing_or_wrong_columns_is_a_dead_letter(job, origin, reason):
    assert _dead(job, origin) == {("read", reason)}


def test_a_parquet_seed_without_a_question_column_is_read(job):
    """Only the SQL column is required, in every format (JSON records without a question are read too)."""
    assert not any(stage == "read" for stage, _ in _dead(job, "missing_question.parquet#0"))
    assert _dead(job, "missing_question.parquet") == set()


@pytest.mark.parametrize("origin, reason", [
    ("not_gzip.sql.gz", "unreadable_file"),
    ("unknown_format.txt", "unknown_format"),
])
def test_a_file_that_cannot_be_read_is_one_dead_letter(job, origin, reason):
    assert _dead(job, origin) == {("read", reason)}


def test_ten_thousand_statements_are_each_accounted_for(generated, tmp_path):
    job = run_job(["--sql_logs", generated["many_statements.sql"]], tmp_path / "many")
    assert_accounts_for_everything(job)
    accounting = job.report["accounting"]
    assert accounting["records_read"] == MANY_STATEMENTS
    broken = sorted(int(d["origin"].rsplit(":", 1)[1]) for d in job.dead)
    assert broken == list(range(1000, MANY_STATEMENTS + 1, 1000))
    assert {(d["stage"], d["reason"]) for d in job.dead} == {("parse", "unparseable")}
    assert len(job.pairs) == 50
    assert sum(pair["frequency"] for pair in job.pairs) == MANY_STATEMENTS - len(broken)


@pytest.mark.parametrize("args, message", [
    (["--sql_logs", "{corpus}"], "is a directory"),
    (["--sql_logs", "{corpus}/*.nothing"], "matches no file"),
    (["--sql_logs", "{corpus}/empty.sql", "--sql_logs_format", "xml"], "invalid choice"),
])
def test_an_unusable_input_as_a_whole_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    argv = [a.format(corpus=CORPUS) for a in args]
    assert main(["run", *argv, "--output", str(tmp_path / "o")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqlpairs: error:") and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
