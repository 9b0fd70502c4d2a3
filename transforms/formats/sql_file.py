"""SQL script files (``.sql``): one pair per statement, split with sqlglot's tokenizer.

Statements end at top-level semicolons. The tokenizer (not the parser) decides what
is top level, so semicolons inside strings, quoted identifiers, comments and
dollar-quoted bodies do not split, and a statement sqlglot cannot *parse* still
comes out whole. The file is read in chunks: memory stays bounded by the chunk size
and the longest statement, whatever the file's size.

Script lines that are not SQL are handled the way their tools do:

* psql meta-commands (a line starting with ``\\``, e.g. ``\\connect db``) end the
  current statement and are dropped;
* the data after a one-line ``COPY … FROM stdin;``, through its ``\\.`` line, is
  dropped (as ``pg_dump`` writes it);
* with ``dialect="tsql"`` a line holding only ``GO`` (optionally ``GO <n>``) ends
  the current statement.

Procedural bodies that use a custom delimiter (MySQL ``DELIMITER //``) are not
understood. Throughput is that of sqlglot's tokenizer, roughly 1–2 MB of SQL per
second per worker.

A statement the tokenizer cannot read (e.g. an unterminated string) is rejected as
``tokenize_error`` up to the first later line that ends with ``;``, and splitting
resumes there; the statements before it still come out. A statement longer than
``max_sql_bytes`` (``--max_sql_bytes``) is rejected as ``sql_too_long`` and skipped
the same way, without being held whole: the splitter gives up on a statement once
its pending text passes the limit, so memory stays bounded by about twice the
limit whatever the statement's size. A statement's text runs from its first token to its last: comments before it
(the ``--`` lines directly above go to ``extra["comment"]``) or after it are not
part of it.
"""

from __future__ import annotations

import codecs
import re
from typing import BinaryIO, Iterator, NamedTuple, Optional, Union

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from transforms.formats.shared import MAX_SQL_BYTES, TOO_LONG, excerpt, has_bad_unicode, over_bytes
from transforms.formats.types import RawPair, ReadReject

#: Bytes read from the stream at a time.
READ_BYTES = 1 << 20
#: Characters gathered before the tokenizer is run over them.
CHUNK_CHARS = 1 << 20
#: Longest statement accepted (bytes of UTF-8): ``--max_sql_bytes``'s default; longer ones are rejected.
MAX_STATEMENT_BYTES = MAX_SQL_BYTES
#: In recovery, how many candidate statement ends are tried before giving up on one.
_MAX_PROBES = 64

_LINE_ENDS_WITH_SEMICOLON = re.compile(r";[ \t]*\r?(?:\n|\Z)")
_GO_LINE = re.compile(r"[ \t]*GO(?:[ \t]+\d+)?[ \t]*\r?", re.I)
_COPY_FROM_STDIN = re.compile(r"[ \t]*COPY\b.*\bFROM[ \t]+STDIN\b.*;[ \t]*\r?", re.I)
_END_OF_COPY = re.compile(r"^\\\.[ \t]*\r?$", re.M)
_PSQL_CANDIDATE = re.compile(r"^[ \t]*(?:\\|COPY\b)", re.M | re.I)
_TSQL_CANDIDATE = re.compile(r"^[ \t]*GO\b", re.M | re.I)


class Statement(NamedTuple):
    """One statement of a script, as written."""

    text: str  # from its first token to its last, verbatim: no semicolon, no comment before or after
    line: int  # 1-based line of its first character
    comment: Optional[str]  # the ``--`` comment lines directly above it, without the dashes


class _Unsplittable(NamedTuple):
    line: int
    reason: str
    detail: str


