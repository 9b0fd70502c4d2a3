"""Run the real job in-process (``pipeline.main.main``) and read back everything it wrote.

Shared by the reliability and security tests (hostile inputs, prompt injection,
secrets, accounting): they judge the job by its outputs — pairs, dead letters,
the report and the exit status — as a user would.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
from typing import Any, NamedTuple, Sequence

from pipeline.main import main


class JobOutput(NamedTuple):
    """What one run left behind."""

    status: int
    pairs: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    report: dict[str, Any]
    files: list[pathlib.Path]  # every file the run wrote under the output prefix

    def dead_by_origin(self) -> dict[str, set[tuple[str, str]]]:
        """``{basename-of-origin: {(stage, reason), ...}}`` (origins keep their ``:line`` / ``#index``)."""
        found: dict[str, set[tuple[str, str]]] = {}
        for dead in self.dead:
            origin = os.path.basename(dead["origin"] or "")
            found.setdefault(origin, set()).add((dead["stage"], dead["reason"]))
        return found

    def normalized(self) -> set[str]:
        """The normalized SQL of every written pair."""
        return {pair["normalized_sql"] for pair in self.pairs}


def _lines(pattern: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def run_job(args: Sequence[str], output: pathlib.Path) -> JobOutput:
    """``sqlpairs run ARGS --output OUTPUT`` in this process; outputs read back (empty when absent)."""
    status = main(["run", *map(str, args), "--output", str(output)])
    report_path = pathlib.Path(f"{output}-report.json")
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else {}
    files = sorted(pathlib.Path(p) for p in glob.glob(f"{output}*") if os.path.isfile(p))
    return JobOutput(
        status=status,
        pairs=_lines(f"{output}-[0-9]*-of-*.jsonl"),
        dead=_lines(f"{output}-rejects-*-of-*.jsonl"),
        report=report,
        files=files,
    )


def assert_accounts_for_everything(job: JobOutput) -> None:
    """The run finished, its report balances, and the files hold what the report counts."""
    assert job.status == 0, job.status
    accounting = job.report["accounting"]
    assert job.report["ok"] and accounting["problems"] == [], accounting
    assert accounting["pairs_written"] == len(job.pairs)
    assert accounting["dead_letters"] == len(job.dead)
    assert accounting["records_read"] + accounting.get("records_added", 0) == (
        accounting["pairs_written"] + accounting["dead_letters"] + accounting["merged_duplicates"]
    )
    for row in job.report["stages"]:
        assert row["in"] + row.get("added", 0) == row["out"] + row["rejected"] + row.get("merged", 0), row
    for dead in job.dead:
        assert dead["stage"] and dead["reason"] and " " not in dead["reason"], dead
        assert dead["origin"], dead
