"""Input files, matched and opened the one way every reader of them shares: the logs, chats and
seed pairs (ingest), the chat files read again for ``--context full`` (ingest), the benchmark
files of ``--decontaminate`` (select) and the options' checks before the run (pipeline).

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
import json
import os
import re
from typing import Any, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems


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


class MatchFiles(beam.PTransform):
    """Patterns → the ``FileMetadata`` of each file they match (:func:`match_pattern`), and an
    :class:`Unmatchable` for each dangling link or link loop they reach, for the reader to
    turn into a dead letter."""

    def expand(self, patterns):
        return patterns | beam.ParDo(_MatchFn())


def read_json_file(path: str) -> Any:
    """The JSON value of a small settings file (``--personas_file``, ``--teachings``) on any Beam
    filesystem; ``OSError`` when it cannot be read, ``ValueError`` ("not JSON: …") when it is no JSON."""
    with FileSystems.open(path) as handle:
        text = handle.read().decode("utf-8")
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