class _ScriptLines:
    """Rewrites whole lines that are not SQL (see the module docstring), keeping every newline.

    Rewritten lines become ``;`` (a statement end) or become empty, so line numbers
    and the text of real statements are unchanged.
    """

    def __init__(self, tsql: bool):
        self._tsql = tsql
        self._candidate = _TSQL_CANDIDATE if tsql else _PSQL_CANDIDATE
        self._in_copy = False
        self._mid_line = False  # the next text continues a line already passed through

    def rewrite(self, text: str, whole_lines: bool = True) -> str:
        out = []
        pos = 0
        if self._mid_line:
            pos = text.find("\n") + 1 or len(text)
            out.append(text[:pos])
        self._mid_line = not whole_lines
        while pos < len(text):
            if self._in_copy:
                end = _END_OF_COPY.search(text, pos)
                if end is None:
                    out.append("\n" * text.count("\n", pos))
                    break
                out.append("\n" * text.count("\n", pos, end.start()))
                pos = end.end()
                self._in_copy = False
                continue
            match = self._candidate.search(text, pos)
            if match is None:
                out.append(text[pos:])
                break
            start = match.start()
            stop = text.find("\n", start)
            stop = len(text) if stop < 0 else stop
            line = text[start:stop]
            out.append(text[pos:start])
            if self._tsql:
                out.append(";" if _GO_LINE.fullmatch(line) else line)
            elif line.lstrip().startswith("\\"):
                out.append(";")
            else:
                out.append(line)
                self._in_copy = _COPY_FROM_STDIN.fullmatch(line) is not None
            pos = stop
        return "".join(out)


