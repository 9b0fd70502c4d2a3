"""DepthEvolver and BreadthEvolver on validated Chinook pairs, against a canned OpenAI-compatible model."""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys

import apache_beam as beam
import pytest
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import FakeLlmServer
from tests.fakes.synthesis_fake import CannedModel, chinook_settings, collect

from transforms.core.record import Execution, new_record
from transforms.generate.evolve import (
    DEPTH_TECHNIQUES,
    BreadthEvolver,
    DepthEvolver,
    EvolvePairs,
    breadth_styles_for,
    depth_techniques_for,
    parse_techniques,
)
from transforms.sql.guardrails import lost_values
from transforms.sql.normalize import normalize_sql
from transforms.core.vocab import STYLES

CHINOOK = REPO / "examples" / "chinook.sqlite"
PAIRS = [
    ("How many invoices were billed to Germany?", "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'"),
    ("Which tracks last longer than 300000 milliseconds?", "SELECT Name FROM Track WHERE Milliseconds > 300000"),
    ("List the titles of albums by AC/DC.", "SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId "
                                            "WHERE a.Name = 'AC/DC'"),
]


def validated(question: str, sql: str, persona=None):
    """A pair as it leaves FilterPairs: normalized, executed ok."""
    normalized = normalize_sql(sql, "sqlite", "sqlite")
    record = new_record(sql, question, source="seed", persona=persona)
    return record._replace(dialect="sqlite", normalized_sql=normalized.sql, sql_fingerprint=normalized.sql_fingerprint,
                           tables=normalized.tables, execution=Execution(status="ok", row_count=1))


def _evolve(transform, records, teachings=()):
    pipeline = make_pipeline()
    pcoll = pipeline | "Pairs" >> beam.Create(records)
    taught = pipeline | "Teachings" >> beam.Create(list(teachings))
    out = (pcoll, taught) | transform
    return collect(pipeline, records=out.records, dead=out.dead, notes=out.notes)


# -- choices (pure) ------------------------------------------------------------------------------


def test_techniques_are_parsed_and_unknown_ones_named():
    assert parse_techniques("all") == tuple(DEPTH_TECHNIQUES)
    with pytest.raises(ValueError, match="add-magic"):
        parse_techniques("add-filter,add-magic")


#: Pinned choices: they decide which pairs a run writes, so a change here changes every evolved output.
PINNED_DEPTH = {"p1": ["add-reasoning", "hypothetical"], "p2": ["add-join", "add-reasoning"]}
PINNED_BREADTH = {"p1": ["conversational", "formal"], "p2": ["conversational", "formal"]}
SPREAD_IDS = [f"p{i}" for i in range(300)]


def _choices(ids) -> dict[str, list]:
    techniques = tuple(DEPTH_TECHNIQUES)
    return {"depth": [depth_techniques_for(i, techniques, 2) for i in ids],
            "breadth": [breadth_styles_for(i, 2) for i in ids]}


def test_a_pairs_techniques_and_styles_are_spread_and_stable():
    techniques = tuple(DEPTH_TECHNIQUES)
    assert {i: depth_techniques_for(i, techniques, 2) for i in PINNED_DEPTH} == PINNED_DEPTH
    assert {i: breadth_styles_for(i, 2) for i in PINNED_BREADTH} == PINNED_BREADTH
    assert len(set(depth_techniques_for("p1", techniques, 7))) == 7
    assert len(set(breadth_styles_for("p1", 9))) == 9 and set(breadth_styles_for("p1", 9)) == set(STYLES)
    # spread: over many pairs every technique and every style is some pair's first, none is rare
    for firsts, names in (([depth_techniques_for(i, techniques, 1)[0] for i in SPREAD_IDS], techniques),
                          ([breadth_styles_for(i, 1)[0] for i in SPREAD_IDS], tuple(STYLES))):
        counts = collections.Counter(firsts)
        assert set(counts) == set(names)
        assert min(counts.values()) >= len(SPREAD_IDS) / len(names) / 3, counts


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_a_pairs_choices_are_the_same_in_another_process(hash_seed):
    """Workers are separate processes: a choice built on ``hash()`` (salted per process) would differ."""
    code = ("import json; from tests.stages.generate.test_evolve import _choices, SPREAD_IDS; "
            "print(json.dumps(_choices(SPREAD_IDS)))")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == _choices(SPREAD_IDS)


def test_a_paraphrase_may_not_drop_a_value_the_question_names():
    assert lost_values("Invoices billed to Germany over 5 dollars", "Invoices from Germany over five dollars",
                       ["Germany", "5"]) == ["5"]
    assert lost_values("How many tracks?", "Count the tracks", ["300000"]) == []  # never named: nothing to lose


