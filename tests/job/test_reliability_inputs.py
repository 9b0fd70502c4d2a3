"""Issue 19, input readers: one limit (``--max_sql_bytes``) for every reader, checked before
parsing, with memory bounded whatever one line's size; optional columns optional in every
format; recursive globs, and dangling links / link loops reported instead of skipped.

The huge items are generated here (tens of MB, written in 1 MiB pieces so the test itself
stays small) and read the way the job reads them (``transforms.kit.inputs.open_input`` +
``parse_file``); the memory bound is measured in a fresh subprocess (``ru_maxrss`` growth
across the read).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import subprocess
import sys
import textwrap

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import REPO, make_pipeline
from transforms.formats import RawPair, ReadReject
from transforms.formats.shared import read_lines
from transforms.ingest.read import ReadInputs, ReadSettings, parse_file
from transforms.kit.inputs import glob_regex, match_pattern, open_input

MB = 1 << 20
#: Size of the one huge item in each generated file: far over the 1 MiB default.
HUGE_MB = 40


def _huge(out, prefix: bytes, suffix: bytes, megabytes: int = HUGE_MB) -> None:
    out.write(prefix)
    piece = b"x" * MB
    for _ in range(megabytes):
        out.write(piece)
    out.write(suffix)


def write_jsonl(path) -> None:
    with open(path, "wb") as out:
        out.write(b'{"sql": "SELECT 1"}\n')
        _huge(out, b'{"sql": "SELECT \'', b'\'", "question": "big?"}\n')
        out.write(b'{"sql": "SELECT 3"}\n')


def write_csv(path) -> None:
    with open(path, "wb") as out:
        out.write(b"sql,question\nSELECT 1,one\n")
        _huge(out, b"\"SELECT '", b"'\",big\n")
        out.write(b"SELECT 3,three\n")


def write_sql(path) -> None:
    with open(path, "wb") as out:
        out.write(b"SELECT 1;\n")
        _huge(out, b"SELECT '", b"';\n")
        out.write(b"SELECT 3;\n")


def write_json(path) -> None:
    """A minified array (all on one line, as ``json.dump`` writes it) with the huge element inside."""
    with open(path, "wb") as out:
        out.write(b'[{"sql": "SELECT 1"}, ')
        _huge(out, b'{"sql": "SELECT \'', b'\'", "nested": [{"a": "]}"}]}')
        out.write(b', {"sql": "SELECT 3"}]')


def write_parquet(path) -> None:
    sql = ["SELECT 1", "SELECT '" + "x" * (HUGE_MB * MB) + "'", "SELECT 3"]
    pq.write_table(pa.table({"sql": sql, "question": ["one", "big", "three"]}), path)


WRITERS = {"q.jsonl": write_jsonl, "q.csv": write_csv, "q.sql": write_sql, "q.json": write_json,
           "q.parquet": write_parquet}


def read(path, kind: str = "sql_logs", settings: ReadSettings = ReadSettings()) -> list:
    with open_input(str(path)) as stream:
        return list(parse_file(stream, str(path), kind, settings))


def summary(items) -> list[tuple[str, str]]:
    return [(i.origin.rsplit("/", 1)[-1], i.reason if isinstance(i, ReadReject) else "ok") for i in items]


# -- one limit for every reader ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_huge_item_is_one_sql_too_long_and_the_items_around_it_are_read(name, tmp_path):
    path = tmp_path / name
    WRITERS[name](path)
    items = read(path)
    middle = {"q.jsonl": "q.jsonl:2", "q.csv": "q.csv:3", "q.sql": "q.sql:2", "q.json": "q.json#1",
              "q.parquet": "q.parquet#1"}[name]
    first, last = ("q.csv:2", "q.csv:4") if name == "q.csv" else (middle[:-1] + "1", middle[:-1] + "3")
    if name in ("q.json", "q.parquet"):
        first, last = middle[:-1] + "0", middle[:-1] + "2"
    assert summary(items) == [(first, "ok"), (middle, "sql_too_long"), (last, "ok")]
    assert [i.sql for i in items if isinstance(i, RawPair)] == ["SELECT 1", "SELECT 3"]
    reject = items[1]
    assert len(reject.detail) < 300 and "max_sql_bytes" in reject.detail  # a preview, never the item


def _peak_growth_mb(path) -> tuple[list, float]:
    """Read ``path`` in a fresh interpreter; its items and how far the read raised peak RSS (MB)."""
    code = textwrap.dedent("""
        import json, resource, sys
        from transforms.ingest.read import ReadSettings, parse_file
        from transforms.kit.inputs import open_input
        path = sys.argv[1]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open_input(path) as stream:
            items = [getattr(i, "reason", "ok") for i in parse_file(stream, path, "sql_logs", ReadSettings())]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps([items, (after - before) / 1024]))
    """)
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    items, growth = json.loads(done.stdout)
    return items, growth


@pytest.mark.parametrize("name", ["q.jsonl", "q.jsonl.gz", "q.csv.bz2", "q.sql", "q.json"])
def test_reading_a_huge_line_holds_a_bounded_buffer_not_the_line(name, tmp_path):
    plain = tmp_path / name.split(".gz")[0].split(".bz2")[0]
    WRITERS[plain.name](plain)
    path = tmp_path / name
    if name.endswith(".gz"):
        with open(plain, "rb") as source, gzip.open(path, "wb", compresslevel=1) as out:
            out.write(source.read())
    elif name.endswith(".bz2"):
        with open(plain, "rb") as source, bz2.open(path, "wb", compresslevel=1) as out:
            out.write(source.read())
    items, growth = _peak_growth_mb(path)
    assert items == ["ok", "sql_too_long", "ok"]
    # far less than the line itself (40 MB): the reader never holds it, compressed or not
    assert growth < 20, f"peak RSS grew {growth:.0f} MB reading a {HUGE_MB} MB line"


def test_a_huge_parquet_value_is_never_converted_and_memory_stays_bounded(tmp_path):
    path = tmp_path / "q.parquet"
    write_parquet(path)
    items, growth = _peak_growth_mb(path)
    assert items == ["ok", "sql_too_long", "ok"]
    assert growth < 200, f"peak RSS grew {growth:.0f} MB"  # Arrow decodes the page; Python never sees it


def test_the_limit_is_the_option_value(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"sql": "SELECT 1"}\n{"sql": "SELECT ' + b"1 + " * 100 + b'1"}\n')
    assert summary(read(path, settings=ReadSettings(max_sql_bytes=200))) == [("q.jsonl:1", "ok"),
                                                                             ("q.jsonl:2", "sql_too_long")]
    assert summary(read(path, settings=ReadSettings(max_sql_bytes=1000))) == [("q.jsonl:1", "ok"),
                                                                              ("q.jsonl:2", "ok")]


@pytest.mark.parametrize("name, data", [
    ("q.csv", "sql\nSELECT 1\nSELECT '{}'\nSELECT 3\n"),
    ("q.sql", "SELECT 1;\nSELECT '{}';\nSELECT 3;\n"),
    ("q.jsonl", '{{"sql": "SELECT 1"}}\n{{"sql": "SELECT \'{}\'"}}\n{{"sql": "SELECT 3"}}\n'),
    ("q.json", '[{{"sql": "SELECT 1"}},\n {{"sql": "SELECT \'{}\'"}},\n {{"sql": "SELECT 3"}}]'),
])
def test_the_limit_counts_utf8_bytes_not_characters(name, data, tmp_path):
    path = tmp_path / name
    path.write_text(data.format("é" * 600), encoding="utf-8")  # 600 characters, 1,200 bytes
    items = read(path, settings=ReadSettings(max_sql_bytes=1000))
    assert [reason for _, reason in summary(items)] == ["ok", "sql_too_long", "ok"]


def test_json_array_elements_after_strings_with_brackets_and_escapes_are_found(tmp_path):
    big = '{"sql": "SELECT \'' + 'a\\"],[{' * 300 + '\'"}'  # brackets and escaped quotes inside the string
    path = tmp_path / "q.json"
    path.write_text(f'[{{"sql": "SELECT 1"}}, {big}, {{"sql": "SELECT 3"}}]')
    items = read(path, settings=ReadSettings(max_sql_bytes=1000))
    assert summary(items) == [("q.json#0", "ok"), ("q.json#1", "sql_too_long"), ("q.json#2", "ok")]


def test_json_array_read_in_small_pieces_gives_the_same_items():
    records = [{"sql": f"SELECT {i}", "n": i * 1.5, "ok": True, "s": "a\\\"]}"} for i in range(300)]
    data = json.dumps(records).encode()

    class Dribble(io.RawIOBase):  # 7 bytes per read: every value is cut somewhere
        def __init__(self):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._data.read(min(len(buffer), 7))
            buffer[:len(chunk)] = chunk
            return len(chunk)

    from transforms.formats import jsonl

    whole = list(jsonl.parse_json_records(io.BytesIO(data), "q.json"))
    original = jsonl._READ_BYTES
    jsonl._READ_BYTES = 7
    try:
        pieces = list(jsonl.parse_json_records(Dribble(), "q.json"))
    finally:
        jsonl._READ_BYTES = original
    assert pieces == whole and len(whole) == 300 and all(isinstance(i, RawPair) for i in whole)


def test_bounded_lines_keep_short_lines_whole_and_skip_long_ones():
    data = b"ab\n" + b"z" * 10_000 + b"\ncd"
    assert [(n, raw if isinstance(raw, bytes) else raw.size) for n, raw in read_lines(io.BytesIO(data), 100)] == [
        (1, b"ab\n"), (2, 10_000), (3, b"cd")]


# -- optional columns ------------------------------------------------------------------------

def _parquet(path, columns: dict) -> None:
    pq.write_table(pa.table(columns), path)


@pytest.mark.parametrize("name", ["s.csv", "s.parquet", "s.jsonl"])
def test_seed_pairs_without_db_id_or_question_columns_are_read(name, tmp_path):
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text("sql,question\nSELECT 1,One?\nSELECT 2,\n")
    elif name.endswith(".parquet"):
        _parquet(path, {"sql": ["SELECT 1", "SELECT 2"], "question": ["One?", None]})
    else:
        path.write_text('{"sql": "SELECT 1", "question": "One?"}\n{"sql": "SELECT 2"}\n')
    items = read(path, kind="seed_pairs")
    assert [(i.sql, i.question, i.db_id, i.source) for i in items] == [("SELECT 1", "One?", None, "seed"),
                                                                       ("SELECT 2", None, None, "seed")]
    only_sql = tmp_path / f"only_sql{path.suffix}"
    if name.endswith(".csv"):
        only_sql.write_text("sql\nSELECT 1\n")
    elif name.endswith(".parquet"):
        _parquet(only_sql, {"sql": ["SELECT 1"]})
    else:
        only_sql.write_text('{"sql": "SELECT 1"}\n')
    (pair,) = read(only_sql, kind="seed_pairs")
    assert (pair.sql, pair.question, pair.db_id) == ("SELECT 1", None, None)


@pytest.mark.parametrize("name", ["s.csv", "s.parquet"])
def test_the_sql_column_is_still_required(name, tmp_path):
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text("query,db_id\nSELECT 1,x\n")
    else:
        _parquet(path, {"query": ["SELECT 1"], "db_id": ["x"]})
    assert summary(read(path, kind="seed_pairs")) == [(name, "missing_column:sql")]


# -- globs -----------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    """d/top.sql, d/a/x.sql, d/a/b/y.sql, d/notes.txt; d/dangling.sql → nowhere; d/a/loop → d;
    d/self.sql → itself."""
    root = tmp_path / "d"
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.sql").write_text("SELECT 1;\n")
    (root / "a" / "x.sql").write_text("SELECT 2;\n")
    (root / "a" / "b" / "y.sql").write_text("SELECT 3;\n")
    (root / "notes.txt").write_text("not sql\n")
    os.symlink("nowhere", root / "dangling.sql")
    os.symlink("..", root / "a" / "loop")
    os.symlink("self.sql", root / "self.sql")
    return root


def test_double_star_matches_every_depth_including_none(tree):
    matched = match_pattern(f"{tree}/**/*.sql")
    assert [m.path for m in matched.files] == [f"{tree}/a/b/y.sql", f"{tree}/a/x.sql", f"{tree}/top.sql"]
    assert [m.path for m in match_pattern(f"{tree}/*.sql").files] == [f"{tree}/top.sql"]
    assert [m.path for m in match_pattern(f"{tree}/*/*.sql").files] == [f"{tree}/a/x.sql"]


def test_relative_patterns_give_relative_paths(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert [m.path for m in match_pattern("d/**/*.sql").files] == ["d/a/b/y.sql", "d/a/x.sql", "d/top.sql"]
    assert [m.path for m in match_pattern("**/top.sql").files] == ["d/top.sql"]


def test_dangling_links_and_loops_are_reported_not_skipped(tree):
    problems = {p.path.rsplit("/d/", 1)[-1]: p.detail for p in match_pattern(f"{tree}/**/*.sql").problems}
    assert set(problems) == {"dangling.sql", "self.sql", "a/loop"}
    assert problems["dangling.sql"].startswith("dangling symbolic link")
    assert problems["self.sql"].startswith("symbolic link loop")
    assert problems["a/loop"].startswith("symbolic link loop")
    # a pattern that does not reach them does not report them
    assert match_pattern(f"{tree}/a/b/*.sql").problems == []


def test_glob_regex_matches_like_a_shell_with_globstar():
    regex = glob_regex("logs/**/q[0-9]?.jsonl")
    assert [bool(regex.match(p)) for p in ("logs/q12.jsonl", "logs/2026/12/q3x.jsonl", "logs/qa1.jsonl",
                                           "other/q12.jsonl")] == [True, True, False, False]


def test_the_job_reads_a_recursive_glob_and_dead_letters_broken_links(tree):
    with make_pipeline() as p:
        out = p | ReadInputs("sql_logs", [f"{tree}/**/*.sql"])
        assert_that(out.records | beam.Map(lambda r: r.sql), equal_to(["SELECT 1", "SELECT 2", "SELECT 3"]),
                    label="records")
        assert_that(out.dead | beam.Map(lambda d: (d.stage, d.reason, d.origin.rsplit("/d/", 1)[-1])),
                    equal_to([("read", "unreadable_file", "dangling.sql"), ("read", "unreadable_file", "self.sql"),
                              ("read", "unreadable_file", "a/loop")]), label="dead")


# -- through the command line ----------------------------------------------------------------

def test_the_job_reads_a_recursive_glob_and_accounts_for_broken_links(tree, tmp_path):
    from tests.hostile.job import assert_accounts_for_everything, run_job

    job = run_job(["--sql_logs", f"{tree}/**/*.sql", "--validate", "parse", "--html_report=false"], tmp_path / "o")
    assert_accounts_for_everything(job)
    assert sorted(pair["origin"].rsplit("/d/", 1)[-1] for pair in job.pairs) == ["a/b/y.sql:1", "a/x.sql:1",
                                                                                   "top.sql:1"]
    assert sorted((d["origin"].rsplit("/d/", 1)[-1], d["reason"]) for d in job.dead) == [
        ("a/loop", "unreadable_file"), ("dangling.sql", "unreadable_file"), ("self.sql", "unreadable_file")]


def test_the_option_sets_the_limit_and_the_dead_letter_is_small(tmp_path):
    from tests.hostile.job import assert_accounts_for_everything, run_job

    log = tmp_path / "q.jsonl"
    log.write_text('{"sql": "SELECT 1"}\n{"sql": "SELECT ' + "1 + " * 5000 + '1"}\n{"sql": "SELECT 3"}\n')
    job = run_job(["--sql_logs", log, "--validate", "parse", "--max_sql_bytes", "4000", "--html_report=false"],
                  tmp_path / "o")
    assert_accounts_for_everything(job)
    (dead,) = job.dead
    assert (dead["stage"], dead["reason"], dead["origin"].rsplit("/", 1)[-1]) == ("read", "sql_too_long", "q.jsonl:2")
    assert len(json.dumps(dead)) < 2000  # a preview, not the 20 kB record
    assert sorted(pair["origin"].rsplit("/", 1)[-1] for pair in job.pairs) == ["q.jsonl:1", "q.jsonl:3"]
