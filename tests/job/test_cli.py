"""The command line: the README's example end to end, determinism, and one-line user errors."""

import json
import subprocess
import sys

import pytest

from pipeline.main import main
from pipeline.options import OPTION_SPECS
from tests.conftest import REPO

EXAMPLE_ARGS = [
    "--sql_logs", str(REPO / "examples" / "chinook_queries.sql"),
    "--chat_history", str(REPO / "examples" / "chat_history.json"),
    "--seed_pairs", str(REPO / "examples" / "seed_pairs.jsonl"),
    "--database", f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}",
    "--timeout_s", "1",
]


def _read_lines(prefix, kind=""):
    name = f"{prefix}{kind}-00000-of-00001.jsonl"
    with open(name, encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "chinook"
    assert main(["run", *EXAMPLE_ARGS, "--output", str(out)]) == 0
    return out


def test_example_run_writes_pairs_dead_letters_and_a_balanced_report(example_run):
    pairs = [json.loads(line) for line in _read_lines(example_run).splitlines()]
    dead = [json.loads(line) for line in _read_lines(example_run, "-rejects").splitlines()]
    report = json.loads(open(f"{example_run}-report.json").read())
    assert report["ok"] and report["accounting"]["problems"] == []
    assert report["accounting"]["pairs_written"] == len(pairs)
    assert report["accounting"]["dead_letters"] == len(dead)
    for row in report["stages"]:
        assert row["in"] == row["out"] + row["rejected"] + row.get("merged", 0)
    assert all(p["execution"]["status"] == "ok" for p in pairs)
    assert {p["source"] for p in pairs} == {"log", "chat", "seed"}


def test_unsafe_statements_become_safety_dead_letters(example_run):
    dead = [json.loads(line) for line in _read_lines(example_run, "-rejects").splitlines()]
    unsafe = {d["record"]["sql"] for d in dead if d["stage"] == "safety"}
    assert {"DELETE FROM Track WHERE TrackId = 1", "UPDATE Invoice SET Total = 0", "DROP TABLE Genre",
            "DROP TABLE Track"} <= unsafe


def test_literal_case_is_kept_apart_but_repeats_merge(example_run):
    pairs = [json.loads(line) for line in _read_lines(example_run).splitlines()]
    by_sql = {p["normalized_sql"]: p for p in pairs}
    assert "SELECT firstname, lastname FROM customer WHERE country = 'Brazil'" in by_sql
    assert "SELECT firstname, lastname FROM customer WHERE country = 'brazil'" in by_sql
    assert by_sql["SELECT name FROM artist WHERE name = 'Queen'"]["duplicates"] == 1


def test_slow_query_times_out_and_is_dead_lettered(example_run):
    dead = [json.loads(line) for line in _read_lines(example_run, "-rejects").splitlines()]
    assert any(d["reason"] == "execution_timeout" for d in dead)


def test_same_input_twice_gives_byte_identical_files(example_run, tmp_path):
    again = tmp_path / "again"
    assert main(["run", *EXAMPLE_ARGS, "--output", str(again)]) == 0
    assert _read_lines(again) == _read_lines(example_run)
    assert _read_lines(again, "-rejects") == _read_lines(example_run, "-rejects")


def test_command_line_leaves_complete_files_and_output(example_run, tmp_path):
    """``python -m pipeline`` ends with ``os._exit`` (no interpreter teardown): every file and
    every line of output must already be written by then."""
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "pipeline", "run", *EXAMPLE_ARGS, "--output", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _read_lines(out) == _read_lines(example_run)
    assert _read_lines(out, "-rejects") == _read_lines(example_run, "-rejects")
    report = json.loads((tmp_path / "cli-report.json").read_text(encoding="utf-8"))
    assert report["ok"] and report["accounting"]["problems"] == []
    assert "sqlpairs:" in result.stderr.splitlines()[-1]  # the summary line, flushed before exit
    metadata = subprocess.run([sys.executable, "-m", "pipeline", "metadata"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    assert metadata.returncode == 0
    assert metadata.stdout == (REPO / "templates" / "metadata.json").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sql_logs", "nope/*.sql"], "matches no file"),
        (["--sql_logs", "examples/chinook_queries.sql", "--dialect", "klingon"], "not a sqlglot dialect"),
        (["--sql_logs", "examples/chinook_queries.sql", "--database", "oracle://x"], "unsupported database URL"),
        (["--sql_logs", "examples/chinook_queries.sql", "--validate", "execute"], "needs --database"),
        (["--sql_logs", "examples/chinook_queries.sql", "--dedup", "fuzzy"], "invalid choice"),
        (["--sql_logs", "examples/chinook_queries.sql", "--database", "sqlite:///missing/x.db"], "database unavailable"),
        ([], "nothing to read"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", *args, "--output", str(tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqlpairs: error:") and message in lines[0], result.stderr


def test_help_explains_every_option(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for spec in OPTION_SPECS:
        assert f"--{spec.name}" in text