# -- depth ---------------------------------------------------------------------------------------


def test_depth_writes_harder_pairs_whose_sql_runs_with_lineage():
    parents = [validated(q, s, persona="Sales analyst: plans promotions") for q, s in PAIRS]
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, depth=2, depth_techniques=("add-aggregation", "add-window", "add-cte"))
        out = _evolve(DepthEvolver(settings), parents)
    records, dead = out["records"], out["dead"]
    assert out["notes"].count("added:evolve") == 2 * len(parents) == len(records) + len(dead)
    assert dead == []
    connection = sqlite3.connect(f"file:{CHINOOK}?mode=ro", uri=True)
    parent_ids = {p.id: p for p in parents}
    for record in records:
        connection.execute(record.sql).fetchall()
        parent = parent_ids[record.parent_id]
        assert record.source == "evolved" and record.evolution in settings.depth_techniques
        assert record.persona == parent.persona and record.question != parent.question
        assert record.execution.status == "ok" and record.dialect == "sqlite"
    assert {r.evolution for r in records} <= {"add-aggregation", "add-window", "add-cte"}


def test_depth_rejections_say_which_technique_failed_and_why():
    parents = [validated(q, s) for q, s in PAIRS]
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, depth=3, depth_techniques=("add-join", "hypothetical", "add-reasoning"))
        out = _evolve(DepthEvolver(settings), parents)
    reasons = {(d.record.evolution, d.reason) for d in out["dead"]}
    assert reasons == {("add-join", "invalid_reply"), ("hypothetical", "not_evolved"),
                       ("add-reasoning", "invented_schema_name")}
    assert all(d.stage == "evolve" and d.record.parent_id for d in out["dead"])
    assert out["records"] == []


def test_depth_sql_that_fails_is_repaired_through_the_database_error():
    parents = [validated(q, s) for q, s in PAIRS]
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, depth=1, depth_techniques=("add-filter",), max_repairs=1)
        out = _evolve(DepthEvolver(settings), parents)
    assert len(out["records"]) == len(parents)
    assert all(r.extra["repairs"] == "1" and "LIMIT 3" in r.sql for r in out["records"])
    repairs = [c.prompt for c in server.calls if "running it on the database failed" in c.prompt]
    assert len(repairs) == len(parents) and all("nosuchcolumn" in p.lower() for p in repairs)


def test_pairs_that_did_not_run_are_not_evolved():
    failed = validated(*PAIRS[0])._replace(execution=Execution(status="error", error="boom"))
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, depth=1, depth_techniques=("add-aggregation",))
        out = _evolve(DepthEvolver(settings), [failed])
    assert server.calls == [] and out["records"] == [] and out["dead"] == []


# -- breadth -------------------------------------------------------------------------------------


def test_breadth_keeps_the_sql_and_spreads_styles():
    parents = [validated(q, s) for q, s in PAIRS]
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, breadth=4)
        out = _evolve(BreadthEvolver(settings), parents)
    records, dead = out["records"], out["dead"]
    assert out["notes"].count("added:evolve") == 4 * len(parents) == len(records) + len(dead)
    by_parent = {p.id: p for p in parents}
    for record in records:
        parent = by_parent[record.parent_id]
        assert record.sql == parent.normalized_sql and record.evolution in STYLES
        assert record.extra["question_style"] == record.evolution and record.question != parent.question
    for parent in parents:
        styles = [r.evolution for r in records + [d.record for d in dead] if r.parent_id == parent.id]
        assert sorted(styles) == sorted(breadth_styles_for(parent.id, 4))


def test_breadth_guardrails_reject_repeats_and_lost_values():
    parents = [validated(q, s) for q, s in PAIRS]
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, breadth=4)
        out = _evolve(BreadthEvolver(settings), parents)
    reasons = collections.Counter(d.reason for d in out["dead"])
    assert reasons["same_as_original"] == len(parents)  # each parent gets one echo of itself
    assert reasons["lost_value"] == 1  # "300000" became "several"
    lost = next(d for d in out["dead"] if d.reason == "lost_value")
    assert "drops 300000" in lost.detail


def test_breadth_on_depth_pairs_chains_lineage():
    parents = [validated(*PAIRS[0])]
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, depth=1, depth_techniques=("add-aggregation",), breadth=1)
        out = _evolve(EvolvePairs(settings), parents)
    deeper = [r for r in out["records"] if r.evolution == "add-aggregation"]
    wider = [r for r in out["records"] + [d.record for d in out["dead"]] if r.evolution in STYLES]
    assert len(deeper) == 1 and deeper[0].parent_id == parents[0].id
    assert {r.parent_id for r in wider} == {parents[0].id, deeper[0].id}  # paraphrases of the original and the child
