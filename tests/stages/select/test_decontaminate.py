"""Decontamination: the matcher (exact SQL after normalization, question n-gram containment around the
threshold), the benchmark formats, the Beam stage, and the launcher's checks of --decontaminate."""

import argparse
import gzip
import json

import apache_beam as beam
import pytest

from pipeline.settings.decontaminate import decontaminate_settings
from tests.fakes.beam_collect import collect
from tests.conftest import make_pipeline
from transforms.sql.benchmark_index import (BenchmarkEntry, BenchmarkFormatError, BenchmarkIndex, BenchmarkItem,
                                        containment, entry_of, read_benchmark)
from transforms.core.errors import UserError
from transforms.core.record import new_record
from transforms.select.decontaminate import Decontaminate, DecontaminateSettings

# 11 words: 4 word 8-grams
BENCH_QUESTION = "How many papers were published in each year by these authors?"


def index_of(*entries):
    return BenchmarkIndex([BenchmarkEntry("bench.json", i, f"bench.json#{i}", q, tuple(sql))
                           for i, (q, sql) in enumerate(entries)])


def entry(question, sql, dialect="sqlite", position=0):
    return entry_of(BenchmarkItem("bench.json", str(position), position, question, (sql,), dialect), "postgres")


# --- the matcher -------------------------------------------------------------------------

def test_sql_that_normalizes_the_same_matches_whatever_its_case_spacing_and_comments():
    index = BenchmarkIndex([entry("Q?", "select count(*)  from Singer -- all")])
    found = index.match("A question of our own", "SELECT COUNT(*) FROM singer")
    assert found.reason == "benchmark_sql" and found.label == "bench.json#0" and found.score == 1.0


def test_sql_differing_in_a_string_literal_is_not_a_match():
    index = BenchmarkIndex([entry("Q?", "SELECT name FROM singer WHERE country = 'France'")])
    assert index.match("Another question", "SELECT name FROM singer WHERE country = 'france'") is None


def test_benchmark_sql_in_sqlite_is_compared_after_transpiling_into_the_target_dialect():
    sqlite = entry("Q?", "SELECT IFNULL(Age, 0) FROM Singer", dialect="sqlite")
    assert BenchmarkIndex([sqlite]).match(None, "SELECT COALESCE(age, 0) FROM singer").reason == "benchmark_sql"


def test_the_same_question_with_other_case_and_punctuation_scores_one():
    assert containment(BENCH_QUESTION, "how many PAPERS were published, in each year, by these authors") == 1.0


def test_a_copied_question_with_a_clause_added_is_contained():
    assert containment(BENCH_QUESTION, BENCH_QUESTION + " Order the results by year.") == 1.0


@pytest.mark.parametrize("pair_question, expected", [
    # the last word changed: 3 of the 4 benchmark 8-grams remain
    ("How many papers were published in each year by these journals?", 0.75),
    # the tenth word changed: the 8-grams ending before it remain (2 of 4)
    ("How many papers were published in each year by those authors?", 0.5),
    # the fifth word changed: every 8-gram holds it
    ("How many papers were written in each year by these authors?", 0.0),
])
def test_near_misses_score_the_share_of_benchmark_8_grams_they_keep(pair_question, expected):
    assert containment(BENCH_QUESTION, pair_question) == pytest.approx(expected)


def test_the_threshold_decides_just_under_and_just_over():
    index = index_of((BENCH_QUESTION, ()))
    near = "How many papers were published in each year by these journals?"  # 0.75
    assert index.match(near, "SELECT 1", threshold=0.76) is None
    found = index.match(near, "SELECT 1", threshold=0.75)
    assert found.reason == "benchmark_question" and found.score == 0.75
    assert "bench.json#0" in found.detail and "containment 0.750 (threshold 0.75)" in found.detail


def test_a_short_benchmark_question_matches_only_the_same_words():
    index = index_of(("How many singers are there?", ()))
    assert index.match("how many singers are there", None).score == 1.0
    assert index.match("How many singers are there in France?", None) is None


