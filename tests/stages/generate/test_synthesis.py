"""Personas, teachings and SchemaSynthesizer against a canned OpenAI-compatible model, over Chinook;
and the whole generation run end to end (personas → synthesis → depth → breadth → consistency → dedup)."""

from __future__ import annotations

import collections
import glob
import json

import apache_beam as beam
import pytest
import sqlglot
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import FakeLlmServer
from tests.fakes.synthesis_fake import PERSONAS, CannedModel, chinook_settings, collect

from transforms.core.errors import UserError
from transforms.core.record import new_record
from transforms.sql.guardrails import invented_names, question_rejection
from transforms.generate.personas import MakePersonas, Persona, load_personas_file, parse_persona
from transforms.generate.synthesize import CURRICULUM, LEVELS, SynthesizeFromSchema, curriculum
from transforms.generate.teachings import (
    MakeTeachings,
    Teachings,
    load_teachings_file,
    mine_patterns,
    render,
    rule_teachings,
)

CHINOOK = REPO / "examples" / "chinook.sqlite"
TWO_PERSONAS = (("*", Persona("Sales analyst", "Tracks revenue.", ("formal", "concise"))),
                ("*", Persona("Music curator", "Builds playlists.", ("colloquial",))))


# -- the curriculum and the guardrails (pure) ---------------------------------------------------


def test_the_curriculum_asks_for_every_concept_at_every_level_it_lists():
    cells = curriculum()
    assert {concept for _, concept in cells} == set(CURRICULUM)
    assert {level for level, _ in cells} == set(LEVELS)
    for concept, (_, levels) in CURRICULUM.items():
        assert sorted(level for level, c in cells if c == concept) == sorted(levels)
    assert ("simple", "window functions") not in cells and ("highly complex", "window functions") in cells


def test_questions_naming_columns_the_schema_lacks_are_rejected():
    names = frozenset({"customer", "country", "billingcountry"})
    assert invented_names("Revenue per BillingCountry and customer_churn_rate?", names) == ["customer_churn_rate"]
    assert question_rejection("What is the customer_churn_rate?", "SELECT 1", names)[0] == "invented_schema_name"
    assert question_rejection("Which customers live in Brazil?", "SELECT 1", names) is None
    assert question_rejection("SELECT Name FROM Artist", "SELECT Name FROM Artist", names)[0] == "question_contains_sql"


# -- personas ----------------------------------------------------------------------------------


def test_a_persona_needs_one_to_three_of_the_nine_styles():
    assert parse_persona({"role": "Analyst", "perspective": "p", "styles": ["formal"]}).styles == ("formal",)
    for styles in ([], ["formal", "vague", "concise", "colloquial"], ["lyrical"]):
        with pytest.raises(ValueError):
            parse_persona({"role": "Analyst", "perspective": "p", "styles": styles})


def test_a_personas_file_is_read_with_per_database_entries(tmp_path):
    path = tmp_path / "personas.json"
    path.write_text(json.dumps({"personas": [dict(PERSONAS[0]), dict(PERSONAS[1], db_id="chinook")]}))
    found = load_personas_file(str(path))
    assert [key for key, _ in found] == ["*", "chinook"]
    path.write_text("[]")
    with pytest.raises(ValueError, match="non-empty"):
        load_personas_file(str(path))


def test_personas_are_generated_from_the_schema_and_written_for_editing(tmp_path):
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, personas=2, output=str(tmp_path / "out"))
        pipeline = make_pipeline()
        targets = pipeline | beam.Create(list(settings.targets))
        made = targets | MakePersonas(settings)
        out = collect(pipeline, personas=made.personas, notes=made.notes)
    assert sorted(p.role for _, p in out["personas"]) == ["Music curator", "Sales analyst"]
    assert "Album(AlbumId INTEGER primary key" in server.calls[0].prompt  # the schema is in the prompt
    assert "note:personas:invalid_persona" in out["notes"]  # the one with an unknown style is dropped, visibly
    written = load_personas_file(str(tmp_path / "out-personas.json"))  # the file reads back as --personas_file
    assert sorted(p.role for _, p in written) == ["Music curator", "Sales analyst"]


# -- teachings ---------------------------------------------------------------------------------


def test_pattern_mining_resolves_aliases_to_tables():
    tree = sqlglot.parse_one("SELECT c.Country, COUNT(*) FROM Customer c JOIN Invoice i ON i.CustomerId = c.CustomerId "
                             "WHERE i.Total > 5 GROUP BY c.Country", read="sqlite")
    assert mine_patterns(tree) == ["aggregate COUNT(*)", "filter Invoice.Total", "group Customer.Country",
                                   "join Customer.CustomerId = Invoice.CustomerId"]


