"""Write and report: deterministic shards, empty shards present, the accounting check."""

import json

import apache_beam as beam
import pytest

from tests.conftest import make_pipeline
from transforms.publish.report import build_report
from transforms.kit.write import WriteJsonShards, shard_name


def _write(tmp_path, items, shards, **kwargs):
    prefix = str(tmp_path / "out")
    with make_pipeline() as p:
        p | beam.Create(items) | WriteJsonShards(prefix, shards, json.dumps, lambda x: x, **kwargs)
    return [open(shard_name(prefix, i, shards)).read() for i in range(shards)]


def test_shards_are_sorted_and_identical_across_runs(tmp_path):
    items = [f"item{i:03d}" for i in range(50)]
    first = _write(tmp_path, list(reversed(items)), 3)
    second = _write(tmp_path, items, 3)
    assert first == second
    lines = [json.loads(line) for text in first for line in text.splitlines()]
    assert sorted(lines) == items
    for text in first:
        shard = [json.loads(line) for line in text.splitlines()]
        assert shard == sorted(shard)


def test_spilling_shards_to_disk_writes_the_same_bytes(tmp_path, sorter_spills):
    """A shard bigger than the sort buffer is sorted in runs on local disk and merged: same files."""
    spills = sorter_spills
    items = [f"item{(i * 7919) % 2000:04d}-{'x' * (i % 13)}" for i in range(2000)]
    in_memory = _write(tmp_path / "memory", items, 2)
    assert spills == []
    spilled = _write(tmp_path / "spilled", list(reversed(items)), 2, spill_chars=2_000)
    assert len(spills) > 10  # many runs per shard
    assert spilled == in_memory


def test_a_write_that_fails_leaves_neither_the_file_nor_its_temporary(tmp_path):
    from transforms.kit.write import write_lines_file

    def lines():
        yield "first"
        raise RuntimeError("disk full")

    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="disk full"):
        write_lines_file(str(target), lines())
    assert list(tmp_path.iterdir()) == []
    write_lines_file(str(target), ["a", "b"])
    assert target.read_text() == "a\nb\n" and list(tmp_path.iterdir()) == [target]


def test_every_shard_exists_even_when_empty(tmp_path):
    assert _write(tmp_path, ["only"], 4).count("") == 3


def test_a_copy_prefix_gets_the_same_bytes_in_the_same_pass_empty_shards_too(tmp_path):
    copy = tmp_path / "dataset" / "pairs" / "train"  # its folder does not exist yet
    items = [f"item{i:02d}" for i in range(3)]
    shards = _write(tmp_path, items, 5, copy_prefix=str(copy))
    assert "" in shards  # 3 items over 5 shards: some are empty
    assert [open(shard_name(str(copy), i, 5)).read() for i in range(5)] == shards
    assert sorted(p.name for p in copy.parent.iterdir()) == [f"train-{i:05d}-of-00005.jsonl" for i in range(5)]


def test_report_funnel_adds_up():
    counts = {"out:read": 10, "dead:read:invalid_json": 1, "out:normalize": 8, "dead:parse:unparseable": 1,
              "dead:safety:not_a_query": 1, "out:classify": 8, "out:execute": 8, "out:filter": 7,
              "dead:filter:execution_error": 1, "out:dedup": 5, "dups:dedup": 2, "out:describe": 5, "dups:describe": 2,
              "out:written": 5}
    report = build_report(counts, {})
    assert report["ok"], report["accounting"]
    assert report["accounting"] == {"records_read": 11, "pairs_written": 5, "dead_letters": 4,
                                    "merged_duplicates": 2, "problems": []}
    normalize = report["stages"][1]
    assert (normalize["in"], normalize["out"], normalize["rejected"]) == (10, 8, 2)


def test_merges_are_measured_so_a_record_lost_in_dedup_is_flagged():
    """Dedup's merged count is the ``duplicates`` its output gained, not in - out: 7 in, 5 out
    and only 1 merge recorded means one record vanished."""
    counts = {"out:read": 7, "out:normalize": 7, "out:classify": 7, "out:execute": 7, "out:filter": 7,
              "dups:filter": 1, "out:dedup": 5, "dups:dedup": 2, "out:describe": 5, "dups:describe": 2,
              "out:written": 5}
    report = build_report(counts, {})
    assert not report["ok"]
    dedup = next(row for row in report["stages"] if row["stage"] == "dedup")
    assert dedup["merged"] == 1  # 2 carried out, 1 already carried in
    assert any(problem.startswith("dedup:") for problem in report["accounting"]["problems"])


def test_report_flags_lost_records():
    counts = {"out:read": 10, "out:normalize": 9, "out:classify": 9, "out:describe": 9, "out:execute": 9,
              "out:filter": 9, "out:dedup": 9, "out:written": 9}
    report = build_report(counts, {})
    assert not report["ok"]
    assert any("normalize" in problem for problem in report["accounting"]["problems"])
