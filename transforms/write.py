"""Write: deterministic sharded JSONL — the same input gives byte-identical files.

Beam's ``WriteToText`` spreads lines over shards in arrival order, which changes
from run to run. Here every line goes to the shard its sort key hashes to (CRC-32,
stable across processes), each shard is sorted, written to a temporary file and
renamed into place through Beam's filesystems (so ``gs://`` prefixes work). Shards
that receive nothing are still written, empty, so a reader always finds N files.
"""

from __future__ import annotations

import uuid
import zlib
from typing import Callable, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems


def shard_name(prefix: str, index: int, num_shards: int, suffix: str = ".jsonl") -> str:
    """``prefix-00000-of-00004.jsonl``.

    >>> shard_name("out/pairs", 1, 4)
    'out/pairs-00001-of-00004.jsonl'
    """
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


def write_text_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary name, then rename) on any Beam filesystem."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as handle:
        handle.write(text.encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


class WriteTextFileFn(beam.DoFn):
    """Writes one element, rendered by ``render``, as the whole file ``path``; outputs the path."""

    def __init__(self, path: str, render: Callable[[object], str]):
        self.path, self.render = path, render

    def process(self, element: object):
        write_text_file(self.path, self.render(element))
        yield self.path


class _WriteShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, suffix: str):
        self.prefix, self.num_shards, self.suffix = prefix, num_shards, suffix

    def process(self, element: tuple[int, Iterable[tuple[str, str]]]):
        index, items = element
        lines = sorted(items)
        path = shard_name(self.prefix, index, self.num_shards, self.suffix)
        write_text_file(path, "".join(line + "\n" for _, line in lines))
        yield path


class _WriteEmptyShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, suffix: str):
        self.prefix, self.num_shards, self.suffix = prefix, num_shards, suffix

    def process(self, index: int, filled: list[int]):
        if index not in set(filled):
            path = shard_name(self.prefix, index, self.num_shards, self.suffix)
            write_text_file(path, "")
            yield path


class WriteJsonShards(beam.PTransform):
    """Elements → ``num_shards`` sorted JSONL files; outputs the file names written.

    ``to_line`` renders one element; ``sort_key`` orders lines inside a shard and
    decides the shard (elements with equal keys are ordered by their line text).
    """

    def __init__(
        self,
        prefix: str,
        num_shards: int,
        to_line: Callable[[object], str],
        sort_key: Callable[[object], str],
        suffix: str = ".jsonl",
    ):
        super().__init__()
        self.prefix, self.num_shards, self.suffix = prefix, num_shards, suffix
        self.to_line, self.sort_key = to_line, sort_key

    def expand(self, elements):
        num_shards, to_line, sort_key = self.num_shards, self.to_line, self.sort_key

        def keyed(element):
            key = sort_key(element)
            return (zlib.crc32(key.encode("utf-8")) % num_shards, (key, to_line(element)))

        lines = elements | "ToLine" >> beam.Map(keyed).with_output_types(tuple[int, tuple[str, str]])
        grouped = lines | "GroupByShard" >> beam.GroupByKey()
        written = grouped | "WriteShard" >> beam.ParDo(_WriteShardFn(self.prefix, num_shards, self.suffix))
        # Shards no line hashed to are written empty. Not by flattening N empty markers into
        # the lines: a flatten across stages is materialized, an extra encode of every line.
        filled = grouped | "FilledShards" >> beam.Map(lambda shard: shard[0]).with_output_types(int)
        empty = (
            elements.pipeline
            | "AllShards" >> beam.Create(list(range(num_shards)), reshuffle=False).with_output_types(int)
            | "WriteEmptyShards" >> beam.ParDo(
                _WriteEmptyShardFn(self.prefix, num_shards, self.suffix), beam.pvalue.AsList(filled))
        )
        return (written, empty) | "ShardFiles" >> beam.Flatten()
