"""The accounting invariant: records read = pairs written + dead letters + merged duplicates.

A stage that silently loses a record must fail the run loudly: inside the pipeline
(``transforms.publish.report`` raises ``AccountingError`` carrying the per-stage table) and on the
command line (one error message with the table, exit status 1, no traceback). A stage
that legitimately outputs nothing (every record rejected) must not.

Faults are injected by patching a stage's DoFn so it drops the records whose SQL reads
the ``Genre`` table (FnApiRunner runs in this process, so the patched class is what runs).
"""

from __future__ import annotations

import json
import logging

import apache_beam as beam
import pytest

from pipeline.graph import build
from pipeline.arguments import options_parser
from pipeline.config import resolve
from pipeline.main import main
from tests.conftest import REPO, make_pipeline
from tests.hostile.job import assert_accounts_for_everything, run_job
from transforms.validate import classify, execute, filter as filter_stage
from transforms.validate import normalize
from transforms.select.dedup import DedupPairs
from transforms.publish.report import AccountingError

QUERIES = REPO / "examples" / "chinook_queries.sql"
DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"


def _dropping(process):
    """``process`` that silently swallows every record reading the Genre table."""

    def process_dropping_genre(self, record, *args, **kwargs):
        if "genre" in (record.normalized_sql or record.sql).lower():
            return iter(())
        return process(self, record, *args, **kwargs)

    return process_dropping_genre


#: One early and one late stage (the command-line test drops in normalize, another in execute).
FAULTS = {
    "classify": (classify._ClassifyFn, "process"),
    "filter": (filter_stage._FilterFn, "process"),
}


def _config(tmp_path, *extra):
    values, _ = options_parser("test").parse_known_args(
        ["--sql_logs", str(QUERIES), "--output", str(tmp_path / "out"), *extra])
    return resolve(values)


@pytest.mark.parametrize("stage", sorted(FAULTS))
def test_a_stage_that_drops_records_fails_the_pipeline_with_the_stage_table(stage, tmp_path, monkeypatch):
    cls, name = FAULTS[stage]
    monkeypatch.setattr(cls, name, _dropping(getattr(cls, name)))
    with pytest.raises(AccountingError) as failure:
        with make_pipeline() as p:
            build(p, _config(tmp_path))
    message = str(failure.value)
    assert "accounting check failed" in message
    assert f"{stage}: in " in message  # the stage that lost them is named
    assert "stage" in message and "rejected" in message and "merged" in message  # the table's header
    report = json.loads((tmp_path / "out-report.json").read_text())
    assert report["ok"] is False and report["accounting"]["problems"]


def test_records_lost_while_executing_are_caught_too(tmp_path, monkeypatch):
    original = execute._ExecuteGroupsFn._emit

    def emit_dropping_genre(self, key, outcome, records):
        for output in original(self, key, outcome, records):
            record = getattr(output, "value", output)
            if "genre" not in record.normalized_sql.lower():
                yield output

    monkeypatch.setattr(execute._ExecuteGroupsFn, "_emit", emit_dropping_genre)
    with pytest.raises(AccountingError, match=r"execute: in \d+"):
        with make_pipeline() as p:
            build(p, _config(tmp_path, "--database", DATABASE, "--timeout_s", "1"))


def test_the_command_line_reports_the_failure_as_one_message_with_exit_1(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setattr(normalize._NormalizeFn, "process", _dropping(normalize._NormalizeFn.process))
    with caplog.at_level(logging.ERROR):
        status = main(["run", "--sql_logs", str(QUERIES), "--output", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("sqlpairs: error: accounting check failed: normalize: in ")
    assert "Traceback" not in err and "while running" not in err
    table = err.splitlines()[1:]
    assert table[0].split()[:5] == ["stage", "in", "out", "rejected", "merged"]
    assert any(line.split()[0] == "normalize" for line in table)
    assert not [r for r in caplog.records if "accounting check failed" in r.getMessage()]  # said once, by us


def test_a_stage_that_rejects_everything_still_balances(tmp_path):
    only_writes = tmp_path / "writes.sql"
    only_writes.write_text("DROP TABLE Genre;\nDELETE FROM Track;\nUPDATE Invoice SET Total = 0;\n")
    job = run_job(["--sql_logs", only_writes], tmp_path / "out")
    assert_accounts_for_everything(job)
    assert job.pairs == [] and len(job.dead) == 3
    normalize_row = next(row for row in job.report["stages"] if row["stage"] == "normalize")
    assert (normalize_row["in"], normalize_row["out"], normalize_row["rejected"]) == (3, 0, 3)


def test_records_lost_inside_dedup_are_caught(tmp_path, monkeypatch):
    original = DedupPairs.expand

    def expand_dropping_genre(self, records):
        return original(self, records) | "LoseGenre" >> beam.Filter(lambda r: "genre" not in r.normalized_sql)

    monkeypatch.setattr(DedupPairs, "expand", expand_dropping_genre)
    with pytest.raises(AccountingError):
        with make_pipeline() as p:
            build(p, _config(tmp_path))
