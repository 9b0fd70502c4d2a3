"""The command line refuses outputs it cannot or must not write, and a dripping model server
cannot hang a run (issue 19: severe 3, and the output checks).

Every refusal is one line, exit status 2, before anything runs — and leaves the inputs as
they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from tests.conftest import REPO
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from transforms.core.errors import UserError
from pipeline.config import check_output_writable, overwritten_input
from pipeline.main import main

SEEDS = REPO / "examples" / "seed_pairs.jsonl"
QUERIES = REPO / "examples" / "chinook_queries.sql"


def _refused(capsys, *args: str) -> str:
    """Run ``sqlpairs run args``; assert it was refused with one line, and return that line."""
    assert main(["run", *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqlpairs: error:"), lines
    return lines[0]


# -- the output would overwrite an input ----------------------------------------------------------


def test_an_output_prefix_over_an_input_shard_is_refused_and_the_input_kept(tmp_path, capsys):
    """``--sql_logs in/o-00000-of-00001.jsonl --output in/o`` used to replace its own input."""
    source = tmp_path / "in" / "o-00000-of-00001.jsonl"
    source.parent.mkdir()
    shutil.copy(SEEDS, source)
    before = source.read_bytes()
    line = _refused(capsys, "--sql_logs", str(source), "--output", str(tmp_path / "in" / "o"))
    assert "would overwrite the input" in line and str(source) in line and "--sql_logs" in line
    assert source.read_bytes() == before
    assert sorted(p.name for p in source.parent.iterdir()) == [source.name]


@pytest.mark.parametrize("option, name", [
    ("--seed_pairs", "o-rejects-00000-of-00001.jsonl"),
    ("--chat_history", "o-report.json"),
    ("--schema", "o-sft-train-00000-of-00001.jsonl"),
    ("--personas_file", "o-00000-of-00001.jsonl"),
])
def test_any_input_option_in_the_outputs_names_is_refused(option, name, tmp_path, capsys):
    path = tmp_path / name
    shutil.copy(SEEDS, path)
    args = ["--seed_pairs", str(SEEDS)] if option != "--seed_pairs" else []
    if option == "--personas_file":
        args += ["--synthesize_from_schema", "1"]  # the stage that reads it (else it is refused as unread)
    line = _refused(capsys, *args, option, str(path), "--output", str(tmp_path / "o"))
    assert "would overwrite the input" in line and option in line


def test_an_input_reached_through_a_linked_directory_is_compared_by_real_path(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SEEDS, data / "o-00000-of-00001.jsonl")
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    line = _refused(capsys, "--seed_pairs", str(data / "*.jsonl"), "--output", str(tmp_path / "link" / "o"))
    assert "would overwrite the input" in line


def test_an_input_beside_the_outputs_but_not_named_like_them_is_fine():
    assert overwritten_input("/d/o", [("sql_logs", "/d/o.sql"), ("sql_logs", "/d/other-o-1.jsonl")]) is None
    assert overwritten_input("/d/o", [("sql_logs", "/d/o-1.jsonl")]) == ("sql_logs", "/d/o-1.jsonl")
    nested = "/d/o-dataset/pairs/train-00000-of-00001.jsonl"  # folders named PREFIX-… are the job's too
    assert overwritten_input("/d/o", [("seed_pairs", nested)]) == ("seed_pairs", nested)


def test_personas_and_teachings_passed_back_are_read_not_written(tmp_path):
    """``--personas_file PREFIX-personas.json`` is what the docs suggest: edit it, pass it back."""
    given = str(tmp_path / "o-personas.json")
    assert overwritten_input(str(tmp_path / "o"), [("personas_file", given)], kept=[given]) is None
    assert overwritten_input(str(tmp_path / "o"), [("sql_logs", given)]) == ("sql_logs", given)


# -- the output cannot be written -----------------------------------------------------------------


@pytest.mark.parametrize("output, message", [
    ("/sys/kernel/sqlpairs-o", "cannot create files in '/sys/kernel'"),
    ("/proc/sqlpairs-o", "cannot create files in '/proc'"),
    ("{file}/o", "is not a directory"),
    ("{file}/deeper/o", "is not a directory"),
    ("nosuchscheme://bucket/o", "Unable to get filesystem"),
])
def test_an_unwritable_output_is_one_line_before_anything_runs(output, message, tmp_path, capsys):
    regular = tmp_path / "a-file"
    regular.write_text("x")
    started = time.monotonic()
    line = _refused(capsys, "--sql_logs", str(QUERIES), "--output", output.format(file=regular))
    assert message in line and "--output" in line
    assert time.monotonic() - started < 10  # refused up front, not after a job


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_a_directory_without_write_permission_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    line = _refused(capsys, "--sql_logs", str(QUERIES), "--output", str(locked / "o"))
    assert "cannot create files in" in line


def test_an_output_in_directories_still_to_create_passes_and_the_check_leaves_nothing_behind(tmp_path):
    check_output_writable(str(tmp_path / "new" / "deeper" / "o"))
    check_output_writable(str(tmp_path / "o"))
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_names_a_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match="names a directory"):
        check_output_writable(str(tmp_path) + os.sep)


# -- a model server that drips its replies ----------------------------------------------------------


def test_a_run_against_a_server_dripping_a_byte_a_second_ends_with_dead_letters(tmp_path):
    """Each request is cut at --llm_timeout_s, retried once, then its record is a dead letter."""
    logs = tmp_path / "q.sql"
    logs.write_text("SELECT name FROM artist WHERE artist_id = 5;\nSELECT COUNT(*) FROM track;\n")
    out = tmp_path / "out" / "o"
    with FakeLlmServer(lambda call: Action(kind="drip", delay_s=1.0)) as server:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--sql_logs", str(logs), "--llm", "openai",
             "--llm_endpoint", f"{server.url}/v1", "--llm_timeout_s", "2", "--llm_retries", "1", "--output", str(out)],
            cwd=REPO, capture_output=True, text=True, timeout=180)
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 90  # two attempts of 2 s and a back-off per record, plus start-up; it used to hang
    dead = [json.loads(line) for line in (tmp_path / "out" / "o-rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert len(dead) == 2
    assert all(d["reason"] == "request_failed" and "timed out" in d["detail"] for d in dead)
    report = json.loads((tmp_path / "out" / "o-report.json").read_text())
    assert report["accounting"]["dead_letters"] == 2 and report["accounting"]["pairs_written"] == 0
    total = report["llm"]["total"]
    assert (total["requests"], total["calls"], total["retries"], total["failures"]) == (2, 4, 2, 2)
