"""Filter: every built-in rule, and that custom predicates are honoured."""

from transforms.core.record import Execution, Record
from transforms.validate.filter import FilterSettings, load_predicate, rejection


def rec(**kw):
    base = dict(id="a", question="q", sql="s", tables=("Track",), difficulty="medium", execution=Execution("ok", 3))
    base.update(kw)
    return Record(**base)


def test_keeps_a_good_record():
    assert rejection(rec(), FilterSettings()) is None


def test_drops_input_failures_unless_kept():
    assert rejection(rec(success=False), FilterSettings())[0] == "input_marked_failed"
    assert rejection(rec(success=False), FilterSettings(keep_failures=True)) is None


def test_drops_execution_errors_and_timeouts():
    assert rejection(rec(execution=Execution("error", error="boom")), FilterSettings()) == ("execution_error", "boom")
    assert rejection(rec(execution=Execution("timeout")), FilterSettings())[0] == "execution_timeout"


def test_skipped_execution_passes():
    assert rejection(rec(execution=Execution("skipped")), FilterSettings()) is None


def test_table_filter_is_case_insensitive():
    assert rejection(rec(), FilterSettings(tables=("track",))) is None
    assert rejection(rec(), FilterSettings(tables=("album",)))[0] == "table_filter"


def test_difficulty_bounds():
    assert rejection(rec(difficulty="easy"), FilterSettings(min_difficulty="medium"))[0] == "below_min_difficulty"
    assert rejection(rec(difficulty="extra"), FilterSettings(max_difficulty="hard"))[0] == "above_max_difficulty"
    assert rejection(rec(difficulty="hard"), FilterSettings(min_difficulty="medium", max_difficulty="hard")) is None


def test_empty_results_dropped_only_when_asked():
    empty = rec(execution=Execution("ok", 0))
    assert rejection(empty, FilterSettings()) is None
    assert rejection(empty, FilterSettings(drop_empty_results=True))[0] == "empty_result"


def test_custom_predicate_is_loaded_by_name():
    predicate = load_predicate("tests.stages.validate.test_filter:only_track")
    assert predicate(rec()) and not predicate(rec(tables=("Album",)))


def only_track(record):
    return "Track" in record.tables
