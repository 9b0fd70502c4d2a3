"""Write: deterministic sharded JSONL — the same input gives byte-identical files.

Beam's ``WriteToText`` spreads lines over shards in arrival order, which changes
from run to run. Here every line goes to the shard its sort key hashes to (CRC-32,
stable across processes), each shard is sorted, written to a temporary file and
renamed into place through Beam's filesystems (so ``gs://`` prefixes work). Shards
that receive nothing are still written, empty, so a reader always finds N files.

A shard is sorted with bounded memory (``ExternalSorter``: sorted runs of 64 MB of
lines spill to the worker's local disk and are merged while the file is streamed
out), so a worker writing a 10 GB shard holds no more than one that writes 10 MB.

``copy_prefix`` puts every shard a second time under another name: the pairs keep their
``PREFIX-NNNNN-of-NNNNN.jsonl`` names and also sit, byte for byte the same, inside the
self-contained Hugging Face dataset folder (``transforms.publish.exports.dataset_dir``). On local
disk the second name is a hard link to the first file (the bytes are on disk once);
elsewhere the sorted lines are produced once and each chunk goes to both files.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import pickle
import shutil
import tempfile
import uuid
import zlib
from typing import IO, Callable, Iterable, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems


def shard_name(prefix: str, index: int, num_shards: int, suffix: str = ".jsonl") -> str:
    """``prefix-00000-of-00004.jsonl``.

    >>> shard_name("out/pairs", 1, 4)
    'out/pairs-00001-of-00004.jsonl'
    """
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


#: Characters of lines a shard writer sorts in memory before it spills a sorted run to a local
#: temporary file (then merges the runs): a worker's memory does not grow with the shard.
SPILL_CHARS = 64 << 20

_WRITE_CHUNK_CHARS = 1 << 20


@contextlib.contextmanager
def created_atomically(path: str) -> Iterator[IO[bytes]]:
    """A binary handle whose content becomes ``path`` only once the block ends without error
    (a temporary name, then a rename), on any Beam filesystem; a failed write leaves no file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with FileSystems.create(temporary) as handle:
            yield handle
    except BaseException:
        if FileSystems.exists(temporary):
            FileSystems.delete([temporary])
        raise
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def write_text_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically on any Beam filesystem."""
    write_lines_file(path, (text,), newline="")


def write_lines_file(path: str, lines: Iterable[str], newline: str = "\n") -> None:
    """Stream ``lines`` (each followed by ``newline``) into ``path`` atomically, ~1 MB per write."""
    write_lines_files((path,), lines, newline)


def write_lines_files(paths: Sequence[str], lines: Iterable[str], newline: str = "\n") -> None:
    """``write_lines_file`` into every one of ``paths`` at once: the same bytes, one pass over ``lines``.

    On local disk the file is written once and the other paths are hard links to it
    (``same_file_at``): the dataset folder's copy of the pairs costs no second copy of
    the bytes. Elsewhere (``gs://``, a disk without links) every path is written.
    """
    if len(paths) > 1 and all(_is_local(path) for path in paths):
        write_lines_files(paths[:1], lines, newline)
        for path in paths[1:]:
            same_file_at(paths[0], path)
        return
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(created_atomically(path)) for path in paths]
        buffer: list[str] = []
        size = 0
        for line in lines:
            buffer.append(line)
            buffer.append(newline)
            size += len(line)
            if size >= _WRITE_CHUNK_CHARS:
                chunk = "".join(buffer).encode("utf-8")
                for handle in handles:
                    handle.write(chunk)
                buffer, size = [], 0
        if buffer:
            chunk = "".join(buffer).encode("utf-8")
            for handle in handles:
                handle.write(chunk)


def _is_local(path: str) -> bool:
    return "://" not in path


def same_file_at(source: str, path: str) -> None:
    """Make local ``path`` hold ``source``'s bytes: a hard link (no second copy on disk), or a
    copy where the disk has no links; put in place atomically, like ``created_atomically``."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        try:
            os.link(source, temporary)
        except OSError:  # another device, or a filesystem without hard links
            shutil.copyfile(source, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


class ExternalSorter:
    """Sorts ``(key, line, ...)`` tuples with bounded memory: sorted runs spill to local temporary
    files once ``spill_chars`` of keys and lines are held, and ``sorted()`` merges them
    (``heapq.merge``). Later members (a Parquet row) travel along and count only through
    ``line``, their text.

    >>> sorter = ExternalSorter(spill_chars=4)
    >>> for item in [("b", "22"), ("a", "11"), ("c", "33"), ("a", "10")]:
    ...     sorter.add(item)
    >>> list(sorter.sorted()), sorter.spilled_runs
    ([('a', '10'), ('a', '11'), ('b', '22'), ('c', '33')], 2)
    >>> sorter.close()
    """

    def __init__(self, spill_chars: int = SPILL_CHARS):
        self.spill_chars = spill_chars
        self._held: list[tuple] = []
        self._held_chars = 0
        self._runs: list[IO[bytes]] = []

    @property
    def spilled_runs(self) -> int:
        return len(self._runs)

    def add(self, item: tuple) -> None:
        self._held.append(item)
        self._held_chars += len(item[0]) + len(item[1])
        if self._held_chars >= self.spill_chars:
            self._spill()

    def _spill(self) -> None:
        self._held.sort()
        run = tempfile.TemporaryFile(prefix="sqlpairs-sort-")  # local disk, deleted when closed
        for item in self._held:
            pickle.dump(item, run, protocol=pickle.HIGHEST_PROTOCOL)
        run.seek(0)
        self._runs.append(run)
        self._held, self._held_chars = [], 0

    @staticmethod
    def _read(run: IO[bytes]) -> Iterator[tuple]:
        while True:
            try:
                yield pickle.load(run)
            except EOFError:
                return

    def sorted(self) -> Iterator[tuple]:
        """Every item added, in order (once: the runs are read as they are merged)."""
        self._held.sort()
        if not self._runs:
            return iter(self._held)
        return heapq.merge(*(self._read(run) for run in self._runs), self._held)

    def close(self) -> None:
        for run in self._runs:
            run.close()
        self._runs, self._held = [], []


class WriteTextFileFn(beam.DoFn):
    """Writes one element, rendered by ``render``, as the whole file ``path``; outputs the path."""

    def __init__(self, path: str, render: Callable[[object], str]):
        self.path, self.render = path, render

    def process(self, element: object):
        write_text_file(self.path, self.render(element))
        yield self.path


def _shard_paths(prefixes: Sequence[str], index: int, num_shards: int, suffix: str) -> list[str]:
    return [shard_name(prefix, index, num_shards, suffix) for prefix in prefixes]


class _WriteShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, suffix: str, spill_chars: int = SPILL_CHARS,
                 copy_prefix: Optional[str] = None):
        self.prefix, self.num_shards, self.suffix = prefix, num_shards, suffix
        self.spill_chars = spill_chars
        self.prefixes = [prefix] + ([copy_prefix] if copy_prefix else [])

    def process(self, element: tuple[int, Iterable[tuple[str, str]]]):
        index, items = element
        sorter = ExternalSorter(self.spill_chars)
        try:
            for item in items:  # a runner pages a big group in; only the unspilled part is held
                sorter.add(item)
            paths = _shard_paths(self.prefixes, index, self.num_shards, self.suffix)
            write_lines_files(paths, (line for _, line in sorter.sorted()))
        finally:
            sorter.close()
        yield paths[0]


class _WriteEmptyShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, suffix: str, copy_prefix: Optional[str] = None):
        self.prefix, self.num_shards, self.suffix = prefix, num_shards, suffix
        self.prefixes = [prefix] + ([copy_prefix] if copy_prefix else [])

    def process(self, index: int, filled: list[int]):
        if index not in set(filled):
            paths = _shard_paths(self.prefixes, index, self.num_shards, self.suffix)
            write_lines_files(paths, ())
            yield paths[0]