def test_rule_teachings_explain_identifiers_and_join_paths():
    from transforms.kit.catalog import Catalog
    from transforms.sql.table_schema import Column, Table

    catalog = Catalog("sqlite", (Table("InvoiceLine", (Column("InvoiceId", references="Invoice.InvoiceId"),
                                                       Column("UnitPrice"))),))
    taught = rule_teachings(catalog, [("filter Invoice.Total", 7)])
    assert ("unit price", "InvoiceLine.UnitPrice") in taught.glossary
    assert any("join InvoiceLine to Invoice" in hint for hint in taught.hints)
    assert "Users' queries often filter on Invoice.Total (7 logged queries)." in taught.hints


def test_teachings_in_a_prompt_keep_only_what_concerns_its_tables():
    from transforms.sql.table_schema import Table

    taught = Teachings((("revenue", "SUM(Invoice.Total)"), ("song", "a row of Track")), ("Use Track.Milliseconds",), ())
    text = render(taught, [Table("Track")])
    assert "song: a row of Track" in text and "Use Track.Milliseconds" in text and "revenue" not in text


def test_teachings_come_from_schema_logs_and_model_and_are_written_for_editing(tmp_path):
    logged = [new_record("SELECT BillingCountry, SUM(Total) FROM Invoice GROUP BY BillingCountry", db_id=None)] * 3
    with FakeLlmServer(CannedModel()) as server:
        settings = chinook_settings(server.url, output=str(tmp_path / "out"))
        pipeline = make_pipeline()
        targets = pipeline | "Targets" >> beam.Create(list(settings.targets))
        records = pipeline | "Logged" >> beam.Create(logged)
        made = (targets, records) | MakeTeachings(settings)
        out = collect(pipeline, teachings=made.teachings)
    [(key, taught)] = out["teachings"]
    assert key == "" and taught.glossary[0] == ("revenue", "SUM(Invoice.Total), or SUM(InvoiceLine.UnitPrice * "
                                                          "InvoiceLine.Quantity)")
    assert "Users' queries often group by Invoice.BillingCountry (3 logged queries)." in taught.hints
    assert "aggregate SUM(Invoice.Total) (3 queries)" in server.calls[0].prompt  # mined patterns reach the model
    [(file_key, from_file)] = load_teachings_file(str(tmp_path / "out-teachings.json"))
    assert file_key == "" and from_file == taught


# -- schema synthesis ----------------------------------------------------------------------------


def _synthesize(server, tmp_path=None, teachings=(), **overrides):
    settings = chinook_settings(server.url, **dict(dict(synthesize=1), **overrides))
    pipeline = make_pipeline()
    targets = pipeline | "Targets" >> beam.Create(list(settings.targets))
    personas = pipeline | "Personas" >> beam.Create(list(TWO_PERSONAS))
    taught = pipeline | "Teachings" >> beam.Create(list(teachings))
    out = (targets, personas, taught) | SynthesizeFromSchema(settings)
    return collect(pipeline, records=out.records, dead=out.dead, notes=out.notes)


def test_every_requested_pair_is_a_record_or_a_dead_letter_and_every_record_runs():
    with FakeLlmServer(CannedModel()) as server:
        out = _synthesize(server, synthesize=2)
    records, dead, notes = out["records"], out["dead"], out["notes"]
    created = 2 * len(TWO_PERSONAS) * len(curriculum())
    assert notes.count("added:synthesize") == created == len(records) + len(dead)
    assert {d.stage for d in dead} == {"synthesize"}
    reasons = collections.Counter(d.reason for d in dead)
    # one canned pair for most concepts: the second asked for is missing, and says so
    assert reasons["missing_pair"] > 0 and reasons["question_contains_sql"] > 0 and reasons["invented_schema_name"] > 0
    import sqlite3

    connection = sqlite3.connect(f"file:{CHINOOK}?mode=ro", uri=True)
    for record in records:
        connection.execute(record.sql).fetchall()  # every synthesized SQL runs
        assert record.source == "schema" and record.question_source == "llm" and record.persona
        assert record.extra["level"] in LEVELS and record.extra["concept"] in CURRICULUM
        assert record.dialect == "sqlite" and record.execution is None  # executed again by the main chain


