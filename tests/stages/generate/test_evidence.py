"""--evidence: BIRD-style notes for questions with domain terms, grounded, stored and rendered into every prompt."""

from __future__ import annotations

import json
import re
from argparse import Namespace

import apache_beam as beam
import pytest
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer
from tests.stages.generate.test_evolve import validated

from adapters.llm import LlmSettings
from pipeline.settings.evidence import evidence_settings
from transforms.core.errors import UserError
from transforms.core.record import record_from_json, record_to_json
from transforms.generate.evidence import EvidenceSettings, WriteEvidence, clean_evidence, evidence_problem, grounding_terms
from transforms.publish.exports import training_example
from transforms.generate.teachings import Teachings
from transforms.sql.trees import tree_for

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
Q_LONG = "How many long tracks are there?"
Q_PLAIN = "How many invoices have a billing country of Germany?"
Q_VAGUE = "How many loyal customers are there?"
Q_LEAK = "How many big invoices are there?"
PAIRS = {
    Q_LONG: "SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000",
    Q_PLAIN: "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'",
    Q_VAGUE: "SELECT COUNT(*) FROM Customer WHERE SupportRepId = 3",
    Q_LEAK: "SELECT COUNT(*) FROM Invoice WHERE Total > 10",
}
EVIDENCE_PROMPT = "Write the evidence this question needs"
REPLIES = {
    Q_LONG: "long tracks refers to Milliseconds > 300000",
    Q_PLAIN: "",
    Q_VAGUE: "loyal means they like us a lot",  # names nothing of the schema or the SQL
    Q_LEAK: "big invoices: SELECT COUNT(*) FROM Invoice WHERE Total > 10",
}


def writer(call) -> Action:
    assert EVIDENCE_PROMPT in call.prompt
    question = re.search(r"Question: (.*)\n", call.prompt).group(1)
    return Action(text=json.dumps({"evidence": REPLIES[question]}))


def settings(url: str) -> EvidenceSettings:
    llm = LlmSettings(backend="openai", endpoint=url, retries=1, backoff_s=0.01, backoff_max_s=0.05, timeout_s=10,
                      max_in_flight=4, temperature=0.0)
    return EvidenceSettings(llm=llm, database=DATABASE, database_settings={"timeout_s": 5.0, "max_rows": 100})


def run_evidence(answer, questions, teachings=()):
    with FakeLlmServer(answer) as server:
        pipeline = make_pipeline()
        pairs = pipeline | "Pairs" >> beam.Create([validated(q, PAIRS[q]) for q in questions])
        taught = pipeline | "Teachings" >> beam.Create(list(teachings))
        out = (pairs, taught) | WriteEvidence(settings(server.url))
        found = collect(pipeline, records=out.records, dead=out.dead, notes=out.notes)
    return found, server


# -- pure ---------------------------------------------------------------------------------------------


def test_replies_that_mean_none_needed_give_no_evidence():
    for none in ("", "  ", "None", "none.", "N/A", "No evidence needed."):
        assert clean_evidence(none) is None, none
    assert clean_evidence(" long tracks refers to\nMilliseconds > 300000 ") == "long tracks refers to Milliseconds > 300000"


def test_evidence_must_name_a_table_column_or_value_of_the_pair_and_never_write_a_query():
    from transforms.sql.table_schema import Column, Table

    tables = [Table("Track", (Column("TrackId", "INTEGER", True), Column("Milliseconds", "INTEGER", False)))]
    names, values = grounding_terms(tables, tree_for(PAIRS[Q_LONG], "sqlite"))
    assert {"track", "milliseconds"} <= names and "300000" in values
    assert evidence_problem("long refers to Milliseconds > 300000", names, values) is None
    assert evidence_problem("long means over 300000", names, values) is None  # the SQL's value
    assert evidence_problem("long means over 30000", names, values)[0] == "ungrounded"  # a value it does not use
    assert evidence_problem("long means longer than usual", names, values)[0] == "ungrounded"
    assert evidence_problem("select count(*) from track", names, values)[0] == "leaks_sql"


# -- the stage against a local server -------------------------------------------------------------------


