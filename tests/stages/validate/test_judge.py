"""--judge: a model scores each final pair 0-4; --judge_min turns pairs under the minimum into dead letters."""

from __future__ import annotations

import json
from argparse import Namespace

import apache_beam as beam
import pytest
from tests.fakes.beam_collect import collect
from tests.conftest import REPO, make_pipeline
from tests.fakes.llm_fake_server import Action, FakeLlmServer
from tests.stages.generate.test_evolve import validated

from adapters.llm import LlmSettings
from pipeline.settings.judge import judge_settings
from transforms.core.errors import UserError
from transforms.validate.judge import JudgePairs, JudgeSettings, Scores, judge_request, parse_scores

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
Q_GOOD = "How many invoices were billed to Germany?"
Q_BAD = "How many invoices are there?"  # its SQL filters on Germany: a condition the question never asks for
PAIRS = {
    Q_GOOD: "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'",
    Q_BAD: "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'France'",
}
JUDGE_PROMPT = "Grade this question/SQL pair"


def scores_reply(fluency: int, alignment: int, schema_use: int, reason: str = "") -> Action:
    return Action(text=json.dumps({"fluency": fluency, "alignment": alignment, "schema_use": schema_use,
                                   "reason": reason}))


def strict_judge(call) -> Action:
    """Scores 1 for alignment when the question does not ask for the SQL's filter value, else 4s."""
    assert JUDGE_PROMPT in call.prompt
    if f"Question: {Q_BAD}" in call.prompt:
        return scores_reply(4, 1, 4, "The SQL keeps only France, which the question does not ask for.")
    return scores_reply(4, 4, 4, "Faithful.")


def settings(url: str, min_score=None) -> JudgeSettings:
    llm = LlmSettings(backend="openai", endpoint=url, retries=1, backoff_s=0.01, backoff_max_s=0.05, timeout_s=10,
                      max_in_flight=4, temperature=0.0)
    return JudgeSettings(llm=llm, database=DATABASE, database_settings={"timeout_s": 5.0, "max_rows": 100},
                         min_score=min_score)


def run_judge(answer, records, min_score=None):
    with FakeLlmServer(answer) as server:
        pipeline = make_pipeline()
        out = pipeline | beam.Create(records) | JudgePairs(settings(server.url, min_score))
        found = collect(pipeline, records=out.records, dead=out.dead, notes=out.notes)
    return found, server


# -- pure ---------------------------------------------------------------------------------------


def test_scores_are_whole_numbers_from_0_to_4():
    assert parse_scores({"fluency": 4, "alignment": 0, "schema_use": 2}) == Scores(4, 0, 2)
    for bad in ({"fluency": 4, "alignment": 5, "schema_use": 2}, {"fluency": 4, "alignment": 2.5, "schema_use": 2},
                {"fluency": True, "alignment": 2, "schema_use": 2}, {"fluency": 4, "alignment": 2}, ["4"]):
        assert parse_scores(bad) is None, bad


def test_the_judge_sees_the_pair_and_its_schema_never_another_judges_scores():
    record = validated(Q_GOOD, PAIRS[Q_GOOD])._replace(extra={
        "judge": '{"alignment": 0, "fluency": 0, "schema_use": 0}', "judge_reason": "an earlier judge said no",
        "consistency": "match", "consistency_sql": "SELECT 42"})
    prompt = judge_request(record, "Invoice(InvoiceId INTEGER primary key, BillingCountry TEXT)").prompt
    assert Q_GOOD in prompt and "billingcountry = 'germany'" in prompt.lower() and "Invoice(InvoiceId" in prompt
    for seen in ("earlier judge", record.extra["judge"], "consistency", "SELECT 42"):
        assert seen not in prompt


# -- the stage against a local server ---------------------------------------------------------------


def test_a_score_of_1_under_judge_min_3_is_a_dead_letter_and_4s_pass_with_their_scores():
    out, server = run_judge(strict_judge, [validated(q, s) for q, s in PAIRS.items()], min_score=3)
    [kept] = out["records"]
    assert kept.question == Q_GOOD
    assert json.loads(kept.extra["judge"]) == {"alignment": 4, "fluency": 4, "schema_use": 4}
    assert kept.extra["judge_reason"] == "Faithful." and kept.extra["judge_model"] == "openai:gpt-4o-mini"
    [letter] = out["dead"]
    assert (letter.stage, letter.reason, letter.record.question) == ("judge", "below_min", Q_BAD)
    assert letter.detail.startswith("lowest score 1 < --judge_min 3: fluency 4, alignment 1, schema_use 4")
    assert "France" in letter.detail and json.loads(letter.record.extra["judge"])["alignment"] == 1
    assert len(server.calls) == 2  # one request per pair
    assert sorted(n for n in out["notes"] if n.startswith("note:judge:lowest:")) == [
        "note:judge:lowest:1", "note:judge:lowest:4"]