def test_a_pair_sharing_only_the_opening_of_a_benchmark_question_is_kept():
    index = index_of((BENCH_QUESTION, ()))
    assert index.match("How many papers were published?", None) is None


def test_the_best_item_wins_and_ties_go_to_the_earliest():
    index = index_of(("How many papers were published in each year by these journals?", ()),
                     (BENCH_QUESTION, ()), (BENCH_QUESTION, ()))
    assert index.match(BENCH_QUESTION, None).label == "bench.json#1"


def test_a_pair_without_question_or_sql_matches_nothing():
    assert index_of((BENCH_QUESTION, ("SELECT 1",))).match(None, None) is None


def test_unparseable_benchmark_sql_is_counted_and_its_question_still_checked():
    bad = entry(BENCH_QUESTION, "SELEC nonsense FROM")
    assert bad.normalized_sql == () and bad.unparseable == 1
    assert BenchmarkIndex([bad]).match(BENCH_QUESTION, None).reason == "benchmark_question"


def test_a_benchmark_statement_that_is_not_a_read_only_query_is_unparseable():
    assert entry("Q?", "DELETE FROM singer").unparseable == 1


# --- benchmark files -----------------------------------------------------------------------

def test_spider_and_bird_json_items_keep_their_ids_or_positions():
    spider = json.dumps([{"db_id": "concert_singer", "question": "How many singers?", "query": "SELECT count(*) FROM singer"}])
    bird = json.dumps([{"question_id": 7, "db_id": "x", "question": "Q?", "evidence": "", "SQL": "SELECT 1"}])
    assert read_benchmark(spider.encode(), "spider/dev.json")[0] == BenchmarkItem(
        "spider/dev.json", "0", 0, "How many singers?", ("SELECT count(*) FROM singer",), "sqlite")
    assert read_benchmark(bird.encode(), "bird/dev.json")[0].label == "bird/dev.json#7"


def test_pairs_jsonl_take_their_dialect_or_the_jobs():
    lines = b'{"id": "abc", "question": "Q?", "sql": "SELECT 1", "dialect": "mysql"}\n\n{"question": "R?", "sql": "SELECT 2"}\n'
    items = read_benchmark(lines, "pairs.jsonl", default_dialect="duckdb")
    assert [(i.key, i.dialect) for i in items] == [("abc", "mysql"), ("3", "duckdb")]


def test_sql_eval_csv_rows_expand_their_alternatives(tmp_path):
    text = ('question,query,db_name\n'
            '"Names?","SELECT {a.id, a.name} FROM a;SELECT 1",x\n')
    item = read_benchmark(text.encode(), "questions_gen_sqlite.csv")[0]
    assert item.key == "1" and item.dialect == "sqlite"
    assert item.sql == ("SELECT a.id FROM a", "SELECT a.name FROM a", "SELECT a.id, a.name FROM a", "SELECT 1")


@pytest.mark.parametrize("name, data, message", [
    ("bench.txt", b"x", "unknown benchmark format"),
    ("bench.json", b"{not json", "not JSON"),
    ("bench.json", b'{"question": "Q"}', "list of objects"),
    ("bench.jsonl", b'{"question": "Q", "sql": "SELECT 1"}\n[1]\n', "line 2 is not an object"),
    ("bench.csv", b"a,b\n1,2\n", "columns question and query"),
    ("bench.json", b'[{"other": 1}]', "no item with a question or SQL"),
    ("bench.json", b"\xff\xfe", "not UTF-8"),
])
def test_unreadable_benchmark_files_are_format_errors(name, data, message):
    with pytest.raises(BenchmarkFormatError, match=message):
        read_benchmark(data, name)


# --- the launcher's checks -------------------------------------------------------------------

def options(value, threshold=0.8):
    return argparse.Namespace(decontaminate=value, decontaminate_threshold=threshold)


def test_no_option_no_stage():
    assert decontaminate_settings(options(None), target_dialect="postgres", source_dialect=None) is None


