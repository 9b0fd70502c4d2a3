"""ValidatePairs: the validate family as one composite, the same chain for logged and evolved pairs."""

from __future__ import annotations

import apache_beam as beam

from tests.conftest import REPO, make_pipeline
from tests.fakes.beam_collect import collect
from transforms.core.record import new_record, without_timings
from transforms.validate import STEPS, ValidatePairs, ValidateSettings
from transforms.validate.classify import ClassifyDifficulty
from transforms.validate.execute import ExecuteQueries
from transforms.validate.filter import FilterPairs, FilterSettings
from transforms.validate.instantiate import InstantiateParameters
from transforms.validate.normalize import NormalizeSql

CHINOOK_URL = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
SETTINGS = ValidateSettings(target_dialect="sqlite", database=CHINOOK_URL, filter=FilterSettings(max_difficulty="hard"))

#: One record per way through the chain, by what should become of it.
RECORDS = {
    "kept": new_record("SELECT Name FROM Artist WHERE ArtistId = 1"),
    "template": new_record("SELECT Name FROM Artist WHERE ArtistId = $1"),
    "unsafe": new_record("DROP TABLE Artist"),
    "failing": new_record("SELECT nope FROM Missing"),
    "too_hard": new_record("SELECT a.Name, COUNT(*) FROM Artist a JOIN Album b ON a.ArtistId = b.ArtistId "
                           "GROUP BY a.Name HAVING COUNT(*) > 1 ORDER BY 2 DESC LIMIT 3"),
}


def _run_chain(settings: ValidateSettings, records) -> dict:
    p = make_pipeline()
    validated = p | beam.Create(records) | "ValidatePairs" >> ValidatePairs(settings)
    named = {f"step_{name}": pcoll for name, pcoll in validated.steps.items()}
    named.update({f"notes_{i}": notes for i, notes in enumerate(validated.notes)})
    out = collect(p, records=validated.records, dead=validated.dead, **named)
    out["step_names"] = tuple(validated.steps)
    return out


def test_each_step_keeps_or_rejects_under_its_own_stage_name():
    out = _run_chain(SETTINGS, list(RECORDS.values()))
    assert out["step_names"] == STEPS
    assert sorted((r.evolution or "", r.execution.status) for r in out["records"]) == [("", "ok"), ("instantiate", "ok")]
    assert RECORDS["kept"].sql in {r.sql for r in out["records"]}
    assert sorted((d.stage, d.reason) for d in out["dead"]) == [
        ("filter", "above_max_difficulty"), ("filter", "execution_error"), ("safety", "not_a_query")]
    assert len(out["records"]) == len(out["step_filter"])
    assert out["notes_0"], "instantiate's report notes are returned"


def test_the_chain_gives_what_its_five_stages_give_one_by_one():
    records = list(RECORDS.values())
    chained = _run_chain(SETTINGS, records)

    p = make_pipeline()
    normalized = p | beam.Create(records) | NormalizeSql("sqlite")
    instantiated = normalized.records | InstantiateParameters(CHINOOK_URL, SETTINGS.instantiate)
    classified = instantiated.records | ClassifyDifficulty()
    executed = classified.records | ExecuteQueries(CHINOOK_URL)
    filtered = executed.records | FilterPairs(SETTINGS.filter)
    dead = [normalized.dead, instantiated.dead, classified.dead, executed.dead, filtered.dead] | beam.Flatten()
    by_hand = collect(p, records=filtered.records, dead=dead)

    def untimed(records):
        return sorted(without_timings(r) for r in records)

    assert untimed(chained["records"]) == untimed(by_hand["records"])
    assert sorted(d._replace(record=without_timings(d.record)) for d in chained["dead"]) == sorted(
        d._replace(record=without_timings(d.record)) for d in by_hand["dead"])


def test_without_instantiate_the_step_is_left_out_and_a_template_stays_unfilled():
    """The evolved pairs' run: no instantiate step, no notes; a template is not filled."""
    out = _run_chain(SETTINGS._replace(instantiate=None), [RECORDS["kept"], RECORDS["template"]])
    assert out["step_names"] == tuple(step for step in STEPS if step != "instantiate")
    assert not any(name.startswith("notes_") for name in out)
    assert not any(r.evolution == "instantiate" for r in out["records"] + [d.record for d in out["dead"]])
    assert RECORDS["kept"].sql in {r.sql for r in out["records"]}
