"""JSON records: ``.jsonl`` (one object per line) and ``.json`` (an array of objects, or one object).

How a file is read:

* ``.jsonl`` / ``.ndjson`` (also compressed): line by line, streaming; origins are
  ``path:line``. A line that is not JSON is ``invalid_json``; a last line that is not
  JSON and has no newline is ``truncated_json``.
* anything else: a file whose first non-blank character is ``[`` is one JSON array,
  read element by element (origins ``path#index``), never whole and never by lines
  (a minified array is one line). Otherwise, when the first non-blank line parses on
  its own as JSON, the file is read line by line too (JSONL saved as ``.json``); else
  it is one JSON document holding a single object (``path#0``). An element that does
  not parse, or a document that ends inside one, stops the file there with one reject
  naming the element (``invalid_json`` / ``truncated_json``): the elements before it
  have come out, where the array ends after it is unknown.

Every line, array element or document is limited to ``max_bytes``
(``--max_sql_bytes``), checked before it is parsed: a larger one is one
``sql_too_long`` reject (quoting its first bytes only) and reading goes on after it;
it is skipped in bounded pieces, never held whole.

Each object goes through :func:`transforms.formats.shared.record_to_pair`.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, BinaryIO, Iterator, NamedTuple, Optional, Union

from transforms.formats.shared import (
    MAX_SQL_BYTES,
    LongLine,
    base_name,
    check_source,
    decode_line,
    excerpt,
    over_bytes,
    peekable,
    read_lines,
    record_to_pair,
    too_long,
)
from transforms.formats.types import RawPair, ReadReject

_LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
#: Bytes looked at to tell a JSON array from JSON lines.
_PEEK = 1 << 12
#: Bytes read at a time from a JSON document (more while one value is pending).
_READ_BYTES = 1 << 20
#: An error this close to the end of what has been read may be a value cut by the read.
_CUT_MARGIN = 64
_DECODER = json.JSONDecoder()
_BLANKS = re.compile(r"[ \t\r\n]*")
_SEPARATOR = re.compile(r"[ \t\r\n]*,[ \t\r\n]*")
#: The rest of a JSON string: up to its closing quote, or a final lone backslash.
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)
#: What changes the structure outside strings.
_STRUCTURE = re.compile(r'[\[\]{}",]')


class JsonValue(NamedTuple):
    """One JSON value read from a file, with where it starts."""

    origin: str  # "path:line" (line mode) or "path#index" / "path" (document mode)
    value: Any
    line_mode: bool
    clean: bool = False  # True: no string inside can hold a lone surrogate (no need to look)


#: A JSON escape of a UTF-16 surrogate, the only way a strictly decoded line can yield one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def may_hold_surrogates(text: str) -> bool:
    r"""Whether JSON text decoded strictly from UTF-8 can give a string with a lone surrogate.

    >>> may_hold_surrogates('{"a": "caf\u00e9"}'), may_hold_surrogates('{"a": "\\ud800"}')
    (False, True)
    """
    return "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


def iter_json_values(
    stream: BinaryIO, path: str, max_bytes: int = MAX_SQL_BYTES
) -> Iterator[Union[JsonValue, ReadReject]]:
    """The top-level values of a JSON or JSONL file, streaming both (see the module docstring).

    In document mode the values of a top-level array come out one by one
    (``path#index``); any other document comes out as one value (origin ``path``).
    A line or array element over ``max_bytes`` is one ``sql_too_long`` reject and is
    skipped without being held whole.
    """
    if base_name(path).endswith(_LINE_SUFFIXES):
        yield from _values_of_lines(read_lines(stream, max_bytes), path, (), max_bytes)
        return
    reader = peekable(stream)
    head = reader.peek(_PEEK)[:_PEEK]
    first = head.lstrip(_WHITESPACE)
    if first.startswith(_BOM):
        first = first[len(_BOM):].lstrip(_WHITESPACE)
    if first.startswith(b"["):  # an array, maybe all on one line: never read it by lines
        yield from _values_of_document(reader, b"", path, max_bytes)
        return
    if not first and len(head) < _PEEK:  # nothing but blanks
        return
    lines = read_lines(reader, max_bytes)
    buffered = []
    for number, raw in lines:
        buffered.append((number, raw))
        if isinstance(raw, LongLine):  # a huge first record: read the rest as lines too
            yield from _values_of_lines(lines, path, buffered, max_bytes)
            return
        stripped = raw.strip(_WHITESPACE)
        if number == 1 and stripped.startswith(_BOM):
            stripped = stripped[len(_BOM):].strip(_WHITESPACE)
        if not stripped:
            continue
        if not stripped.startswith(b"[") and _parses(stripped):
            yield from _values_of_lines(lines, path, buffered, max_bytes)
            return
        break
    if buffered:
        yield from _values_of_document(reader, b"".join(raw for _, raw in buffered), path, max_bytes)


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _cut_short(error: json.JSONDecodeError, text: str) -> bool:
    """Whether the JSON text ended before its value did (rather than being wrong on the way)."""
    return error.msg.startswith("Unterminated string") or not text[error.pos:].strip()


def _values_of_lines(lines, path: str, replay, max_bytes: int) -> Iterator[Union[JsonValue, ReadReject]]:
    for source in (replay, lines):
        for number, raw in source:
            origin = f"{path}:{number}"
            if isinstance(raw, LongLine):
                yield too_long(origin, raw.size, max_bytes, raw.preview)
                continue
            text = decode_line(raw, origin, first=number == 1)
            if isinstance(text, ReadReject):
                yield text
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                truncated = not raw.endswith(b"\n") and _cut_short(error, text)
                yield ReadReject(origin, "truncated_json" if truncated else "invalid_json",
                                 f"{error.msg} at column {error.colno}")
                continue
            except (ValueError, RecursionError) as error:
                yield ReadReject(origin, "invalid_json", excerpt(f"{type(error).__name__}: {error}"))
                continue
            # strictly decoded: only a \uD8xx escape can make a lone surrogate, and it is rare
            yield JsonValue(origin, value, True, clean=not may_hold_surrogates(text))


class _Document:
    """A JSON document read in bounded pieces: ``text[pos:]`` is what is not consumed yet.

    Text is decoded from UTF-8 with ``surrogateescape`` (bad bytes reach the record
    holding them, which is rejected on its own); reads grow with what is pending, so
    re-parsing an element cut by a read costs at most twice its size.
    """

    def __init__(self, stream: BinaryIO, prefix: bytes):
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.text = self._decoder.decode(prefix)
        if self.text.startswith("\ufeff"):
            self.text = self.text[1:]
        self.started = bool(self.text)
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        """Read more text (keeping ``text[pos:]``); False at the end of the stream."""
        if self.eof:
            return False
        pending = len(self.text) - self.pos
        data = self._stream.read(max(_READ_BYTES, pending))
        text = self._decoder.decode(data or b"", final=not data)
        if not self.started and text:
            self.started = True
            text = text[1:] if text.startswith("\ufeff") else text
        self.text = self.text[self.pos:] + text
        self.pos = 0
        self.eof = not data
        return bool(data) or bool(text)

    def skip_blanks(self) -> bool:
        """Move ``pos`` past whitespace; False when the document ends first."""
        while True:
            match = _BLANKS.match(self.text, self.pos)
            self.pos = match.end()
            if self.pos < len(self.text):
                return True
            if not self.more():
                return False


def _values_of_document(stream, prefix: bytes, path: str, max_bytes: int) -> Iterator[Union[JsonValue, ReadReject]]:
    """The values of one JSON document, streaming: a top-level array element by element.

    An element over ``max_bytes`` is skipped by a scanner that follows strings and
    brackets in bounded pieces (``sql_too_long``); an element that does not parse (or
    the end of the document arriving first) stops the file with one reject naming
    the element (``invalid_json`` / ``truncated_json``) — the elements before it have
    already come out, as a part-way read error does for a Parquet file.
    """
    doc = _Document(stream, prefix)
    if not doc.skip_blanks():
        return  # a blank file is a valid, empty input
    if doc.text[doc.pos] != "[":  # one value: the whole document
        item, _ = _element(doc, path, max_bytes)
        if isinstance(item, JsonValue) and doc.skip_blanks():
            yield ReadReject(path, "invalid_json", f"extra data after the value: {excerpt(doc.text[doc.pos:doc.pos + 40])}")
            return
        yield item
        return
    doc.pos += 1
    index = 0
    while True:
        separator = _SEPARATOR.match(doc.text, doc.pos) if index else None
        if separator is not None and separator.end() < len(doc.text):  # the usual case, in one step
            doc.pos = separator.end()
            item, resumable = _element(doc, f"{path}#{index}", max_bytes)
            yield item
            if not resumable:
                return
            index += 1
            continue
        if not doc.skip_blanks():
            yield ReadReject(f"{path}#{index}", "truncated_json", "the array ends before its closing ]")
            return
        char = doc.text[doc.pos]
        if char == "]":
            doc.pos += 1
            if doc.skip_blanks():
                yield ReadReject(path, "invalid_json",
                                 f"extra data after the array: {excerpt(doc.text[doc.pos:doc.pos + 40])}")
            return
        if index:
            if char != ",":
                yield ReadReject(f"{path}#{index}", "invalid_json", f"expected ',' or ']', found {char!r}")
                return
            doc.pos += 1
            if not doc.skip_blanks():
                yield ReadReject(f"{path}#{index}", "truncated_json", "the array ends before its closing ]")
                return
        item, resumable = _element(doc, f"{path}#{index}", max_bytes)
        yield item
        if not resumable:
            return
        index += 1


def _element(doc: _Document, origin: str, max_bytes: int) -> tuple[Union[JsonValue, ReadReject], bool]:
    """Decode the value at ``doc.pos`` (reading more while it is cut short), or reject it.

    Also says whether reading can go on after it (False: where the value ends is unknown).
    """
    while True:
        start = doc.pos
        try:
            value, end = _DECODER.raw_decode(doc.text, start)
        except json.JSONDecodeError as error:
            cut = _cut_short(error, doc.text)
            if not cut and (doc.eof or len(doc.text) - error.pos > _CUT_MARGIN):
                return ReadReject(origin, "invalid_json", f"{error.msg} at character {error.pos - start} "
                                                          "of the value"), False
            if len(doc.text) - start > max_bytes:
                return _skip_element(doc, origin, max_bytes), True
            if not doc.more():
                reason = "truncated_json" if cut else "invalid_json"
                return ReadReject(origin, reason, f"{error.msg}: the file ends inside the value"), False
            continue
        except RecursionError:
            _skip_element(doc, origin, max_bytes)
            return ReadReject(origin, "invalid_json", "RecursionError: nested too deeply"), True
        if end == len(doc.text) and doc.more():  # a number may go on in the next read
            continue
        size = end - start
        doc.pos = end
        if size > max_bytes:
            return too_long(origin, size, max_bytes, doc.text[start:start + 80], at_least=True), True
        exact = over_bytes(doc.text[start:end], max_bytes) if size * 4 > max_bytes else None
        if exact is not None:
            return too_long(origin, exact, max_bytes, doc.text[start:start + 80]), True
        return JsonValue(origin, value, False), True


def _skip_element(doc: _Document, origin: str, max_bytes: int) -> ReadReject:
    """Skip the over-long value at ``doc.pos`` without holding it: follow strings and brackets."""
    preview = doc.text[doc.pos:doc.pos + 80]
    skipped = 0
    depth, in_string, escaped = 0, False, False
    text, i = doc.text, doc.pos
    while True:
        end = None
        while i < len(text):
            if escaped:
                i, escaped = i + 1, False
            elif in_string:
                i = _STRING_BODY.match(text, i).end()
                if i == len(text):
                    break
                if text[i] == "\\":  # a backslash as the last character: the escape is in the next read
                    i, escaped = i + 1, True
                    continue
                i, in_string = i + 1, False
                if depth == 0:
                    end = i
                    break
            else:
                match = _STRUCTURE.search(text, i)
                if match is None:
                    i = len(text)
                    break
                char, i = match.group(), match.end()
                if char == '"':
                    in_string = True
                elif char in "[{":
                    depth += 1
                elif depth == 0:  # a ',' or closing bracket of the enclosing array ends a bare value
                    end = match.start()
                    break
                elif char in "]}":
                    depth -= 1
                    if depth == 0:
                        end = i
                        break
        if end is not None:
            skipped += end - doc.pos
            doc.pos = end
            return too_long(origin, skipped, max_bytes, preview, at_least=True)
        skipped += len(text) - doc.pos
        doc.pos = len(text)
        if not doc.more():
            return too_long(origin, skipped, max_bytes, preview, at_least=True)
        text, i = doc.text, 0


def parse_json_records(
    stream: BinaryIO,
    path: str,
    sql_field: str = "sql",
    question_field: Optional[str] = None,
    db_id_field: Optional[str] = None,
    source: str = "log",
    *,
    success_field: Optional[str] = "success",
    max_sql_bytes: int = MAX_SQL_BYTES,
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per JSON object holding ``sql_field``.

    ``question_field`` and ``db_id_field`` name the question and database columns
    (None: not present); ``success_field`` (a bool, when present) marks failed
    queries. Other fields go to ``extra`` (non-strings as JSON). A value that is not
    an object is ``wrong_type:record``. A line or element over ``max_sql_bytes`` is
    ``sql_too_long``.
    """
    check_source(source)
    return _parse_json_records(stream, path, sql_field, question_field, db_id_field, source, success_field,
                               max_sql_bytes)


def _parse_json_records(stream, path, sql_field, question_field, db_id_field, source, success_field, max_sql_bytes):
    for item in iter_json_values(stream, path, max_sql_bytes):
        if isinstance(item, ReadReject):
            yield item
            continue
        origin = item.origin if item.line_mode or item.origin != path else f"{path}#0"
        if not isinstance(item.value, dict):
            yield ReadReject(origin, "wrong_type:record", f"{type(item.value).__name__}: {excerpt(item.value)}")
            continue
        yield record_to_pair(
            item.value,
            origin,
            check_unicode=not item.clean,
            sql_field=sql_field,
            question_field=question_field,
            db_id_field=db_id_field,
            source=source,
            success_field=success_field,
        )
