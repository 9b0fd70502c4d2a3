"""Helpers shared by the parsers: text checks, record → pair mapping, CSV and line readers.

The line and CSV readers here are *bounded*: a line longer than ``max_bytes`` is
never held whole (it is read in pieces, its first bytes kept for the reject and the
rest skipped), so one huge line in a log costs a fixed amount of memory, not its size.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import decimal
import io
import json
import re
from typing import Any, BinaryIO, Iterator, Mapping, NamedTuple, Optional, Union

from transforms.formats.types import SOURCES, RawPair, ReadReject

#: Lone surrogates: what ``surrogateescape`` decoding makes of bytes that are not UTF-8
#: (and what a JSON ``"\ud800"`` escape decodes to). Neither can be written as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Compression suffixes Beam's filesystems strip when they open a file.
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".zstd", ".deflate", ".lz4", ".xz")
#: How much of an offending value a reject's ``detail`` quotes.
_DETAIL_CHARS = 200
#: Default of ``--max_sql_bytes``: the largest input item (line, record, statement) a parser reads.
MAX_SQL_BYTES = 1 << 20
#: Reject reason for an item over ``--max_sql_bytes``.
TOO_LONG = "sql_too_long"
#: How much of an item over the limit its reject quotes (the reject must stay small).
_PREVIEW = 80
#: Bytes (or characters) read at a time while skipping the rest of a line over the limit.
_SKIP_CHUNK = 1 << 16

Item = Union[RawPair, ReadReject]


def check_source(source: str) -> str:
    """``source`` if it is a known source label, else ``ValueError``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return source


def base_name(path: str) -> str:
    """``path`` lower-cased without a compression suffix.

    >>> base_name("logs/Q.JSONL.gz")
    'logs/q.jsonl'
    """
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def excerpt(text: Any, limit: int = _DETAIL_CHARS) -> str:
    """A short, printable quote of ``text`` for a reject's detail.

    >>> excerpt("x" * 300, 5)
    'xxxxx… (300 ch)'
    """
    text = text if isinstance(text, str) else repr(text)
    text = _SURROGATE.sub("\ufffd", text).replace("\x00", "\\x00")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} ch)"


def has_bad_unicode(text: str) -> bool:
    """Whether ``text`` holds characters that cannot be encoded as UTF-8 (lone surrogates)."""
    return _SURROGATE.search(text) is not None


def find_bad_unicode(value: Any) -> Optional[str]:
    """The first string inside a JSON-like ``value`` that cannot be encoded as UTF-8, if any."""
    try:  # the common case, checked in C: everything encodes
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    except (TypeError, ValueError):  # not plain JSON data: walk it
        pass
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_bad_unicode(item):
                return item
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def text_problem(text: str, origin: str, field: str) -> Optional[ReadReject]:
    """A reject when ``text`` holds bytes that were not UTF-8 or a NUL character."""
    if has_bad_unicode(text):
        return ReadReject(origin, "not_utf8", f"{field}: {excerpt(text)}")
    if "\x00" in text:
        return ReadReject(origin, "nul_byte", f"{field}: {excerpt(text)}")
    return None


def stringify(value: Any) -> Optional[str]:
    """A value for ``RawPair.extra`` (strings as they are, everything else as JSON), or None to drop it.

    >>> stringify(3), stringify(True), stringify({"b": 1, "a": [1]}), stringify(None)
    ('3', 'true', '{"a": [1], "b": 1}', None)
    """
    if value is None or isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})


def as_bool(value: Any) -> Optional[bool]:
    """A success flag from a JSON bool or a CSV-style string; None when it is neither.

    >>> as_bool(True), as_bool("FALSE"), as_bool(" 1 "), as_bool("maybe"), as_bool(1)
    (True, False, True, None, None)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _as_text(value: Any) -> Optional[str]:
    """``value`` as str when it is text (bytes are decoded as strict UTF-8, surrogates marking bad bytes)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return None