def test_failing_sql_is_repaired_with_the_database_error_fed_back():
    with FakeLlmServer(CannedModel()) as server:
        out = _synthesize(server, levels=("simple", "moderate", "complex"), concepts=("date functions", "joins"))
    repaired = {r.extra["concept"]: r for r in out["records"] if r.extra.get("repairs") == "1"}
    assert "strftime('%Y', InvoiceDate)" in repaired["date functions"].sql
    assert "ar.Name" in repaired["joins"].sql
    repair_prompts = [c.prompt for c in server.calls if "running it on the database failed" in c.prompt]
    assert any("no such function: YEAR" in p for p in repair_prompts)
    assert any("no such column: ar.artistname" in p.lower() for p in repair_prompts)


def test_unsafe_sql_is_refused_before_it_runs_and_repaired():
    with FakeLlmServer(CannedModel()) as server:
        out = _synthesize(server, concepts=("set operations",))
    assert out["records"] and all("UNION" in r.sql and "DROP" not in r.sql for r in out["records"])
    prompts = [c.prompt for c in server.calls if "running it on the database failed" in c.prompt]
    assert prompts and all("unsafe:" in p for p in prompts)


def test_sql_that_stays_broken_becomes_a_dead_letter_with_the_last_error():
    model = CannedModel()
    model.fixes = {}  # this model cannot fix anything
    with FakeLlmServer(model) as server:
        out = _synthesize(server, concepts=("date functions",), levels=("simple",), max_repairs=2)
    [letter, *_] = out["dead"]
    assert letter.reason == "sql_error" and "after 2 repair attempts" in letter.detail
    assert "YEAR" in letter.detail and not out["records"]


def test_ids_are_distinct_and_stable_across_runs():
    runs = []
    for _ in range(2):
        with FakeLlmServer(CannedModel()) as server:
            out = _synthesize(server, levels=("simple",))
        runs.append(sorted(r.id for r in out["records"]) + sorted(d.record.id for d in out["dead"]))
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == len(runs[0])


def test_teachings_and_personas_reach_the_synthesis_prompt():
    taught = (("*", Teachings((("song", "a row of Track"),), ("Track.Milliseconds is in ms.",), ("No YEAR().",))),)
    with FakeLlmServer(CannedModel()) as server:
        _synthesize(server, teachings=taught, levels=("simple",), concepts=("filtering",))
    prompts = [c.prompt for c in server.calls if "question/SQL pairs" in c.prompt]
    assert len(prompts) == 2  # one per persona
    assert all("- song: a row of Track" in p and "- No YEAR()." in p for p in prompts)
    assert any("Sales analyst (Tracks revenue.)" in p for p in prompts)
    assert any("'AC/DC'" in p for p in prompts)  # sample values from the database as hints


# -- options -------------------------------------------------------------------------------------


def _resolve(*args):
    from pipeline.arguments import options_parser
    from pipeline.config import resolve

    values, _ = options_parser("sqlpairs run").parse_known_args(list(args))
    return resolve(values)


def test_generators_refuse_to_run_without_a_model_or_a_database(tmp_path):
    base = ["--output", str(tmp_path / "o"), "--database", f"sqlite:///{CHINOOK}"]
    with pytest.raises(UserError, match="--synthesize_from_schema needs a model .*--llm gemini|openai"):
        _resolve(*base, "--synthesize_from_schema", "1")
    with pytest.raises(UserError, match="--breadth .*--dedup exact"):
        _resolve(*base, "--seed_pairs", str(REPO / "examples" / "seed_pairs.jsonl"), "--breadth", "2",
                 "--llm", "openai", "--llm_endpoint", "http://127.0.0.1:9")
    with pytest.raises(UserError, match="executes every new SQL"):
        _resolve("--output", str(tmp_path / "o"), "--seed_pairs", str(REPO / "examples" / "seed_pairs.jsonl"),
                 "--depth", "1", "--llm", "openai", "--llm_endpoint", "http://127.0.0.1:9")
    config = _resolve(*base, "--synthesize_from_schema", "2", "--llm", "openai", "--llm_endpoint", "http://x:1",
                      "--consistency", "--consistency_llm_model", "small")
    assert config.inputs == () and config.generation.synthesize == 2
    assert config.generation.consistency_llm.model == "small" and config.generation.consistency_llm.temperature == 0


# -- end to end ----------------------------------------------------------------------------------

SEEDS = REPO / "examples" / "seed_pairs.jsonl"


