"""Read: SQL logs, chat histories and seed pairs → records; unreadable items → dead letters.

Files are matched by :func:`match_pattern` and opened through Beam's filesystems
(any Beam filesystem, ``gs://`` included; ``.gz``/``.bz2`` decompressed by
extension). Each file is parsed by a streaming parser from ``transforms.formats``;
a malformed line, record or statement becomes a dead letter (stage ``read``)
naming the file and line, and the run goes on. No item larger than
``--max_sql_bytes`` is parsed or held whole (``sql_too_long``).

Patterns: ``*`` and ``?`` match within one path segment, ``[...]`` a character
class, and ``**`` any number of segments — ``logs/**/*.sql`` is every ``.sql``
file under ``logs/`` at any depth, ``logs/`` itself included. On local disk the
walk follows links to directories; a dangling link or a link loop that the
pattern reaches is a dead letter (``unreadable_file``), never skipped silently.
Other filesystems go through Beam's ``FileSystems.match``: object stores such as
``gs://`` have no directories or links, and a ``**`` pattern lists every object
under the text before its first wildcard and keeps those the pattern matches.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import os
import re
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

from transforms.core.record import new_record
from transforms.kit.stage import DEAD, count, reject
from transforms.formats.chat import parse_chat_history
from transforms.formats.csv_file import parse_csv
from transforms.formats.defog import parse_defog_csv
from transforms.formats.jsonl import parse_json_records
from transforms.formats.parquet_file import parse_parquet
from transforms.formats.pg_csvlog import parse_pg_csvlog
from transforms.formats.pg_stat_statements import frequency_of, looks_like_pg_stat_statements, parse_pg_stat_statements
from transforms.formats.sql_file import parse_sql_file
from transforms.formats.types import RawPair, ReadReject

#: Kinds of input and the source label their records get.
KINDS = {"sql_logs": "log", "chat_history": "chat", "seed_pairs": "seed"}

_COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")


class ReadSettings(NamedTuple):
    format: str = "auto"
    sql_field: str = "sql"
    question_field: Optional[str] = None
    db_id_field: Optional[str] = None
    tool_name: str = "db_query"
    include_failures: bool = False
    context: str = "last"  # transforms.formats.chat.DEFAULT_CONTEXT: bounded, linear in the input
    dialect: Optional[str] = None
    max_sql_bytes: int = 1_048_576  # --max_sql_bytes: the largest item any reader parses


def format_of(path: str, kind: str, declared: str = "auto") -> str:
    """The parser to use for ``path``.

    >>> format_of("logs/q.sql.gz", "sql_logs"), format_of("s.csv", "seed_pairs"), format_of("c.json", "chat_history")
    ('sql', 'csv', 'chat')
    """
    if kind == "chat_history":
        return "chat"
    if declared != "auto":
        return declared
    name = path.lower()
    for extension in _COMPRESSED:
        if name.endswith(extension):
            name = name[: -len(extension)]
    for extension, fmt in ((".sql", "sql"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                           (".csv", "csv"), (".parquet", "parquet"), (".log", "pg_csvlog")):
        if name.endswith(extension):
            return fmt
    return "unknown"


def _looks_like_defog(stream: io.BufferedReader) -> bool:
    header = stream.peek(4096)[:4096].split(b"\n", 1)[0].decode("utf-8", "replace").lower()
    columns = {c.strip().strip('"') for c in header.split(",")}
    return {"query", "question", "db_name"} <= columns


def parse_file(stream: Any, path: str, kind: str, settings: ReadSettings) -> Iterator[RawPair | ReadReject]:
    """Dispatch one opened file to its parser."""
    source = KINDS[kind]
    fmt = format_of(path, kind, settings.format if kind == "sql_logs" else "auto")
    question_field, db_id_field = settings.question_field, settings.db_id_field
    if kind == "seed_pairs":  # pairs have questions by definition: read the usual field names
        question_field, db_id_field = question_field or "question", db_id_field or "db_id"
    limit = settings.max_sql_bytes
    fields = dict(sql_field=settings.sql_field, question_field=question_field,
                  db_id_field=db_id_field, source=source, max_sql_bytes=limit)
    if fmt == "chat":
        return parse_chat_history(stream, path, tool_name=settings.tool_name,
                                  include_failures=settings.include_failures, context=settings.context,
                                  max_message_bytes=limit)
    if fmt == "sql":
        return parse_sql_file(stream, path, dialect=settings.dialect, max_sql_bytes=limit)
    if fmt == "pg_stat_statements":
        return parse_pg_stat_statements(stream, path, db_id_field=settings.db_id_field, max_sql_bytes=limit)
    if fmt in ("jsonl", "json"):
        return parse_json_records(stream, path, **fields)
    if fmt == "csv" or fmt == "defog":
        buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
        if fmt == "defog" or (kind == "seed_pairs" and _looks_like_defog(buffered)):
            return parse_defog_csv(buffered, path, max_sql_bytes=limit)
        if kind == "sql_logs" and settings.sql_field == "sql" and looks_like_pg_stat_statements(buffered.peek(4096)):
            return parse_pg_stat_statements(buffered, path, db_id_field=settings.db_id_field, max_sql_bytes=limit)
        return parse_csv(buffered, path, **fields)
    if fmt == "parquet":
        return parse_parquet(stream, path, **fields)
    if fmt == "pg_csvlog":
        return parse_pg_csvlog(stream, path, max_sql_bytes=limit)
    return iter([ReadReject(path, "unknown_format",
                            "cannot tell the format from the extension; use --sql_logs_format")])


class Unmatchable(NamedTuple):
    """Something a pattern reached that is not a readable file (a dangling link, a link loop)."""

    path: str
    detail: str


class Matched(NamedTuple):
    """What one pattern matches: the files to read, sorted, and what it reached but cannot read."""

    files: list[FileMetadata]
    problems: list[Unmatchable]


_WILDCARDS = re.compile(r"[*?\[]")


def glob_regex(pattern: str) -> "re.Pattern[str]":
    """The regular expression of a path pattern: ``*``, ``?``, ``[...]`` within a segment, ``**`` across.

    ``**/`` matches zero or more whole directories, so ``d/**/*.sql`` matches
    ``d/top.sql`` too (Beam's own translation needs at least one directory there).

    >>> r = glob_regex("d/**/*.sql")
    >>> [bool(r.match(p)) for p in ("d/top.sql", "d/a/b/x.sql", "d/a/x.sqlx", "e/x.sql")]
    [True, True, False, False]
    >>> bool(glob_regex("q[0-9].json").match("q7.json")), bool(glob_regex("*.sql").match("a/b.sql"))
    (True, False)
    """
    out, i, n = [], 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def match_pattern(pattern: str) -> Matched:
    """The files ``pattern`` matches (see the module docstring), and what it reaches but cannot read.

    Local paths are walked here (``**`` at any depth, links to directories followed,
    loops detected); other schemes (``gs://``…) go through Beam's ``FileSystems.match``.
    Raises what the filesystem raises when it cannot list at all.
    """
    if "://" in pattern:
        return _match_remote(pattern)
    return _match_local(pattern)


def _match_remote(pattern: str) -> Matched:
    if "**" not in pattern:
        return Matched(sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path), [])
    prefix = pattern[:_WILDCARDS.search(pattern).start()]
    regex = glob_regex(pattern)
    listed = FileSystems.match([prefix + "**"])[0].metadata_list
    return Matched(sorted((m for m in listed if regex.match(m.path)), key=lambda m: m.path), [])


def _match_local(pattern: str) -> Matched:
    wildcard = _WILDCARDS.search(pattern)
    if wildcard is None:  # one path: a file, a broken link, a directory, or nothing
        if os.path.isfile(pattern):
            return Matched([_metadata(pattern)], [])
        if os.path.isdir(pattern):
            return Matched([], [Unmatchable(pattern, "a directory, not a file: give a pattern such as "
                                                     f"{os.path.join(pattern, '**')!r}")])
        if os.path.islink(pattern):
            return Matched([], [Unmatchable(pattern, _link_problem(pattern))])
        return Matched([], [])
    label = pattern[: pattern.rfind("/", 0, wildcard.start()) + 1]  # "" or "dir/" before the first wildcard
    rest = pattern[len(label):]
    depth = None if "**" in rest else rest.count("/")  # how many directories below ``label`` to list
    regex = glob_regex(pattern)
    files, problems = [], []
    for path, problem in _walk(label, depth):
        if problem is not None:
            if regex.match(path) or problem == _DIRECTORY_LOOP:
                problems.append(Unmatchable(path, problem))
        elif regex.match(path):
            try:
                files.append(_metadata(path))
            except OSError as error:  # gone since it was listed, or unreadable
                problems.append(Unmatchable(path, f"{type(error).__name__}: {error.strerror or error}"))
    return Matched(sorted(files, key=lambda m: m.path), sorted(problems))


_LOOP = "symbolic link loop"
_DIRECTORY_LOOP = f"{_LOOP}: a link back to a directory that holds it (not entered)"


def _walk(label: str, depth: Optional[int]) -> Iterator[tuple[str, Optional[str]]]:
    """``(path, None)`` for each file under the directory ``label`` (``""``: the current one) and
    ``(path, why)`` for each entry that cannot be read; ``depth`` levels of directories below it
    (None: all). Links to directories are followed; a directory reached again below itself is
    a loop, reported once and not entered."""
    stack = [(label, 0, frozenset())]
    while stack:
        directory, level, ancestors = stack.pop()
        try:
            info = os.stat(directory or ".")
            entries = list(os.scandir(directory or "."))
        except OSError as error:
            if level:
                yield directory.rstrip("/"), f"cannot list the directory: {error.strerror or error}"
            continue
        key = (info.st_dev, info.st_ino)
        if key in ancestors:
            yield directory.rstrip("/"), _DIRECTORY_LOOP
            continue
        ancestors = ancestors | {key}
        for entry in entries:
            path = directory + entry.name
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow links
            except OSError:  # a link loop raises here
                is_dir = is_file = False
            if is_dir:
                if depth is None or level < depth:
                    stack.append((path + "/", level + 1, ancestors))
            elif is_file:
                yield path, None
            else:
                yield path, _link_problem(path) if entry.is_symlink() else "not a regular file"


def _link_problem(path: str) -> str:
    """Why the link ``path`` cannot be read."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{_LOOP} ({os.readlink(path)!r})"
        if error.errno == errno.ENOENT:
            return f"dangling symbolic link to {os.readlink(path)!r}"
        return f"{type(error).__name__}: {error.strerror or error}"
    return "not a regular file"


def _metadata(path: str) -> FileMetadata:
    info = os.stat(path)
    return FileMetadata(path, info.st_size, info.st_mtime)


@contextlib.contextmanager
def open_input(path: str) -> Iterator[Any]:
    """``path`` opened for reading, decompressed by its extension.

    ``.gz`` and ``.bz2`` are decompressed by Python's ``gzip``/``bz2`` readers, which
    inflate only as much as each read asks for: Beam's ``CompressedFile`` inflates a
    whole 16 MiB compressed block at once, so one highly compressible line (or a
    deliberate "zip bomb") would take its full decompressed size in memory. Other
    compressions go through Beam.
    """
    name = path.lower()
    if not name.endswith((".gz", ".bz2")):
        with FileSystems.open(path) as stream:
            yield stream
        return
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        # closing these leaves ``raw`` open: the outer ``with`` closes it
        with (gzip.GzipFile(fileobj=raw, mode="rb") if name.endswith(".gz") else bz2.BZ2File(raw, "rb")) as stream:
            yield stream


class _MatchFn(beam.DoFn):
    """A pattern → the files it matches, then an :class:`Unmatchable` for each thing it cannot read."""

    def process(self, pattern: str) -> Iterator[Union[FileMetadata, Unmatchable]]:
        matched = match_pattern(pattern)
        yield from matched.files
        yield from matched.problems


class _ParseFilesFn(beam.DoFn):
    def __init__(self, kind: str, settings: ReadSettings):
        self.kind, self.settings = kind, settings

    def process(self, found: Union[FileMetadata, Unmatchable]) -> Iterator:
        if isinstance(found, Unmatchable):
            count(f"read.files.{self.kind}")
            yield reject("read", "unreadable_file", found.detail, origin=found.path)
            return
        path = found.path
        count(f"read.files.{self.kind}")
        try:
            with open_input(path) as stream:
                for item in parse_file(stream, path, self.kind, self.settings):
                    if isinstance(item, ReadReject):
                        yield reject("read", item.reason, item.detail, origin=item.origin)
                        continue
                    if self.kind == "chat_history" and not item.success and not self.settings.include_failures:
                        yield reject("read", "failed_tool_call",
                                     "the tool call ended in an error (use --include_failures to read it)",
                                     origin=item.origin)
                        continue
                    count("read.out")
                    yield new_record(
                        item.sql,
                        item.question,
                        context=item.context,
                        success=item.success,
                        db_id=item.db_id,
                        source=item.source,
                        origin=item.origin,
                        frequency=frequency_of(item.extra),
                        extra=item.extra,
                    )
        except Exception as error:  # noqa: BLE001 - an unreadable file is a dead letter, not a crash
            yield reject("read", "unreadable_file", f"{type(error).__name__}: {str(error)[:300]}", origin=path)


class MatchFiles(beam.PTransform):
    """Patterns → the ``FileMetadata`` of each file they match (:func:`match_pattern`), and an
    :class:`Unmatchable` for each dangling link or link loop they reach, for the reader to
    turn into a dead letter."""

    def expand(self, patterns):
        return patterns | beam.ParDo(_MatchFn())


class ReadInputs(beam.PTransform):
    """Read every file matching ``patterns`` as ``kind`` (sql_logs, chat_history, seed_pairs)."""

    def __init__(self, kind: str, patterns: Sequence[str], settings: ReadSettings = ReadSettings()):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown input kind {kind!r}")
        self.kind, self.patterns, self.settings = kind, list(patterns), settings

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> MatchFiles()
            | "Parse" >> beam.ParDo(_ParseFilesFn(self.kind, self.settings)).with_outputs(DEAD, main="records")
        )


def split_patterns(value: Optional[str]) -> list[str]:
    """``"a/*.sql, b.jsonl"`` → ``["a/*.sql", "b.jsonl"]``."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]