class _Splitter:
    """Incremental statement splitter: ``feed`` text, then ``close``."""

    def __init__(self, dialect: Optional[str], chunk_chars: int, max_bytes: int):
        resolved = Dialect.get_or_raise(dialect)
        self._tokenizer = resolved.tokenizer()
        self._lines = _ScriptLines(tsql=type(resolved).__name__.lower() == "tsql")
        self._chunk = chunk_chars
        self._max = max_bytes  # compared with characters while splitting (never more than the bytes)
        self._partial = ""  # input after its last newline, not rewritten yet
        self._buf = ""  # rewritten text that starts right after the last statement end
        self._line = 1  # line number of _buf[0]
        self._buf_at_line_start = True
        self._count_pos = 0  # incremental newline counting inside _buf
        self._count_line = 1
        self._next_attempt = chunk_chars
        self._discarding = False

    # -- input -----------------------------------------------------------------
    def feed(self, text: str) -> Iterator[Union[Statement, _Unsplittable]]:
        data = self._partial + text
        cut = data.rfind("\n") + 1
        if cut:
            self._buf += self._lines.rewrite(data[:cut])
            data = data[cut:]
        if len(data) > self._chunk:  # one enormous line: tokenize it in pieces
            self._buf += self._lines.rewrite(data, whole_lines=False)
            data = ""
        self._partial = data
        yield from self._drain(final=False)

    def close(self) -> Iterator[Union[Statement, _Unsplittable]]:
        if self._partial:
            self._buf += self._lines.rewrite(self._partial)
            self._partial = ""
        yield from self._drain(final=True)

    # -- bookkeeping -----------------------------------------------------------
    def _line_at(self, offset: int) -> int:
        if offset < self._count_pos:
            self._count_pos, self._count_line = 0, self._line
        self._count_line += self._buf.count("\n", self._count_pos, offset)
        self._count_pos = offset
        return self._count_line

    def _consume(self, offset: int) -> None:
        if offset <= 0:
            return
        self._line = self._line_at(offset)
        self._buf_at_line_start = self._buf[offset - 1] == "\n"
        self._buf = self._buf[offset:]
        self._count_pos, self._count_line = 0, self._line

    def _tokenize(self, text: str):
        return self._tokenizer.tokenize(text)

    # -- splitting -------------------------------------------------------------
    def _drain(self, final: bool) -> Iterator[Union[Statement, _Unsplittable]]:
        while self._buf:
            if self._discarding:
                end = _LINE_ENDS_WITH_SEMICOLON.search(self._buf)
                if end is None:
                    self._consume(len(self._buf))
                    return
                self._consume(end.end())
                self._discarding = False
                continue
            if not final and len(self._buf) < self._next_attempt:
                return
            try:
                tokens = self._tokenize(self._buf)
            except TokenError as error:
                if final or len(self._buf) > self._max:
                    yield from self._recover(_error_text(error), final, too_long=len(self._buf) > self._max)
                    continue
                self._next_attempt = 2 * len(self._buf)  # probably cut inside a string: read more
                return
            statements, boundary = self._split_tokens(tokens, 0, final)
            yield from statements
            self._consume(len(self._buf) if final else boundary)
            if final:
                return
            if len(self._buf) > self._max:  # no statement end in sight: give this one up
                start = len(self._buf) - len(self._buf.lstrip())
                yield _Unsplittable(self._line_at(start), TOO_LONG,
                                    f"no statement end within {self._max} characters (--max_sql_bytes {self._max})")
                self._consume(len(self._buf))
                self._discarding = True
                continue
            self._next_attempt = max(2 * len(self._buf), self._chunk)
            return

    def _split_tokens(self, tokens, base: int, final: bool) -> tuple[list, int]:
        """The statements in ``tokens`` (of ``_buf[base:…]``) and the offset in ``_buf`` just after
        the last statement end (``base`` when there is none).

        With ``final`` the text after the last semicolon is a statement too.
        """
        statements = []
        first = last = None
        boundary = base
        for token in tokens:
            if token.token_type == TokenType.SEMICOLON:
                if first is not None:
                    statements.append(self._statement(base + first.start, base + last.end + 1, boundary))
                first = None
                boundary = base + token.end + 1
                continue
            if first is None:
                first = token
            last = token
        if final and first is not None:
            statements.append(self._statement(base + first.start, base + last.end + 1, boundary))
        return statements, boundary

    def _statement(self, start: int, end: int, gap_start: int) -> Union[Statement, _Unsplittable]:
        line = self._line_at(start)
        if end - start > self._max:
            return _Unsplittable(line, TOO_LONG, f"{end - start} characters, over --max_sql_bytes {self._max}")
        text = self._buf[start:end]
        size = over_bytes(text, self._max)
        if size is not None:
            return _Unsplittable(line, TOO_LONG, f"{size} bytes, over --max_sql_bytes {self._max}")
        return Statement(text, line, self._comment_above(gap_start, start))

    def _comment_above(self, gap_start: int, start: int) -> Optional[str]:
        text = self._buf
        gap = text[gap_start:start]
        newline = gap.rfind("\n")
        if newline < 0:
            return None
        lines = gap[:newline].split("\n")
        at_line_start = self._buf_at_line_start if gap_start == 0 else text[gap_start - 1] == "\n"
        if not at_line_start:
            lines = lines[1:]  # the rest of the previous statement's line
        comment = []
        for line in reversed(lines):
            stripped = line.strip()
            if not stripped.startswith("--"):
                break
            comment.append(stripped[2:].strip())
        comment.reverse()
        joined = "\n".join(comment).strip()
        return joined or None

    def _recover(self, detail: str, final: bool, too_long: bool = False) -> Iterator[Union[Statement, _Unsplittable]]:
        """Emit what can still be split in front of the bad statement, then reject the bad one.

        Candidate statement ends are the lines that end with ``;``. The shortest prefix
        ending at a candidate that tokenizes and closes its last statement is emitted,
        and the search goes on after it; when no candidate works, the text up to the
        first candidate (or all of it) is rejected and normal splitting resumes.
        ``too_long``: the buffer passed the limit; a bad statement with no end within
        the limit is ``sql_too_long`` rather than ``tokenize_error``.
        """
        buf = self._buf
        base = 0  # good statements before the bad one are emitted without copying the buffer each time
        while base < len(buf):
            first_end = None
            found = None
            for probes, match in enumerate(_LINE_ENDS_WITH_SEMICOLON.finditer(buf, base)):
                end = match.end()
                first_end = end if first_end is None else first_end
                if probes >= _MAX_PROBES or end - base > self._max:
                    break
                try:
                    tokens = self._tokenize(buf[base:end])
                except TokenError:
                    continue
                statements, boundary = self._split_tokens(tokens, base, final=False)
                if boundary > base:  # else the semicolon was in a comment: try a later candidate
                    found = statements, boundary
                    break
            if found is not None:
                yield from found[0]
                base = found[1]
                continue
            bad_end = len(buf) if first_end is None else first_end
            if first_end is None and not final:
                self._discarding = True  # the bad statement goes on in text not read yet
            head = buf[base:bad_end]
            line = self._line_at(bad_end - len(head.lstrip()))
            if too_long and bad_end - base > self._max:
                yield _Unsplittable(line, TOO_LONG, f"no statement end within {self._max} characters "
                                                    f"(--max_sql_bytes {self._max})")
            else:
                yield _Unsplittable(line, "tokenize_error", detail)
            self._consume(bad_end)
            return
        self._consume(base)