def record_to_pair(
    record: Mapping[str, Any],
    origin: str,
    *,
    sql_field: str,
    question_field: Optional[str],
    db_id_field: Optional[str],
    source: str,
    success_field: Optional[str] = "success",
    check_unicode: bool = True,
) -> Item:
    """Map one flat record (a JSON object, CSV row or parquet row) to a pair or a reject.

    Rules: a missing or null ``sql_field`` is ``missing_field:<name>``; a value of the
    wrong type is ``wrong_type:<name>`` (SQL and question must be text; a db id may
    also be an integer; ``success`` must be a bool or a CSV-style true/false word);
    blank SQL is ``empty_sql``. Every other non-null field goes to ``extra``.
    ``check_unicode=False`` skips looking for lone surrogates (the reader knows there are none).

    >>> pair = record_to_pair({"sql": " SELECT 1 ", "q": "One?", "ms": 3}, "f:1", sql_field="sql",
    ...                       question_field="q", db_id_field=None, source="log")
    >>> pair.sql, pair.question, pair.success, pair.extra
    ('SELECT 1', 'One?', True, {'ms': '3'})
    >>> record_to_pair({"sql": 7}, "f:2", sql_field="sql", question_field=None, db_id_field=None, source="log")
    ReadReject(origin='f:2', reason='wrong_type:sql', detail='int: 7')
    """
    bad = find_bad_unicode(record) if check_unicode else None
    if bad is not None:
        return ReadReject(origin, "not_utf8", excerpt(bad))
    raw_sql = record.get(sql_field)
    if raw_sql is None:
        return ReadReject(origin, f"missing_field:{sql_field}", f"no {sql_field!r} in record")
    sql = _as_text(raw_sql)
    if sql is None:
        return ReadReject(origin, f"wrong_type:{sql_field}", f"{type(raw_sql).__name__}: {excerpt(raw_sql)}")
    problem = text_problem(sql, origin, sql_field)
    if problem:
        return problem
    sql = sql.strip()
    if not sql:
        return ReadReject(origin, "empty_sql", f"{sql_field!r} is blank")

    question = None
    if question_field:
        raw = record.get(question_field)
        if raw is not None:
            question = _as_text(raw)
            if question is None:
                return ReadReject(origin, f"wrong_type:{question_field}", f"{type(raw).__name__}: {excerpt(raw)}")
            problem = text_problem(question, origin, question_field)
            if problem:
                return problem
            question = question.strip() or None

    db_id = None
    if db_id_field:
        raw = record.get(db_id_field)
        if raw is not None:
            if isinstance(raw, int) and not isinstance(raw, bool):
                db_id = str(raw)
            else:
                db_id = _as_text(raw)
                if db_id is None:
                    return ReadReject(origin, f"wrong_type:{db_id_field}", f"{type(raw).__name__}: {excerpt(raw)}")
                problem = text_problem(db_id, origin, db_id_field)
                if problem:
                    return problem
                db_id = db_id.strip() or None

    success = True
    if success_field and record.get(success_field) is not None:
        raw = record[success_field]
        if not (isinstance(raw, str) and not raw.strip()):
            flag = as_bool(raw)
            if flag is None:
                return ReadReject(origin, f"wrong_type:{success_field}", f"{type(raw).__name__}: {excerpt(raw)}")
            success = flag

    used = {sql_field, question_field, db_id_field, success_field}
    extra = {}
    for key, value in record.items():
        if key in used or not isinstance(key, str):
            continue
        text = stringify(value)
        if text is not None and text != "":
            extra[key] = text
    return RawPair(sql, question, (), success, db_id, source, origin, extra)


class LongLine(NamedTuple):
    """A line over the byte limit, as :func:`read_lines` gives it: its size and its first bytes only."""

    size: int  # bytes, newline excluded
    preview: bytes