def run_job(tmp_path, server_url, *extra, tweak=None, seeds=SEEDS):
    """resolve() the CLI options, optionally adjust the config, build, run; returns (report, pairs, dead)."""
    from pipeline.graph import build

    args = ["--seed_pairs", str(seeds), "--database", f"sqlite:///{CHINOOK}", "--llm", "openai",
            "--llm_endpoint", server_url, "--llm_retries", "1", "--llm_backoff_s", "0.01", "--dedup", "exact",
            "--output", str(tmp_path / "out"), *extra]
    config = _resolve(*args)
    if tweak is not None:
        config = config._replace(generation=tweak(config.generation))
    pipeline = beam.Pipeline(runner="FnApiRunner")
    build(pipeline, config)
    pipeline.run().wait_until_finish()
    report = json.loads((tmp_path / "out-report.json").read_text())
    pairs = [json.loads(line) for path in sorted(glob.glob(str(tmp_path / "out-0*.jsonl"))) for line in open(path)]
    dead = [json.loads(line) for path in sorted(glob.glob(str(tmp_path / "out-rejects-*.jsonl"))) for line in open(path)]
    return report, pairs, dead


E2E = ["--personas", "2", "--synthesize_from_schema", "1", "--depth", "1", "--breadth", "2", "--consistency",
       "--max_repairs", "1"]
SEED_SQL = {"How many artists are there?": "SELECT COUNT(*) FROM Artist",
            "List the titles of albums by AC/DC.": "SELECT al.Title FROM Album al JOIN Artist a ON "
                                                   "a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'",
            "Which employees report to nobody?": "SELECT FirstName, LastName FROM Employee WHERE ReportsTo IS NULL"}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    model = CannedModel(known=SEED_SQL, wrong={"What is the average invoice total per country?": "SELECT Nope FROM Invoice"})
    with FakeLlmServer(model) as server:
        report, pairs, dead = run_job(tmp_path, server.url, *E2E)
    return tmp_path, model, report, pairs, dead


def test_e2e_accounts_for_every_record_created_by_the_generators(e2e):
    _, _, report, pairs, dead = e2e
    accounting = report["accounting"]
    assert report["ok"], accounting["problems"]
    assert accounting["records_read"] + accounting["records_added"] == (
        accounting["pairs_written"] + accounting["dead_letters"] + accounting["merged_duplicates"])
    steps = [row["stage"] for row in report["stages"]]
    assert steps[:3] == ["read", "synthesize", "normalize"] and steps.index("evolve") < steps.index("consistency")
    assert {row["stage"]: row.get("added", 0) for row in report["stages"]}["synthesize"] == 2 * len(curriculum())
    assert len(pairs) == accounting["pairs_written"] and len(dead) == accounting["dead_letters"]


def test_e2e_report_shows_accept_rates_per_level_and_per_technique(e2e):
    _, _, report, _, _ = e2e
    generated = report["generated"]
    assert set(generated["level"]) == set(LEVELS) and set(generated["concept"]) == set(CURRICULUM)
    for dimension in ("level", "concept", "evolution"):
        for name, row in generated[dimension].items():
            assert row["created"] == row["written"] + row["rejected"] + row["merged"], (dimension, name, row)
            assert row["accept_rate"] == round(row["written"] / row["created"], 4)
    evolution = generated["evolution"]
    assert {"add-aggregation", "add-filter", "add-join", "hypothetical"} <= set(evolution)
    assert evolution["add-join"]["rejections"] == {"evolve.invalid_reply": evolution["add-join"]["created"]}
    assert evolution["hypothetical"]["rejections"] == {"evolve.not_evolved": evolution["hypothetical"]["created"]}
    assert 0 < evolution["add-aggregation"]["accept_rate"] <= 1
    assert generated["notes"]["personas"] == {"generated": 2, "invalid_persona": 1}


def test_e2e_dead_letters_explain_every_rejection(e2e):
    _, _, _, _, dead = e2e
    known_stages = {"read", "synthesize", "parse", "safety", "execute", "filter", "evolve", "revalidate", "consistency"}
    for letter in dead:
        assert letter["stage"] in known_stages and letter["reason"] and letter["detail"], letter
    by = collections.Counter((d["stage"], d["reason"]) for d in dead)
    assert by[("consistency", "mismatch")] > 0 and by[("consistency", "model_sql_error")] == 1
    assert by[("synthesize", "question_contains_sql")] > 0 and by[("evolve", "not_evolved")] > 0
    mismatch = next(d for d in dead if d["reason"] == "mismatch")
    assert mismatch["record"]["extra"]["consistency"] == "mismatch" and mismatch["record"]["extra"]["consistency_sql"]