def _error_text(error: TokenError) -> str:
    """The tokenizer's own reason (e.g. ``Missing ' from 3:7``) when it gives one."""
    return excerpt(str(error.__cause__ or error), 160)


def split_statements(text: str, dialect: Optional[str] = None) -> list[Statement]:
    """The statements of a SQL script, in order; ``ValueError`` if one cannot be tokenized.

    >>> [s.text for s in split_statements("SELECT 'a;b'; -- x\\nSELECT $$;$$;", "postgres")]
    ["SELECT 'a;b'", 'SELECT $$;$$']
    >>> split_statements("-- how many?\\nSELECT 1")[0].comment
    'how many?'
    """
    splitter = _Splitter(dialect, CHUNK_CHARS, max(MAX_STATEMENT_BYTES, 4 * len(text) + 1))
    statements = []
    for item in (*splitter.feed(text), *splitter.close()):
        if isinstance(item, _Unsplittable):
            raise ValueError(f"line {item.line}: {item.reason}: {item.detail}")
        statements.append(item)
    return statements


def parse_sql_file(
    stream: BinaryIO,
    path: str,
    dialect: Optional[str] = None,
    *,
    max_sql_bytes: int = MAX_STATEMENT_BYTES,
    chunk_chars: int = CHUNK_CHARS,
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` (source ``log``, origin ``path:line``) per statement of a SQL script.

    ``dialect`` is a sqlglot dialect name (quoting rules differ: MySQL backticks,
    T-SQL brackets, PostgreSQL dollar quotes); an unknown name raises ``ValueError``.
    Comment lines (``-- …``) directly above a statement go to ``extra["comment"]``.
    Statements holding bytes that are not UTF-8 (``not_utf8``) or a NUL
    (``nul_byte``) are rejected; the others still come out; one over ``max_sql_bytes``
    is ``sql_too_long``.
    """
    splitter = _Splitter(dialect, chunk_chars, max_sql_bytes)  # raises for a bad dialect now
    return _parse_sql_file(stream, path, splitter)


def _parse_sql_file(stream: BinaryIO, path: str, splitter: _Splitter) -> Iterator[Union[RawPair, ReadReject]]:
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    started = False
    while True:
        data = stream.read(READ_BYTES)
        text = decoder.decode(data or b"", final=not data)
        if not started and text:
            started = True
            text = text[1:] if text.startswith("\ufeff") else text
        for item in splitter.feed(text):
            yield _to_item(item, path)
        if not data:
            break
    for item in splitter.close():
        yield _to_item(item, path)


def _to_item(item: Union[Statement, _Unsplittable], path: str) -> Union[RawPair, ReadReject]:
    origin = f"{path}:{item.line}"
    if isinstance(item, _Unsplittable):
        return ReadReject(origin, item.reason, item.detail)
    if has_bad_unicode(item.text):
        return ReadReject(origin, "not_utf8", excerpt(item.text))
    if "\x00" in item.text:
        return ReadReject(origin, "nul_byte", excerpt(item.text))
    extra = {"comment": item.comment} if item.comment and not has_bad_unicode(item.comment) else {}
    return RawPair(item.text, None, (), True, None, "log", origin, extra)
