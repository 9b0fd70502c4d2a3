"""Near-duplicate questions of one SQL are merged (MinHash over word shingles), deterministically."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from tests.conftest import make_pipeline

from transforms.core.record import Execution, new_record
from transforms.select.near_dup import LSH_GROUP_SIZE, MergeNearDuplicates, merge_near_duplicates, shingles, similarity


def pair(question, sql="SELECT COUNT(*) FROM track", *, fingerprint=None, source="seed", frequency=1, **fields):
    record = new_record(sql, question, source=source, frequency=frequency, **fields)
    return record._replace(sql_fingerprint=fingerprint or f"fp:{sql}", execution=Execution(status="ok"))


def test_shingles_ignore_case_and_punctuation():
    assert shingles("How many TRACKS?") == shingles("how many tracks")


def test_similar_phrasings_score_high_and_different_questions_low():
    assert similarity("How many tracks are there in total?", "How many tracks are there in total, please?") >= 0.8
    assert similarity("How many tracks are there?", "Count every song in the catalogue.") < 0.3


def test_near_duplicates_of_one_sql_merge_into_one_record_with_their_counts():
    records = [pair("How many tracks are there in total?", frequency=2),
               pair("how many tracks are there in total ?", frequency=3),
               pair("Count every song in the catalogue.")]
    kept = merge_near_duplicates(records, 0.8)
    assert len(kept) == 2
    merged = next(r for r in kept if r.duplicates)
    assert merged.duplicates == 1 and merged.frequency == 5


def test_the_threshold_decides_what_counts_as_near():
    records = [pair("Which artists have no albums?"), pair("Which artists have no albums at all?")]
    assert len(merge_near_duplicates(records, 0.5)) == 1
    assert len(merge_near_duplicates(records, 0.95)) == 2


def test_the_representative_does_not_depend_on_input_order():
    records = [pair("How many tracks are there in total?", source="evolved", parent_id="p"),
               pair("How many tracks are there in total, please?", source="evolved", parent_id="q"),
               pair("How many tracks are there in total?!")]
    expected = merge_near_duplicates(records, 0.7)
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert merge_near_duplicates(shuffled, 0.7) == expected
    assert [r.source for r in expected] == ["seed"]  # the original is preferred over its paraphrases


def test_a_pair_that_ran_is_preferred_over_one_that_failed():
    failed = pair("How many tracks are there in total?")._replace(execution=Execution(status="error"), success=False)
    ok = pair("How many tracks are there in total ?", source="evolved", parent_id="p")
    [kept] = merge_near_duplicates([failed, ok], 0.8)
    assert kept.id == ok.id and kept.duplicates == 1


def test_large_groups_are_bucketed_with_lsh_and_give_the_same_clusters():
    sentences = ["List every rock track longer than five minutes", "Which albums did Queen release in the nineties",
                 "Show customers from Brazil with a company name", "Name the genre with the most expensive songs",
                 "Count invoices billed to Germany during 2010", "Who supports the largest number of customers",
                 "Rank playlists by how many tracks they hold", "Find artists whose names start with the letter A"]
    records = [pair(f"{sentence}{' please' * (i % 2)}{'?' * (i % 3)}") for sentence in sentences for i in range(10)]
    assert len(records) > LSH_GROUP_SIZE
    kept = merge_near_duplicates(records, 0.7)  # the variants score ~0.87: well inside the LSH's sure band
    assert sorted(r.question.split(" please")[0].rstrip("?") for r in kept) == sorted(sentences)
    assert all(r.duplicates == 9 for r in kept)


@pytest.mark.parametrize("threshold", [0, 1.5])
def test_a_threshold_outside_0_to_1_is_refused(threshold):
    with pytest.raises(ValueError):
        MergeNearDuplicates(threshold)


def test_the_transform_merges_only_within_one_sql():
    records = [pair("How many tracks are there?", "SELECT COUNT(*) FROM track"),
               pair("How many tracks are there ?", "SELECT COUNT(*) FROM track"),
               pair("How many tracks are there?", "SELECT COUNT(*) FROM album")]
    with make_pipeline() as pipeline:
        out = pipeline | beam.Create(records) | MergeNearDuplicates(0.8)
        summary = out | beam.Map(lambda r: (r.sql, r.duplicates))
        assert_that(summary, equal_to([("SELECT COUNT(*) FROM track", 1), ("SELECT COUNT(*) FROM album", 0)]))