def too_long(origin: str, size: int, limit: int, preview: Any, at_least: bool = False) -> ReadReject:
    """The ``sql_too_long`` reject for an item of ``size`` bytes; it quotes only a short preview.

    >>> too_long("q.jsonl:3", 5_000_000, 1_048_576, b'{"sql": "SELECT').detail
    '5000000 bytes, over --max_sql_bytes 1048576: {"sql": "SELECT…'
    """
    if isinstance(preview, (bytes, bytearray)):
        preview = bytes(preview[:_PREVIEW]).decode("utf-8", "replace")
    quote = excerpt(preview[:_PREVIEW], _PREVIEW)
    return ReadReject(origin, TOO_LONG, f"{'at least ' if at_least else ''}{size} bytes, "
                                        f"over --max_sql_bytes {limit}: {quote}…")


def line_source(stream: BinaryIO) -> BinaryIO:
    """``stream`` when its ``readline`` takes a size (any ``io`` object), else a buffered view of it.

    Beam's ``CompressedFile`` (``.gz``/``.bz2``…) has a ``readline()`` without a size,
    which would hold a whole line however long: it is read through ``read(n)`` instead.
    """
    if isinstance(stream, io.IOBase):
        return stream
    return io.BufferedReader(_Readable(stream), buffer_size=_SKIP_CHUNK)


def peekable(stream: BinaryIO) -> io.BufferedReader:
    """``stream`` when it is a buffered reader (it can ``peek``), else a buffered view of it (not owning it)."""
    if isinstance(stream, io.BufferedReader):
        return stream
    return io.BufferedReader(_Readable(stream), buffer_size=_SKIP_CHUNK)


def read_lines(stream: BinaryIO, max_bytes: int = MAX_SQL_BYTES) -> Iterator[tuple[int, Union[bytes, LongLine]]]:
    """``(line_number, raw_line)`` for each line of a binary stream, 1-based, newline kept.

    A line of more than ``max_bytes`` bytes (newline excluded) comes out as a
    :class:`LongLine`: it is read in pieces and skipped, never held whole. The check is
    one length comparison per line (the hot path pays nothing else).

    >>> list(read_lines(io.BytesIO(b"ab\\nabcdef\\nc"), max_bytes=3))
    [(1, b'ab\\n'), (2, LongLine(size=6, preview=b'abcd')), (3, b'c')]
    """
    readline = line_source(stream).readline
    limit = max_bytes + 1
    number = 0
    while True:
        raw = readline(limit)
        if not raw:
            return
        number += 1
        if len(raw) == limit and raw[-1] != 10:  # 10 is a newline: without one the line goes on
            raw = _skip_line(readline, raw)
        yield number, raw


def _skip_line(readline, head: bytes) -> LongLine:
    """Read the rest of an over-long line in bounded pieces; keep its size and first bytes."""
    size = len(head)
    while True:
        piece = readline(_SKIP_CHUNK)
        size += len(piece)
        if not piece:
            return LongLine(size, head[:_PREVIEW])
        if piece[-1] == 10:
            return LongLine(size - 1, head[:_PREVIEW])