class WriteJsonShards(beam.PTransform):
    """Elements → ``num_shards`` sorted JSONL files; outputs the file names written.

    ``to_line`` renders one element; ``sort_key`` orders lines inside a shard and
    decides the shard (elements with equal keys are ordered by their line text).
    ``copy_prefix``: every shard is also written, identical, as ``copy_prefix-NNNNN-of-NNNNN``.
    """

    def __init__(
        self,
        prefix: str,
        num_shards: int,
        to_line: Callable[[object], str],
        sort_key: Callable[[object], str],
        suffix: str = ".jsonl",
        spill_chars: int = SPILL_CHARS,
        copy_prefix: Optional[str] = None,
    ):
        super().__init__()
        self.prefix, self.num_shards, self.suffix = prefix, num_shards, suffix
        self.to_line, self.sort_key = to_line, sort_key
        self.spill_chars = spill_chars
        self.copy_prefix = copy_prefix

    def expand(self, elements):
        num_shards, to_line, sort_key = self.num_shards, self.to_line, self.sort_key

        def keyed(element):
            key = sort_key(element)
            return (zlib.crc32(key.encode("utf-8")) % num_shards, (key, to_line(element)))

        lines = elements | "ToLine" >> beam.Map(keyed).with_output_types(tuple[int, tuple[str, str]])
        grouped = lines | "GroupByShard" >> beam.GroupByKey()
        written = grouped | "WriteShard" >> beam.ParDo(
            _WriteShardFn(self.prefix, num_shards, self.suffix, self.spill_chars, self.copy_prefix))
        # Shards no line hashed to are written empty. Not by flattening N empty markers into
        # the lines: a flatten across stages is materialized, an extra encode of every line.
        filled = grouped | "FilledShards" >> beam.Map(lambda shard: shard[0]).with_output_types(int)
        empty = (
            elements.pipeline
            | "AllShards" >> beam.Create(list(range(num_shards)), reshuffle=False).with_output_types(int)
            | "WriteEmptyShards" >> beam.ParDo(
                _WriteEmptyShardFn(self.prefix, num_shards, self.suffix, self.copy_prefix),
                beam.pvalue.AsList(filled))
        )
        return (written, empty) | "ShardFiles" >> beam.Flatten()
