"""Round-trip consistency: a model answers each question blind; only pairs whose results match stay."""

from __future__ import annotations

import apache_beam as beam
import pytest
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import FakeLlmServer
from tests.fakes.synthesis_fake import CannedModel, chinook_settings, collect
from tests.stages.generate.test_evolve import validated

from adapters.db import open_executor
from transforms.core.errors import UserError
from transforms.generate.consistency import RoundTripConsistency, judge
from pipeline.settings.llm import consistency_llm_settings

CHINOOK = REPO / "examples" / "chinook.sqlite"
Q_COUNT = "How many invoices were billed to Germany?"
Q_TITLES = "List the titles of albums by AC/DC."
Q_LONG = "What are the five longest tracks?"
PAIRS = {
    Q_COUNT: "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'",
    Q_TITLES: "SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'",
    Q_LONG: "SELECT Name FROM Track ORDER BY Milliseconds DESC LIMIT 5",
}


@pytest.fixture
def executor():
    executor = open_executor(f"sqlite:///{CHINOOK}", timeout_s=5.0, max_rows=1000)
    yield executor
    executor.close()


# -- the verdict (pure, against the database) --------------------------------------------------


def test_equivalent_queries_written_differently_match(executor):
    blind = "SELECT Title FROM Album WHERE ArtistId = (SELECT ArtistId FROM Artist WHERE Name = 'AC/DC')"
    assert judge(executor, PAIRS[Q_TITLES], blind, "sqlite").verdict == "match"
    swapped = "SELECT COUNT(InvoiceId) FROM Invoice WHERE BillingCountry = 'Germany'"
    assert judge(executor, PAIRS[Q_COUNT], swapped, "sqlite").verdict == "match"


def test_a_different_answer_is_a_mismatch(executor):
    verdict = judge(executor, PAIRS[Q_COUNT], "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'France'", "sqlite")
    assert (verdict.verdict, verdict.reason) == ("mismatch", "mismatch")


def test_row_order_counts_only_when_the_pairs_sql_orders(executor):
    reversed_order = "SELECT Name FROM (SELECT Name, Milliseconds FROM Track ORDER BY Milliseconds DESC LIMIT 5) " \
                     "ORDER BY Milliseconds ASC"
    assert judge(executor, PAIRS[Q_LONG], reversed_order, "sqlite").verdict == "mismatch"
    unordered_gold = "SELECT Name FROM Artist WHERE ArtistId IN (1, 2)"
    assert judge(executor, unordered_gold, "SELECT Name FROM Artist WHERE ArtistId IN (2, 1) ORDER BY Name DESC",
                 "sqlite").verdict == "match"


def test_the_blind_sql_is_refused_unless_it_is_one_read_only_query(executor):
    for blind in ("DELETE FROM Invoice", "SELECT 1; DROP TABLE Invoice", "SELEC nonsense"):
        verdict = judge(executor, PAIRS[Q_COUNT], blind, "sqlite")
        assert (verdict.verdict, verdict.reason) == ("error", "model_sql_error"), blind
    failing = judge(executor, PAIRS[Q_COUNT], "SELECT Nope FROM Invoice", "sqlite")
    assert failing.reason == "model_sql_error" and "no such column" in failing.detail


# -- the transform -------------------------------------------------------------------------------


def _check(model, records):
    with FakeLlmServer(model) as server:
        settings = chinook_settings(server.url, consistency=True)
        pipeline = make_pipeline()
        pairs = pipeline | "Pairs" >> beam.Create(records)
        taught = pipeline | "Teachings" >> beam.Create([])
        out = (pairs, taught) | RoundTripConsistency(settings)
        found = collect(pipeline, records=out.records, dead=out.dead)
    return found, server


def test_only_pairs_whose_blind_sql_gives_the_same_rows_are_kept_and_the_verdict_is_recorded():
    model = CannedModel(known={Q_COUNT: "SELECT COUNT(*) FROM Invoice WHERE BillingCountry='Germany'",
                               Q_TITLES: "SELECT Title FROM Album WHERE ArtistId = 1"},
                        wrong={Q_LONG: "SELECT Name FROM Track ORDER BY Milliseconds ASC LIMIT 5"})
    out, server = _check(model, [validated(q, s) for q, s in PAIRS.items()])
    kept = {r.question: r for r in out["records"]}
    assert set(kept) == {Q_COUNT, Q_TITLES}
    assert all(r.extra["consistency"] == "match" and r.extra["consistency_sql"] for r in kept.values())
    assert kept[Q_COUNT].extra["consistency_model"] == "openai:gpt-4o-mini"
    [letter] = out["dead"]
    assert (letter.stage, letter.reason, letter.record.question) == ("consistency", "mismatch", Q_LONG)
    assert letter.record.extra["consistency"] == "mismatch" and "ASC" in letter.record.extra["consistency_sql"]


def test_the_model_never_sees_the_pairs_sql():
    _, server = _check(CannedModel(known=PAIRS), [validated(q, s) for q, s in PAIRS.items()])
    for call in server.calls:
        for sql in PAIRS.values():
            assert sql not in call.prompt and "BillingCountry = 'Germany'" not in call.prompt
    assert any("Album(AlbumId INTEGER primary key" in c.prompt for c in server.calls)


def test_a_failed_request_drops_the_pair_with_the_reason():
    from tests.fakes.llm_fake_server import Action

    out, _ = _check(lambda call: Action(kind="status", status=400, text="bad request"),
                    [validated(Q_COUNT, PAIRS[Q_COUNT])])
    [letter] = out["dead"]
    assert letter.reason == "request_failed" and letter.record.extra["consistency"] == "error"


def test_the_consistency_model_falls_back_to_the_llm_options():
    from argparse import Namespace

    from adapters.llm import LlmSettings

    llm = LlmSettings(backend="openai", model="big", endpoint="http://a/v1", api_key_env="KEY", temperature=0.7)
    same = consistency_llm_settings(Namespace(consistency_llm=None, consistency_llm_model=None,
                                              consistency_llm_endpoint=None, consistency_llm_api_key_env=None), llm)
    assert (same.backend, same.model, same.endpoint, same.api_key_env, same.temperature) == (
        "openai", "big", "http://a/v1", "KEY", 0.0)
    other = consistency_llm_settings(Namespace(consistency_llm="gemini", consistency_llm_model=None,
                                               consistency_llm_endpoint=None, consistency_llm_api_key_env=None), llm)
    assert (other.backend, other.model, other.endpoint, other.api_key_env) == ("gemini", None, None, None)


def test_consistency_with_the_rules_writer_and_no_model_is_a_user_error(tmp_path):
    from tests.stages.generate.test_synthesis import _resolve

    with pytest.raises(UserError, match="--consistency needs a model"):
        _resolve("--output", str(tmp_path / "o"), "--seed_pairs", str(REPO / "examples" / "seed_pairs.jsonl"),
                 "--database", f"sqlite:///{CHINOOK}", "--consistency")
