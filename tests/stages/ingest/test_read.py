"""Read: files through Beam's fileio into records; unreadable items into dead letters."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import REPO, make_pipeline
from transforms.ingest.read import ReadInputs, ReadSettings, format_of

EXAMPLES = REPO / "examples"


def test_seed_pairs_keep_their_questions_and_reject_wrong_types():
    with make_pipeline() as p:
        out = p | ReadInputs("seed_pairs", [str(EXAMPLES / "seed_pairs.jsonl")])
        assert_that(out.records | beam.Map(lambda r: (r.question, r.source, r.question_source)).with_output_types(tuple)
                    | beam.Filter(lambda t: t[0] == "How many artists are there?"),
                    equal_to([("How many artists are there?", "seed", "given")]), label="question")
        assert_that(out.dead | beam.Map(lambda d: (d.stage, d.reason, d.origin.rsplit("/", 1)[-1])),
                    equal_to([("read", "wrong_type:question", "seed_pairs.jsonl:6"),
                              ("read", "invalid_json", "seed_pairs.jsonl:7")]), label="dead")


def test_failed_tool_calls_are_dead_letters_unless_included():
    with make_pipeline() as p:
        out = p | ReadInputs("chat_history", [str(EXAMPLES / "chat_history.json")])
        assert_that(out.dead | beam.Map(lambda d: d.reason), equal_to(["failed_tool_call"]), label="dead")
        assert_that(out.records | beam.Map(lambda r: r.success), equal_to([True] * 4), label="records")


def test_included_failures_are_records_marked_failed():
    with make_pipeline() as p:
        out = p | ReadInputs("chat_history", [str(EXAMPLES / "chat_history.json")],
                             ReadSettings(include_failures=True))
        assert_that(out.records | beam.Map(lambda r: r.success), equal_to([True] * 4 + [False]))


def test_chat_pairs_carry_the_question_and_context():
    with make_pipeline() as p:
        out = p | ReadInputs("chat_history", [str(EXAMPLES / "chat_history.json")], ReadSettings(context="last"))
        assert_that(
            out.records | beam.Filter(lambda r: "Rock" in r.sql) | beam.Map(lambda r: (r.question, tuple(r.context))),
            equal_to([("And how many of those are longer than five minutes?",
                       ("Assistant: Let me count tracks per genre.\nRock leads with 1,297 tracks.",))]),
        )


def test_format_is_chosen_by_extension():
    assert format_of("a/b.jsonl.gz", "sql_logs") == "jsonl"
    assert format_of("x.parquet", "sql_logs") == "parquet"
    assert format_of("x.txt", "sql_logs") == "unknown"
    assert format_of("x.txt", "sql_logs", "csv") == "csv"
