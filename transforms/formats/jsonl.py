"""JSON records: ``.jsonl`` (one object per line) and ``.json`` (an array of objects, or one object).

How a file is read:

* ``.jsonl`` / ``.ndjson`` (also compressed): line by line, streaming; origins are
  ``path:line``. A line that is not JSON is ``invalid_json``; a last line that is not
  JSON and has no newline is ``truncated_json``.
* anything else: when the first non-blank line parses on its own as JSON, the file is
  read line by line too (one-line ``.json`` files and JSONL saved as ``.json``);
  otherwise the whole file is one JSON document (loaded whole): an array of objects
  (origins ``path#index``) or a single object (``path#0``). A document that does not
  parse is one reject for the file (``invalid_json``, or ``truncated_json`` when the
  error is at its end).

Each object goes through :func:`transforms.formats._common.record_to_pair`.
"""

from __future__ import annotations

import json
import re
from typing import Any, BinaryIO, Iterator, NamedTuple, Optional, Union

from transforms.formats import RawPair, ReadReject
from transforms.formats._common import (
    base_name,
    check_source,
    decode_line,
    excerpt,
    read_all,
    read_lines,
    record_to_pair,
)

_LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
_WHITESPACE = b" \t\r\n"


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


def iter_json_values(stream: BinaryIO, path: str) -> Iterator[Union[JsonValue, ReadReject]]:
    """The top-level values of a JSON or JSONL file, streaming for JSONL (see the module docstring).

    In document mode the values of a top-level array come out one by one
    (``path#index``); any other document comes out as one value (origin ``path``).
    """
    lines = read_lines(stream)
    if base_name(path).endswith(_LINE_SUFFIXES):
        yield from _values_of_lines(lines, path, ())
        return
    buffered = []
    for number, raw in lines:
        buffered.append((number, raw))
        stripped = raw.strip(_WHITESPACE)
        if number == 1 and stripped.startswith(b"\xef\xbb\xbf"):
            stripped = stripped[3:].strip(_WHITESPACE)
        if not stripped:
            continue
        if not stripped.startswith(b"[") and _parses(stripped):
            yield from _values_of_lines(lines, path, buffered)
            return
        break
    if not buffered:
        return
    data = b"".join(raw for _, raw in buffered) + read_all(stream)
    document = load_document(data, path)
    if isinstance(document, ReadReject):
        yield document
    elif document is _EMPTY:
        return
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield JsonValue(f"{path}#{index}", value, False)
    else:
        yield JsonValue(path, document, False)


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


_EMPTY = object()


def load_document(data: bytes, path: str) -> Any:
    """A whole JSON document, ``_EMPTY`` for a blank file, or one ``ReadReject`` for the file.

    Bytes that are not UTF-8 do not fail the document: they decode to lone surrogates,
    and the record holding them is rejected (``not_utf8``) on its own.
    """
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return _EMPTY
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        reason = "truncated_json" if _cut_short(error, text) else "invalid_json"
        return ReadReject(path, reason, f"{error.msg} at line {error.lineno} column {error.colno}")
    except (ValueError, RecursionError) as error:
        return ReadReject(path, "invalid_json", excerpt(f"{type(error).__name__}: {error}"))


def _cut_short(error: json.JSONDecodeError, text: str) -> bool:
    """Whether the JSON text ended before its value did (rather than being wrong on the way)."""
    return error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")


def _values_of_lines(lines, path: str, replay) -> Iterator[Union[JsonValue, ReadReject]]:
    for source in (replay, lines):
        for number, raw in source:
            origin = f"{path}:{number}"
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


def parse_json_records(
    stream: BinaryIO,
    path: str,
    sql_field: str = "sql",
    question_field: Optional[str] = None,
    db_id_field: Optional[str] = None,
    source: str = "log",
    *,
    success_field: Optional[str] = "success",
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per JSON object holding ``sql_field``.

    ``question_field`` and ``db_id_field`` name the question and database columns
    (None: not present); ``success_field`` (a bool, when present) marks failed
    queries. Other fields go to ``extra`` (non-strings as JSON). A value that is not
    an object is ``wrong_type:record``.
    """
    check_source(source)
    return _parse_json_records(stream, path, sql_field, question_field, db_id_field, source, success_field)


def _parse_json_records(stream, path, sql_field, question_field, db_id_field, source, success_field):
    for item in iter_json_values(stream, path):
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