def test_e2e_pairs_carry_lineage_and_the_round_trip_verdict(e2e):
    _, _, _, pairs, _ = e2e
    by_source = collections.Counter(p["source"] for p in pairs)
    assert by_source["seed"] > 0 and by_source["schema"] > 0 and by_source["evolved"] > 0
    ids = {p["id"] for p in pairs}
    assert len(ids) == len(pairs)
    for pair in pairs:
        assert pair["extra"]["consistency"] == "match" and pair["extra"]["consistency_sql"]
        assert pair["execution"]["status"] == "ok"
        if pair["source"] == "evolved":
            assert pair["parent_id"] and pair["evolution"]
        if pair["source"] == "schema":
            assert pair["persona"] and pair["extra"]["level"] in LEVELS


def test_e2e_near_duplicate_paraphrases_are_merged(e2e):
    _, _, report, pairs, _ = e2e
    dedup = next(row for row in report["stages"] if row["stage"] == "dedup")
    assert dedup["merged"] > 0
    questions = collections.defaultdict(list)
    for pair in pairs:
        questions[pair["normalized_sql"]].append(pair["question"].lower())
    for texts in questions.values():  # "Could you tell me X?" and "Could you tell me X please?" never both stay
        assert not any(t.replace("?", " please?") in texts for t in texts if "could you tell me" in t)


def test_edited_teachings_passed_back_are_used_as_they_are(e2e, tmp_path):
    first_dir, _, _, _, _ = e2e
    data = json.loads((first_dir / "out-teachings.json").read_text())
    data["databases"][0]["hints"] = ["Prices are in US dollars."]
    edited = tmp_path / "teachings.json"
    edited.write_text(json.dumps(data))
    with FakeLlmServer(CannedModel(known=SEED_SQL)) as server:
        report, _, _ = run_job(tmp_path, server.url, "--depth", "1", "--depth_techniques", "add-aggregation",
                               "--teachings", str(edited))
    assert report["ok"]
    assert not any("Write domain notes" in c.prompt for c in server.calls)
    depth_prompts = [c.prompt for c in server.calls if "into a harder pair" in c.prompt]
    assert depth_prompts and all("- Prices are in US dollars." in p for p in depth_prompts)
    assert not (tmp_path / "out-teachings.json").exists()


# -- a real small model ----------------------------------------------------------------------------

from tests.integration.test_llm_local_model import llama_server  # noqa: E402,F401 - the module-scoped SmolLM2 server (skips without it)


def test_smollm2_runs_the_whole_generation_chain_and_its_low_accept_rates_show(llama_server, tmp_path, capsys):
    """SmolLM2-135M writes poor SQL and poorer JSON, slowly (~10 tokens/s on two cores): one persona (from a
    file), one curriculum cell, one seed pair. What matters is that every request ends as a pair or an explained
    dead letter, the accounting holds, and the (low) accept rates are in the report for everyone to see."""
    from transforms.publish.report import format_generated

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": "How many artists are there?", "sql": "SELECT COUNT(*) FROM Artist"}))
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps([PERSONAS[0]]))
    teachings = tmp_path / "teachings.json"
    teachings.write_text(json.dumps({"hints": ["Artist.Name holds the artist's name."]}))
    report, pairs, dead = run_job(
        tmp_path, f"{llama_server}/v1", "--personas_file", str(personas), "--teachings", str(teachings),
        "--synthesize_from_schema", "1", "--depth", "1", "--depth_techniques", "add-filter", "--breadth", "1",
        "--consistency", "--max_repairs", "1", "--llm_max_in_flight", "2", "--llm_timeout_s", "300",
        "--llm_temperature", "0.2", seeds=seeds,
        tweak=lambda g: g._replace(levels=("simple",), concepts=("aggregation",), max_prompt_tables=2,
                                   max_output_tokens=160))
    assert report["ok"], report["accounting"]["problems"]
    generated = report["generated"]
    assert generated["level"]["simple"]["created"] == 1
    for dimension in ("level", "evolution"):
        for row in generated.get(dimension, {}).values():
            assert row["created"] == row["written"] + row["rejected"] + row["merged"]
    for letter in dead:
        assert letter["stage"] and letter["reason"] and letter["detail"], letter
    assert all(p["extra"].get("consistency") == "match" for p in pairs)
    with capsys.disabled():
        print("\nSmolLM2-135M accept rates:\n" + format_generated(report))
