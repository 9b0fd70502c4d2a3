"""Every input and output goes through Beam's filesystems, so ``gs://`` paths work on Dataflow.

The proof: a filesystem that exists only in this process's memory (scheme
``sqlpairsmem://``, registered with Beam like GCS or S3 are). The job reads its
inputs from it and writes its pairs, dead letters and report to it; a job that
called ``open()`` or ``os.path`` on a user path anywhere would fail or write to a
local directory instead. Its files must equal, byte for byte, those of the same job
on local disk.
"""

from __future__ import annotations

import io
import pathlib
import threading
import time

import pytest
from apache_beam.io.filesystem import CompressedFile, CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems

from pipeline.main import run
from tests.conftest import REPO

SCHEME = "sqlpairsmem"
EXAMPLES = REPO / "examples"
INPUTS = ("chinook_queries.sql", "chat_history.json", "seed_pairs.jsonl")


class MemoryFileSystem(FileSystem):
    """A flat in-memory filesystem (``sqlpairsmem://bucket/key``) shared by the whole process."""

    files: dict[str, bytes] = {}
    _lock = threading.Lock()

    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        with self._lock:
            items = [(p, len(b)) for p, b in self.files.items() if p.startswith(dir_or_prefix)]
        for path, size in items:
            yield FileMetadata(path, size, time.time())

    def _open(self, path, mode, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if mode == "rb":
            with self._lock:
                if path not in self.files:
                    raise FileNotFoundError(path)
                raw = io.BytesIO(self.files[path])
        else:
            raw = _Sink(self, path)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names, destination_file_names):
        with self._lock:
            for source, destination in zip(source_file_names, destination_file_names):
                self.files[destination] = self.files[source]

    def rename(self, source_file_names, destination_file_names):
        with self._lock:
            for source, destination in zip(source_file_names, destination_file_names):
                self.files[destination] = self.files.pop(source)

    def exists(self, path):
        with self._lock:
            return path in self.files

    def size(self, path):
        with self._lock:
            return len(self.files[path])

    def last_updated(self, path):
        return time.time()

    def checksum(self, path):
        with self._lock:
            return str(hash(self.files[path]))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), time.time())

    def delete(self, paths):
        with self._lock:
            for path in paths:
                self.files.pop(path, None)


class _Sink(io.BytesIO):
    """A file being written: its bytes appear in the filesystem when it is closed."""

    def __init__(self, filesystem: MemoryFileSystem, path: str):
        super().__init__()
        self._filesystem, self._path = filesystem, path

    def close(self):
        if not self.closed:
            with self._filesystem._lock:
                self._filesystem.files[self._path] = self.getvalue()
        super().close()


def _job_args(sql_logs: str, chat_history: str, seed_pairs: str, output: str) -> list[str]:
    return ["--sql_logs", sql_logs, "--chat_history", chat_history, "--seed_pairs", seed_pairs,
            "--database", f"sqlite:///{EXAMPLES / 'chinook.sqlite'}", "--output", output, "--num_shards", "2"]


@pytest.fixture
def memory_files():
    MemoryFileSystem.files.clear()
    for name in INPUTS:
        MemoryFileSystem.files[f"{SCHEME}://in/{name}"] = (EXAMPLES / name).read_bytes()
    yield MemoryFileSystem.files
    MemoryFileSystem.files.clear()


def test_the_job_reads_and_writes_only_through_beam_filesystems(memory_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written to a local path by mistake would land here
    status = run(_job_args(*(f"{SCHEME}://in/{name}" for name in INPUTS), f"{SCHEME}://out/pairs"))
    assert status == 0
    written = sorted(path for path in memory_files if path.startswith(f"{SCHEME}://out/"))
    assert f"{SCHEME}://out/pairs-report.json" in written
    assert f"{SCHEME}://out/pairs-00000-of-00002.jsonl" in written
    assert f"{SCHEME}://out/pairs-rejects-00001-of-00002.jsonl" in written
    assert not [p for p in written if ".tmp-" in p], "temporary files were left behind"
    assert list(pathlib.Path(tmp_path).iterdir()) == [], "the job wrote to the local working directory"


def test_a_beam_filesystem_gives_the_same_bytes_as_local_disk(memory_files, tmp_path):
    local_inputs = [str(EXAMPLES / name) for name in INPUTS]
    assert run(_job_args(*local_inputs, str(tmp_path / "pairs"))) == 0
    assert run(_job_args(*(f"{SCHEME}://in/{name}" for name in INPUTS), f"{SCHEME}://out/pairs")) == 0
    local_prefix, memory_prefix = f"{EXAMPLES}/".encode(), f"{SCHEME}://in/".encode()

    def read(kind: str, opener) -> list[bytes]:
        return [opener(f"{kind}-0000{i}-of-00002.jsonl").replace(memory_prefix, local_prefix) for i in range(2)]

    on_disk = {kind: read(kind, lambda name: (tmp_path / name).read_bytes()) for kind in ("pairs", "pairs-rejects")}
    in_memory = {kind: read(kind, lambda name: FileSystems.open(f"{SCHEME}://out/{name}").read())
                 for kind in ("pairs", "pairs-rejects")}
    assert in_memory["pairs"] == on_disk["pairs"]
    # a dead letter's shard hashes its origin (the file name), so compare the lines, not the shards
    lines = {where: sorted(b"".join(files["pairs-rejects"]).splitlines()) for where, files in
             (("disk", on_disk), ("memory", in_memory))}
    assert lines["memory"] == lines["disk"]