def test_without_judge_min_every_scored_pair_is_kept_with_its_scores():
    out, _ = run_judge(strict_judge, [validated(q, s) for q, s in PAIRS.items()])
    assert {r.question: json.loads(r.extra["judge"])["alignment"] for r in out["records"]} == {Q_GOOD: 4, Q_BAD: 1}
    assert out["dead"] == []


def test_an_unparseable_reply_is_a_bad_reply_dead_letter():
    out, server = run_judge(lambda call: Action(text="The pair looks fine to me!"), [validated(Q_GOOD, PAIRS[Q_GOOD])],
                            min_score=0)
    [letter] = out["dead"]
    assert (letter.stage, letter.reason) == ("judge", "bad_reply") and "looks fine" in letter.detail
    assert len(server.calls) == 2  # the request and its one repair


def test_scores_outside_the_range_are_a_bad_reply():
    out, _ = run_judge(lambda call: scores_reply(4, 7, 4), [validated(Q_GOOD, PAIRS[Q_GOOD])])
    assert [d.reason for d in out["dead"]] == ["bad_reply"] and out["records"] == []


def test_a_failed_request_drops_the_pair_with_the_reason():
    out, _ = run_judge(lambda call: Action(kind="status", status=400, text="bad request"),
                       [validated(Q_GOOD, PAIRS[Q_GOOD])])
    assert [(d.stage, d.reason) for d in out["dead"]] == [("judge", "request_failed")]


def test_a_pair_of_a_database_nobody_serves_is_a_dead_letter_without_a_request():
    record = validated(Q_GOOD, PAIRS[Q_GOOD])._replace(db_id="elsewhere")
    with FakeLlmServer(strict_judge) as server:
        only_main = JudgeSettings(llm=settings(server.url).llm, database=f"main={DATABASE}")
        pipeline = make_pipeline()
        out = pipeline | beam.Create([record]) | JudgePairs(only_main)
        found = collect(pipeline, dead=out.dead)
    assert [d.reason for d in found["dead"]] == ["no_database"] and server.calls == []


# -- options -> settings ------------------------------------------------------------------------------


def _values(**given) -> Namespace:
    values = dict(judge=False, judge_min=None, judge_llm=None, judge_llm_model=None, judge_llm_endpoint=None,
                  judge_llm_api_key_env=None, llm="rules", llm_model=None, llm_endpoint=None, llm_project=None,
                  llm_location=None, llm_api_key_env=None, llm_temperature=0.7, llm_max_in_flight=8, llm_rpm=None,
                  llm_retries=3, llm_timeout_s=30.0, llm_backoff_s=1.0, llm_cache=None, llm_price_in=0.0,
                  llm_price_out=0.0, timeout_s=5.0, max_rows=100, database_password_env=None, schema=None)
    values.update(given)
    return Namespace(**values)


def test_the_judge_model_falls_back_to_the_llm_options_at_temperature_0():
    resolved = judge_settings(_values(judge=True, judge_min="3", llm="openai", llm_model="big",
                                      llm_endpoint="http://a/v1"), database=DATABASE, dialect="sqlite")
    assert (resolved.llm.backend, resolved.llm.model, resolved.llm.endpoint, resolved.llm.temperature) == (
        "openai", "big", "http://a/v1", 0.0)
    assert resolved.min_score == 3
    own = judge_settings(_values(judge=True, judge_llm="openai", judge_llm_endpoint="http://judge/v1",
                                 judge_llm_model="small"), database=DATABASE, dialect="sqlite")
    assert (own.llm.model, own.llm.endpoint) == ("small", "http://judge/v1")
    assert judge_settings(_values(), database=DATABASE, dialect="sqlite") is None


@pytest.mark.parametrize("given, database, message", [
    (dict(judge_min="2"), DATABASE, "--judge_min needs --judge"),
    (dict(judge=True, llm="openai", llm_endpoint="http://a/v1"), None, "give --database"),
    (dict(judge=True), DATABASE, "--judge needs a model"),
    (dict(judge=True, judge_llm="openai"), DATABASE, "--judge_llm openai needs"),
])
def test_unworkable_judge_options_are_user_errors(given, database, message):
    with pytest.raises(UserError, match=message):
        judge_settings(_values(**given), database=database, dialect="sqlite")