def test_evidence_is_written_where_needed_none_where_not_and_unusable_evidence_is_a_dead_letter():
    out, server = run_evidence(writer, list(PAIRS))
    kept = {r.question: r for r in out["records"]}
    assert set(kept) == {Q_LONG, Q_PLAIN}
    assert kept[Q_LONG].evidence == "long tracks refers to Milliseconds > 300000"
    assert kept[Q_PLAIN].evidence is None
    dead = {d.record.question: d for d in out["dead"]}
    assert (dead[Q_VAGUE].stage, dead[Q_VAGUE].reason) == ("evidence", "ungrounded")
    assert dead[Q_LEAK].reason == "leaks_sql" and "SELECT COUNT(*)" in dead[Q_LEAK].detail
    assert len(server.calls) == len(PAIRS)  # one request per pair
    assert sorted(out["notes"]) == ["note:evidence:none", "note:evidence:written"]


def test_the_writer_sees_question_sql_schema_and_the_schemas_teachings_without_given_ones():
    _, server = run_evidence(writer, [Q_LONG])
    [call] = server.calls
    assert Q_LONG in call.prompt and "milliseconds > 300000" in call.prompt.lower()
    assert "Track(TrackId INTEGER primary key" in call.prompt
    assert "Domain notes:" in call.prompt and "- Track.AlbumId references Album.AlbumId" in call.prompt


def test_the_jobs_teachings_are_used_when_there_are_some():
    taught = Teachings(glossary=(("long track", "Track.Milliseconds > 300000"),))
    _, server = run_evidence(writer, [Q_LONG], teachings=[("", taught)])
    assert "- long track: Track.Milliseconds > 300000" in server.calls[0].prompt


def test_a_bad_reply_is_a_dead_letter():
    out, _ = run_evidence(lambda call: Action(text="I think it needs none."), [Q_LONG])
    assert [(d.stage, d.reason) for d in out["dead"]] == [("evidence", "bad_reply")] and out["records"] == []


# -- the record and the exports -------------------------------------------------------------------------


def test_evidence_round_trips_through_json_and_is_rendered_into_every_prompt():
    record = validated(Q_LONG, PAIRS[Q_LONG])._replace(evidence="long tracks refers to Milliseconds > 300000")
    assert record_from_json(record_to_json(record)).evidence == record.evidence
    example = training_example(record, "CREATE TABLE Track (Milliseconds INT);")
    assert "### Question\nHow many long tracks are there?\n\n### Evidence\nlong tracks refers to Milliseconds > 300000" \
           "\n\n### SQL\n" in example.prompt
    assert example.user == f"{Q_LONG}\n\nEvidence: long tracks refers to Milliseconds > 300000"


def test_a_pair_without_evidence_renders_no_evidence_field():
    for evidence in (None, ""):
        example = training_example(validated(Q_PLAIN, PAIRS[Q_PLAIN])._replace(evidence=evidence), "CREATE TABLE x;")
        assert "Evidence" not in example.prompt and "Evidence" not in example.user
        assert example.user == Q_PLAIN


# -- options -> settings --------------------------------------------------------------------------------


def _values(**given) -> Namespace:
    values = dict(evidence=True, llm="openai", llm_model=None, llm_endpoint="http://a/v1", llm_project=None,
                  llm_location=None, llm_api_key_env=None, llm_temperature=0.7, llm_max_in_flight=8, llm_rpm=None,
                  llm_retries=3, llm_timeout_s=30.0, llm_backoff_s=1.0, llm_cache=None, llm_price_in=0.0,
                  llm_price_out=0.0, timeout_s=5.0, max_rows=100, database_password_env=None, schema=None)
    values.update(given)
    return Namespace(**values)


def test_evidence_uses_the_llm_model_at_temperature_0():
    resolved = evidence_settings(_values(), database=DATABASE, dialect="sqlite")
    assert (resolved.llm.backend, resolved.llm.endpoint, resolved.llm.temperature) == ("openai", "http://a/v1", 0.0)
    assert evidence_settings(_values(evidence=False), database=None, dialect="sqlite") is None


@pytest.mark.parametrize("given, database, message", [
    (dict(), None, "give --database"),
    (dict(llm="rules"), DATABASE, "--evidence needs a model"),
])
def test_unworkable_evidence_options_are_user_errors(given, database, message):
    with pytest.raises(UserError, match=message):
        evidence_settings(_values(**given), database=database, dialect="sqlite")
