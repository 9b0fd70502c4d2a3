"""Real data from ../shared/data: Defog's SQLite questions on SQLite copies of their databases,
and Stack Exchange Data Explorer T-SQL queries parsed with --source_dialect tsql."""

import json
import logging

import pytest

from pipeline.main import main
from tests.fakes import defog_sqlite
from tests.conftest import require_shared_data


@pytest.fixture(scope="module")
def defog_run(tmp_path_factory):
    source = require_shared_data("defog")
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    databases = defog_sqlite.build_all(source, tmp_path_factory.mktemp("defog_sqlite"))
    spec = ",".join(f"{name}=sqlite:///{path}" for name, path in sorted(databases.items()))
    out = tmp_path_factory.mktemp("defog_out") / "defog"
    assert main(["run", "--seed_pairs", str(source / "questions_gen_sqlite.csv"), "--database", spec,
                 "--dedup", "none", "--output", str(out)]) == 0
    pairs = [json.loads(line) for line in open(f"{out}-00000-of-00001.jsonl")]
    dead = [json.loads(line) for line in open(f"{out}-rejects-00000-of-00001.jsonl")]
    return databases, pairs, dead, json.load(open(f"{out}-report.json"))


def test_every_defog_sqlite_query_on_a_converted_database_executes(defog_run):
    databases, pairs, dead, report = defog_run
    assert report["ok"]
    assert len(pairs) >= 320
    assert {p["execution"]["status"] for p in pairs} == {"ok"}
    assert {p["db_id"] for p in pairs} == set(databases)
    assert not [d for d in dead if d["reason"].startswith("execution_")]


def test_defog_queries_without_a_database_are_dead_letters_naming_it(defog_run):
    databases, _, dead, _ = defog_run
    missing = {d["record"]["db_id"] for d in dead if d["reason"] == "no_database"}
    assert missing and not missing & set(databases)


def test_defog_difficulty_spans_every_level(defog_run):
    assert set(defog_run[3]["difficulty"]) == {"easy", "medium", "hard", "extra"}


def test_stack_exchange_tsql_queries_parse(tmp_path):
    sede = require_shared_data("sede", "val.jsonl")
    out = tmp_path / "sede"
    assert main(["run", "--sql_logs", str(sede), "--sql_field", "QueryBody", "--question_field", "Title",
                 "--source_dialect", "tsql", "--dedup", "none", "--output", str(out)]) == 0
    report = json.load(open(f"{out}-report.json"))
    assert report["ok"]
    read = report["accounting"]["records_read"]
    normalize = next(s for s in report["stages"] if s["stage"] == "normalize")
    assert read == 857
    # Placeholders (##UserId##) and DECLARE headers keep part of SEDE out; each one is a
    # dead letter with its reason. The rate is reported in the README.
    assert normalize["out"] / normalize["in"] > 0.6
