"""Several worker processes give byte-identical output to one, and a run repeated gives the same bytes.

Each run is the real command line (``python -m pipeline run``) on the bundled Chinook
example, with three output shards so that shards are written by different workers.
With ``--direct_running_mode multi_processing`` Beam's in-process runner starts
worker subprocesses and splits every stage's input between them, so records meet
in a different order and in different bundles than on one worker.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO

EXAMPLE_ARGS = (
    "--sql_logs", "examples/chinook_queries.sql",
    "--chat_history", "examples/chat_history.json",
    "--seed_pairs", "examples/seed_pairs.jsonl",
    "--database", "sqlite:///examples/chinook.sqlite",
    "--timeout_s", "5",
    "--num_shards", "3",
)
MULTI = ("--direct_running_mode", "multi_processing", "--direct_num_workers", "2")


def _run(prefix: pathlib.Path, *extra: str, inputs: tuple[str, ...] = EXAMPLE_ARGS) -> dict[str, bytes]:
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", *inputs, "--output", str(prefix), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    files = {path.name[len(prefix.name):]: path.read_bytes()
             for path in sorted(prefix.parent.glob(f"{prefix.name}-*.jsonl"))}
    assert len(files) == 6, sorted(files)  # 3 pair shards + 3 dead-letter shards
    report = json.loads((prefix.parent / f"{prefix.name}-report.json").read_text(encoding="utf-8"))
    report.pop("elapsed_s", None)
    report.get("options", {}).pop("output", None)
    files["-report.json (without wall time and output path)"] = json.dumps(report, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiworker")
    return {
        "one worker": _run(root / "single" / "pairs"),
        "two workers": _run(root / "multi" / "pairs", *MULTI),
        "two workers again": _run(root / "again" / "pairs", *MULTI),
    }


def test_two_workers_write_the_same_bytes_as_one(runs):
    single, multi = runs["one worker"], runs["two workers"]
    assert sorted(single) == sorted(multi)
    for name in single:
        assert multi[name] == single[name], f"{name} differs between one and two workers"


def test_the_same_run_twice_writes_the_same_bytes(runs):
    assert runs["two workers again"] == runs["two workers"]


def test_the_runs_wrote_pairs_and_dead_letters(runs):
    files = runs["one worker"]
    pairs = b"".join(v for k, v in files.items() if k.startswith("-0"))
    rejects = b"".join(v for k, v in files.items() if k.startswith("-rejects-"))
    assert pairs.count(b"\n") > 10 and rejects.count(b"\n") > 0


def test_a_hot_query_run_apart_on_two_workers_writes_what_one_worker_writes(tmp_path):
    """1,200 records of one query: on two workers it runs apart from the grouping (1,000+ records)."""
    log = tmp_path / "hot.sql"
    statements = ["SELECT COUNT(*) FROM track;"] * 1_200 + ["SELECT name FROM genre WHERE genreid = 3;"] * 5
    statements += ["SELECT title FROM album WHERE albumid = 1;", "SELECT nope FROM track;"] * 3
    log.write_text("\n".join(statements) + "\n", encoding="utf-8")
    inputs = ("--sql_logs", str(log), "--database", "sqlite:///examples/chinook.sqlite", "--num_shards", "3")
    single = _run(tmp_path / "single" / "pairs", inputs=inputs)
    multi = _run(tmp_path / "multi" / "pairs", *MULTI, inputs=inputs)
    assert multi == single
    pairs = [json.loads(line) for name, data in single.items() if name.startswith("-0")
             for line in data.decode().splitlines()]
    hot = [pair for pair in pairs if "count(*)" in pair["normalized_sql"].lower()]
    assert len(hot) == 1 and hot[0]["frequency"] == 1_200 and hot[0]["execution"]["status"] == "ok"
