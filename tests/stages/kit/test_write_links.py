"""The pairs' second name (the dataset folder's ``pairs`` set) costs no second copy of the bytes on local disk."""

from __future__ import annotations

import os

import pytest

from transforms.kit import write
from transforms.kit.write import same_file_at, write_lines_files


def test_local_copies_are_hard_links_to_the_one_file_written(tmp_path):
    first, copy = tmp_path / "pairs-00000-of-00001.jsonl", tmp_path / "dataset" / "train-00000-of-00001.jsonl"
    write_lines_files([str(first), str(copy)], ["a", "b"])
    assert first.read_bytes() == copy.read_bytes() == b"a\nb\n"
    assert os.path.samefile(first, copy)
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # no temporary left behind


def test_a_rewrite_replaces_the_link_and_never_edits_the_old_file_in_place(tmp_path):
    first, copy = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_lines_files([str(first), str(copy)], ["old"])
    kept = tmp_path / "kept.jsonl"
    os.link(copy, kept)  # someone holds the old bytes under a name of their own
    write_lines_files([str(first), str(copy)], ["new"])
    assert first.read_text() == copy.read_text() == "new\n" and kept.read_text() == "old\n"


def test_a_disk_without_hard_links_gets_a_copy(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError("links not supported here")

    monkeypatch.setattr(write.os, "link", no_links)
    source, copy = tmp_path / "s.jsonl", tmp_path / "sub" / "c.jsonl"
    source.write_text("x\n")
    same_file_at(str(source), str(copy))
    assert copy.read_text() == "x\n" and not os.path.samefile(source, copy)


def test_a_failed_copy_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(write.os, "link", lambda *_: (_ for _ in ()).throw(OSError("no links")))
    with pytest.raises(FileNotFoundError):
        same_file_at(str(tmp_path / "missing.jsonl"), str(tmp_path / "c.jsonl"))
    assert list(tmp_path.iterdir()) == []