def test_settings_keep_the_patterns_threshold_and_dialects(tmp_path):
    (tmp_path / "a.json").write_text('[{"question": "Q?", "query": "SELECT 1"}]')
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"question": "R?", "sql": "SELECT 2"}\n'))
    settings = decontaminate_settings(options(f"{tmp_path}/*.json, {tmp_path}/*.gz", 0.9),
                                      target_dialect="postgres", source_dialect="mysql")
    assert settings == DecontaminateSettings((f"{tmp_path}/*.json", f"{tmp_path}/*.gz"), "postgres", "mysql", 0.9)


@pytest.mark.parametrize("files, pattern, message", [
    ({}, "missing-*.json", "matches no file"),
    ({"b.txt": b"x"}, "b.txt", "b.txt: unknown benchmark format"),
    ({"b.json": b"[1, 2]"}, "b.json", "b.json: a .json benchmark is a list of objects"),
    ({"b.json.gz": b"not gzip"}, "b.json.gz", "b.json.gz: cannot read it"),
])
def test_a_bad_benchmark_file_is_a_one_line_user_error(tmp_path, files, pattern, message):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError, match=message) as raised:
        decontaminate_settings(options(str(tmp_path / pattern)), target_dialect="postgres", source_dialect=None)
    assert "\n" not in str(raised.value)


def test_a_directory_is_refused_with_a_pattern_to_use(tmp_path):
    with pytest.raises(UserError, match=r"is a directory: give file patterns such as .*\*\.json"):
        decontaminate_settings(options(str(tmp_path)), target_dialect="postgres", source_dialect=None)


# --- the stage -------------------------------------------------------------------------------

def test_the_stage_drops_exactly_the_copies_and_names_the_benchmark_item(tmp_path):
    bench = tmp_path / "dev.json"
    bench.write_text(json.dumps([
        {"question_id": 11, "question": "How many singers do we have?", "SQL": "SELECT count(*) FROM singer"},
        {"question_id": 12, "question": BENCH_QUESTION, "SQL": "SELECT year, count(*) FROM paper GROUP BY year"},
    ]))
    settings = DecontaminateSettings((str(bench),), "postgres", "postgres", 0.8)
    pairs = [
        new_record("SELECT COUNT(*) FROM singer", "Count the singers.")._replace(
            normalized_sql="SELECT COUNT(*) FROM singer"),
        new_record("SELECT venue FROM paper", BENCH_QUESTION + " Only venues.")._replace(
            normalized_sql="SELECT venue FROM paper"),
        new_record("SELECT name FROM singer", "List the singers' names.")._replace(
            normalized_sql="SELECT name FROM singer"),
    ]
    p = make_pipeline()
    checked = p | beam.Create(pairs) | Decontaminate(settings)
    found = collect(p, kept=checked.records, dead=checked.dead, notes=checked.notes)
    assert [r.question for r in found["kept"]] == ["List the singers' names."]
    dead = sorted(found["dead"], key=lambda d: d.reason)
    assert [(d.stage, d.reason) for d in dead] == [("decontaminate", "benchmark_question"),
                                                  ("decontaminate", "benchmark_sql")]
    assert f"{bench}#12" in dead[0].detail and "containment 1.000" in dead[0].detail
    assert f"{bench}#11" in dead[1].detail and dead[1].record.question == "Count the singers."
    assert sorted(found["notes"]) == ["note:decontaminate:benchmark_items"] * 2 + [
        "note:decontaminate:benchmark_questions"] * 2 + ["note:decontaminate:benchmark_sql"] * 2


def test_the_stage_with_an_empty_input_still_runs(tmp_path):
    bench = tmp_path / "dev.json"
    bench.write_text('[{"question": "Q?", "query": "SELECT 1"}]')
    p = make_pipeline()
    checked = p | beam.Create([]).with_output_types(object) | Decontaminate(
        DecontaminateSettings((str(bench),), "postgres", "postgres"))
    found = collect(p, kept=checked.records, dead=checked.dead)
    assert found["kept"] == [] and found["dead"] == []