def read_all(stream: BinaryIO, chunk: int = 1 << 24) -> bytes:
    """The rest of a stream (Beam's ``CompressedFile.read()`` without a size returns one buffer only)."""
    parts = []
    while True:
        data = stream.read(chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


def decode_line(raw: bytes, origin: str, first: bool = False) -> Union[str, ReadReject]:
    """Strict UTF-8 decoding of one line (a BOM is dropped from the first line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return ReadReject(origin, "not_utf8", f"{error.reason} at byte {error.start}: {excerpt(raw[:80])}")
    if first and text.startswith("\ufeff"):
        text = text[1:]
    return text


@contextlib.contextmanager
def text_of(stream: BinaryIO) -> Iterator[io.TextIOWrapper]:
    """A text view of a binary stream for the ``csv`` module, detached (not closed) afterwards.

    Decoding is UTF-8 with ``surrogateescape`` so that bad bytes reach the record
    they belong to (and reject that record only); a leading BOM is dropped.
    """
    buffered = io.BufferedReader(_Readable(stream), buffer_size=1 << 16)
    wrapper = io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield wrapper
    finally:
        wrapper.detach()


class _Readable(io.RawIOBase):
    """Adapts any object with ``read`` to what ``io.TextIOWrapper`` needs, without owning it."""

    def __init__(self, stream: BinaryIO):
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:  # the caller owns the underlying stream
        pass


class _LineTooLong(Exception):
    """Raised by :class:`_TextLines` for a line over the limit; ``csv.reader`` drops the record it was in."""

    def __init__(self, size: int, preview: str):
        super().__init__(size)
        self.size, self.preview = size, preview


class _TextLines:
    """The lines of a text stream for ``csv.reader``, each read with a bounded ``readline``.

    A line of more than ``max_chars`` characters is skipped in pieces and raises
    :class:`_LineTooLong` instead of being returned: ``csv.reader`` passes the exception
    on and starts its next record afresh, as it does after a ``csv.Error``. (An
    iterator class, not a generator: a generator that raised could not go on.)
    """

    __slots__ = ("_readline", "_limit", "number")

    def __init__(self, text: io.TextIOBase, max_chars: int):
        self._readline = text.readline
        self._limit = max_chars + 1
        self.number = 0  # lines read so far

    def __iter__(self) -> "_TextLines":
        return self

    def __next__(self) -> str:
        line = self._readline(self._limit)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) == self._limit and line[-1] not in "\r\n":
            size = len(line)
            while True:
                piece = self._readline(_SKIP_CHUNK)
                size += len(piece)
                if not piece or piece[-1] in "\r\n":
                    raise _LineTooLong(size, line[:_PREVIEW])
        return line


def csv_rows(
    stream: BinaryIO, path: str, max_bytes: int = MAX_SQL_BYTES, **reader_options: Any
) -> Iterator[tuple[int, Union[list[str], ReadReject]]]:
    """``(start_line, row)`` for each CSV record, or ``(start_line, ReadReject)`` for a record the
    ``csv`` module refuses (``csv_error``) or one over ``max_bytes`` (``sql_too_long``) — reading
    goes on with the next record.

    Blank lines are skipped. Quoted fields may span lines; ``start_line`` is the line
    the record begins on. Memory stays bounded: no line of more than ``max_bytes``
    characters is held, and the ``csv`` module's field size limit is set to ``max_bytes``
    (it is per process; every reader here uses the same ``--max_sql_bytes``). Sizes
    are checked in characters here (never more than the bytes); callers that need the
    exact byte count of a cell use :func:`over_bytes`.
    """
    if csv.field_size_limit() != max_bytes:
        csv.field_size_limit(max_bytes)
    with text_of(stream) as text:
        lines = _TextLines(text, max_bytes)
        reader = csv.reader(lines, **reader_options)
        while True:
            start = lines.number + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except _LineTooLong as error:
                yield start, too_long(f"{path}:{start}", error.size, max_bytes, error.preview, at_least=True)
                continue
            except csv.Error as error:
                if str(error).startswith("field larger than field limit"):
                    yield start, too_long(f"{path}:{start}", max_bytes + 1, max_bytes, "", at_least=True)
                else:
                    yield start, ReadReject(f"{path}:{start}", "csv_error", str(error))
                continue
            except UnicodeError as error:  # not reachable with surrogateescape, kept as a guard
                yield start, ReadReject(f"{path}:{start}", "not_utf8", str(error))
                return
            # csv counts lines that hold only a newline as records; skip those
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield start, row


def over_bytes(text: str, max_bytes: int) -> Optional[int]:
    """The UTF-8 size of ``text`` when it is over ``max_bytes``, else None (encoded only when it could be).

    >>> over_bytes("abc", 3), over_bytes("\u00e9\u00e9", 3), over_bytes("x" * 10, 100)
    (None, 4, None)
    """
    if len(text) * 4 <= max_bytes:
        return None
    size = len(text.encode("utf-8", "surrogatepass"))  # never raises; a bad byte counts 3
    return size if size > max_bytes else None
