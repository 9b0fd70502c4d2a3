"""Chat histories with an analytics agent: one pair per call of its SQL tool.

Two message shapes are understood, message by message (one file may mix them):

* **Vercel AI SDK ``UIMessage``** — ``{id, role, parts: [...]}``. Text is in
  ``{type: "text", text}`` parts; a call of the tool is a ``{type: "tool-<name>",
  toolCallId, state, input: {sql, ...}, output | errorText}`` part or a
  ``{type: "dynamic-tool", toolName, ...}`` part (AI SDK 4's ``{type:
  "tool-invocation", toolInvocation: {toolName, args, state, result}}`` too). A call
  succeeded when its state is ``output-available`` (``result`` in AI SDK 4) and its
  output is not an error object.
* **OpenAI chat messages** — ``{role, content, tool_calls: [{id, type: "function",
  function: {name, arguments: "<JSON>"}}]}`` followed by ``{role: "tool",
  tool_call_id, content}`` results. A call failed when its result starts with
  ``Error`` or is JSON with an ``error`` key, or when no result follows it
  (``extra["state"] == "no_result"``). ``content`` is a string or a list of
  ``{type: "text", text}`` parts.

Each call is paired with the text of the last user message before it (None when
there is none); ``context`` holds the turns before that user message as ``"User: …"``
/ ``"Assistant: …"`` (assistant text only, never tool calls), trimmed by the
``context`` option: ``none``, ``full``, ``last`` or ``window:N``.

File layouts, told apart value by value:

* a JSON array of messages, or JSONL with one message per line — one conversation
  for the whole file;
* a JSON object with a ``messages`` array — one conversation;
* a JSON array or JSONL whose values are conversations (an array of messages, or an
  object with ``messages``) — one conversation each.

A value with a ``role`` is a message of the file's conversation; a value that is an
array, or an object with a ``messages`` array and no ``role``, is a conversation of
its own; anything else is ``malformed_message``. Origins are
``<conversation>#<message>.<part>`` where ``<conversation>`` is ``path`` for the
file's conversation, else the conversation's own origin (``path:line`` in JSONL,
``path#index`` in an array); ``<part>`` is the part index (UIMessage) or the index in
``tool_calls`` (OpenAI).

Failed calls are always yielded, with ``success=False``: the pipeline's filter
stage counts and drops them unless failures are kept.
"""

from __future__ import annotations

import codecs
import collections
import json
import re
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Optional, Union

from transforms.formats.jsonl import JsonValue, iter_json_values, may_hold_surrogates
from transforms.formats.shared import excerpt, find_bad_unicode, stringify
from transforms.formats.types import RawPair, ReadReject

Item = Union[RawPair, ReadReject]
#: How much of a tool's error text is kept in ``extra["error"]``.
_ERROR_CHARS = 1000


#: The default ``context`` mode: the one turn before the question. Linear in the input whatever a
#: conversation's length (``full`` copies every earlier turn into every pair: quadratic).
DEFAULT_CONTEXT = "last"
#: The largest message the reader decodes, unless the caller says otherwise (``--max_sql_bytes``).
MAX_MESSAGE_BYTES = 1_048_576


def context_window(mode: str) -> Optional[int]:
    """How many preceding turns a ``context`` mode keeps (None: all); ``ValueError`` if unknown.

    ``full`` keeps no turns in the pairs themselves (see :func:`parse_conversations`), but a
    reader that writes the conversations keeps all of them.

    >>> context_window("full"), context_window("none"), context_window("last"), context_window("window:3")
    (None, 0, 1, 3)
    >>> context_window("window:0")
    Traceback (most recent call last):
    ...
    ValueError: context window must be at least 1 turn, got 'window:0' (use none for no context)
    """
    if mode == "full":
        return None
    if mode == "none":
        return 0
    if mode == "last":
        return 1
    if mode.startswith("window:") and mode[len("window:"):].isdigit():
        window = int(mode[len("window:"):])
        if window < 1:
            raise ValueError(f"context window must be at least 1 turn, got {mode!r} (use none for no context)")
        return window
    raise ValueError(f"context must be none, full, last or window:N, got {mode!r}")


def parse_chat_history(
    stream: BinaryIO,
    path: str,
    tool_name: str = "db_query",
    include_failures: bool = False,
    context: str = DEFAULT_CONTEXT,
    *,
    db_id: Optional[str] = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> Iterator[Item]:
    """One ``RawPair`` (source ``chat``) per call of ``tool_name`` with a string ``sql`` argument.

    ``include_failures`` is accepted for the pipeline's option of that name and does
    not change what is yielded: failed calls always come out with ``success=False``
    (see the module docstring). ``db_id`` names the database of every pair; without
    it a conversation's ``db_id`` key, or the call's ``db_id``/``database``
    argument, is used. A tool call without ``input``, with ``arguments`` that are not
    JSON, or with an ``sql`` that is not a string is ``malformed_part``; a message (or a
    ``sql`` argument) larger than ``max_message_bytes`` is ``sql_too_long``.

    With ``context="full"`` the pairs carry no context: ``extra`` names the conversation
    (``conversation_id``) and the position of the question in its turns (``turn``), and
    :func:`parse_conversations` gives each conversation's turns once.
    """
    window = 0 if context == "full" else context_window(context)
    del include_failures  # documented above: failures are yielded and filtered downstream
    return _parse_chat(stream, path, tool_name, window, db_id, max_message_bytes, None)


class ConversationTurns(NamedTuple):
    """All the turns of one conversation, as ``"User: …"`` / ``"Assistant: …"`` strings."""

    conversation_id: str  # as in the pairs' ``extra["conversation_id"]``
    origin: str
    turns: tuple[str, ...]


def parse_conversations(stream: BinaryIO, path: str, tool_name: str = "db_query", *,
                        max_message_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[ConversationTurns]:
    """Each conversation of a chat file once, with all its turns (``--context full``).

    A pair's full context is ``turns[:int(extra["turn"])]`` of the conversation its
    ``extra["conversation_id"]`` names. One conversation's turns are held at a time:
    memory is linear in the longest conversation, never quadratic.

    >>> import io, json
    >>> data = json.dumps([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}])
    >>> list(parse_conversations(io.BytesIO(data.encode()), "c.json"))
    [ConversationTurns(conversation_id='c.json', origin='c.json', turns=('User: Hi?', 'Assistant: Hello.'))]
    """
    finished: list[ConversationTurns] = []
    for _ in _parse_chat(stream, path, tool_name, None, None, max_message_bytes, finished.append):
        while finished:
            yield finished.pop(0)
    yield from finished


def _parse_chat(stream, path, tool_name, window, db_id, limit, on_finish) -> Iterator[Item]:
    def conversation(origin, conversation_db, conversation_id):
        return _Conversation(origin, tool_name, window, conversation_db, conversation_id, limit, on_finish)

    file_conversation = conversation(path, db_id, None)
    current = None  # a conversation streamed from an array or a ``messages`` key
    for item in _chat_values(stream, path, limit):
        if isinstance(item, ReadReject):
            if current is not None and item.origin.startswith(current.origin + "#"):
                current.skip()  # a bad message keeps its position in the conversation's origins
            elif current is None and item.origin.startswith(path + "#"):
                file_conversation.skip()
            yield item
            continue
        if isinstance(item, _Open):
            yield from file_conversation.settle()
            conversation_db = db_id or _text(item.meta.get("db_id")) or _text(item.meta.get("database"))
            conversation_id = item.meta.get("id")
            conversation_id = str(conversation_id) if isinstance(conversation_id, (str, int)) else None
            current = conversation(item.origin, conversation_db, conversation_id)
            continue
        if isinstance(item, _Close):
            yield from current.finish()
            current = None
            continue
        value = item.value
        check = not item.clean
        if current is not None:
            yield from current.add(value, check)
            continue
        if _is_message(value):
            yield from file_conversation.add(value, check)
            continue
        messages, meta = _as_conversation(value)
        if messages is None:
            yield ReadReject(item.origin, "malformed_message", f"neither a message nor a conversation: "
                                                                f"{excerpt(value)}")
            file_conversation.skip()  # later messages keep their position in the file as origin
            continue
        yield from file_conversation.settle()
        conversation_db = db_id or _text(meta.get("db_id")) or _text(meta.get("database"))
        conversation_id = meta.get("id")
        conversation_id = str(conversation_id) if isinstance(conversation_id, (str, int)) else None
        one = conversation(item.origin, conversation_db, conversation_id)
        for message in messages:
            yield from one.add(message, check)
        yield from one.finish()
    yield from file_conversation.finish()


# ---------------------------------------------------------------------------------------------
# Streaming the file: a JSON array (or an object with ``messages``) of any size, one value at a time
# ---------------------------------------------------------------------------------------------

_LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
#: Bytes read from the file at a time.
_CHUNK = 1 << 16
_DECODER = json.JSONDecoder()
_NOT_SPACE = re.compile(r"[^ \t\r\n]")
_OUTSIDE_STRING = re.compile(r'["\[\]{},]')
_INSIDE_STRING = re.compile(r'["\\]')
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _Open(NamedTuple):
    """A conversation streamed message by message starts (its ``meta``: keys before ``messages``)."""

    origin: str
    meta: dict


class _Close(NamedTuple):
    origin: str


class _TooLong(Exception):
    pass


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class _Replay:
    """A binary stream that first gives back ``prefix`` (what was read to tell the layout)."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        self._prefix, self._stream = prefix, stream

    def readline(self, size: int = -1) -> bytes:
        if self._prefix:
            line, newline, rest = self._prefix.partition(b"\n")
            if newline:
                self._prefix = rest
                return line + newline
            self._prefix = b""
            return line + self._stream.readline()
        return self._stream.readline()

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return self._stream.read(size) if size is not None and size >= 0 else self._stream.read()


class _JsonStream:
    """JSON text decoded through a bounded buffer: ``raw_decode`` one value at a time.

    The buffer holds the value being decoded and at most one chunk more; a value larger
    than ``limit`` is skipped (scanned for its end, never held) and reported as too long.
    """

    def __init__(self, stream: BinaryIO, prefix: bytes, limit: int):
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.limit = limit
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.clean = True  # no string decoded so far can hold a lone surrogate
        self._append(prefix)

    def _append(self, data: bytes) -> None:
        text = self._decoder.decode(data, final=not data)
        if self.clean and text and (not text.isascii() and _LONE_SURROGATE.search(text)
                                    or may_hold_surrogates(self.buf[-6:] + text)):
            self.clean = False
        self.buf = self.buf[self.pos:] + text
        self.pos = 0

    def fill(self) -> bool:
        """Read one more chunk, dropping what lies before ``pos``; False at the end of the file."""
        if self.eof:
            return False
        data = self._stream.read(_CHUNK)
        if not data:
            self.eof = True
        self._append(data)
        return not self.eof or self.pos < len(self.buf)

    def peek(self) -> str:
        """The next character that is not white space (``pos`` moves to it), or "" at the end."""
        while True:
            match = _NOT_SPACE.search(self.buf, self.pos)
            if match is not None:
                self.pos = match.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self.fill():
                return ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            found = self.buf[self.pos:self.pos + 20] if self.pos < len(self.buf) else "the end of the file"
            raise _Invalid("truncated_json" if self.eof and self.pos >= len(self.buf) else "invalid_json",
                           f"expected {char!r}, found {found!r}")
        self.pos += 1

    def value(self) -> Any:
        """Decode the value at ``pos``; ``_TooLong`` (``pos`` unmoved) or ``_Invalid``."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as error:
                unfinished = error.msg.startswith("Unterminated string") or error.pos >= len(self.buf) - 16
                if unfinished and not self.eof:
                    if len(self.buf) - self.pos > self.limit:
                        raise _TooLong() from None
                    self.fill()
                    continue
                reason = "truncated_json" if unfinished else "invalid_json"
                raise _Invalid(reason, f"{error.msg} at character {error.pos}") from None
            except (ValueError, RecursionError) as error:
                raise _Invalid("invalid_json", excerpt(f"{type(error).__name__}: {error}")) from None
            if end == len(self.buf) and not self.eof and not isinstance(value, (dict, list)):
                self.fill()  # a number may go on in the next chunk
                continue
            size = end - self.pos
            if size * 4 > self.limit and len(self.buf[self.pos:end].encode("utf-8", "surrogatepass")) > self.limit:
                raise _TooLong()
            self.pos = end
            return value

    def skip(self) -> bool:
        """Move ``pos`` past the value there (without decoding it) to the ``,`` or closing
        bracket after it; False when the file ends first."""
        depth, in_string, i = 0, False, self.pos
        while True:
            pattern = _INSIDE_STRING if in_string else _OUTSIDE_STRING
            match = pattern.search(self.buf, i)
            if match is None or (in_string and match.group() == "\\" and match.end() >= len(self.buf)):
                self.pos = match.start() if match is not None else len(self.buf)
                if not self.fill():
                    return False
                i = self.pos
                continue
            char, i = match.group(), match.end()
            if in_string:
                if char == "\\":
                    i += 1
                else:
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "[{":
                depth += 1
            elif depth == 0:  # "," or a closing bracket of the enclosing array
                self.pos = match.start()
                return True
            elif char in "]}":
                depth -= 1


def _chat_values(stream: BinaryIO, path: str, limit: int) -> Iterator[Any]:
    """The file's values: ``JsonValue``, ``ReadReject``, and ``_Open``/``_Close`` around the
    messages of a conversation streamed one message at a time.

    A top-level array, and an object's ``messages`` array, are streamed (a file of any size,
    a conversation of any length); JSONL goes line by line (``iter_json_values``).
    """
    prefix = b""
    while True:
        data = stream.read(_CHUNK)
        prefix += data
        start = prefix.lstrip(b" \t\r\n")
        if start.startswith(b"\xef\xbb\xbf"):
            start = start[3:].lstrip(b" \t\r\n")
        if start or not data:
            break
    if not start:
        return
    first = start[:1]
    if path.lower().endswith(_LINE_SUFFIXES) or first not in (b"[", b"{"):
        yield from iter_json_values(_Replay(prefix, stream), path)
        return
    if first == b"{":  # one object per line (JSONL saved as .json), or one conversation object
        while b"\n" not in start and len(prefix) <= limit:
            data = stream.read(_CHUNK)
            if not data:
                break
            prefix += data
            start += data
        line = start.split(b"\n", 1)[0]
        try:
            json.loads(line)
            yield from iter_json_values(_Replay(prefix, stream), path)
            return
        except (ValueError, RecursionError):
            pass
    reader = _JsonStream(stream, prefix, limit)
    if reader.buf.startswith("\ufeff"):
        reader.pos = 1
    try:
        if first == b"[":
            reader.take("[")
            yield from _array_values(reader, path, nested=False)
        else:
            yield from _object_value(reader, path, path)
        if reader.peek():
            yield ReadReject(path, "invalid_json", "extra data after the JSON document")
    except _Invalid as error:  # the file's structure broke where no value can be skipped: stop there
        yield ReadReject(path, error.reason, error.detail)


def _array_values(reader: _JsonStream, prefix: str, nested: bool) -> Iterator[Any]:
    """The values of the array whose ``[`` was just read, through its ``]``."""
    if reader.peek() == "]":
        reader.pos += 1
        return
    index = 0
    while True:
        origin = f"{prefix}#{index}"
        char = reader.peek()
        if char == "":
            raise _Invalid("truncated_json", f"the file ends inside the array, at value {index}")
        if char == "[" and not nested:  # a conversation: its messages one by one
            reader.pos += 1
            yield _Open(origin, {})
            yield from _array_values(reader, origin, nested=True)
            yield _Close(origin)
        elif char == "{" and not nested:
            yield from _object_value(reader, origin, prefix)
        else:
            yield from _one_value(reader, origin, prefix)
        char = reader.peek()
        if char == ",":
            reader.pos += 1
            index += 1
            continue
        if char == "]":
            reader.pos += 1
            return
        raise _Invalid("truncated_json" if char == "" else "invalid_json",
                       f"expected ',' or ']' after value {index}")


def _one_value(reader: _JsonStream, origin: str, path: str) -> Iterator[Any]:
    """The value at ``pos`` (at most ``limit`` bytes), or a reject for it; ``pos`` moves past it."""
    try:
        yield JsonValue(origin, reader.value(), False, clean=reader.clean)
        return
    except _TooLong:
        reject = ReadReject(origin, "sql_too_long", f"the message is over {reader.limit} bytes")
    except _Invalid as error:
        if error.reason == "truncated_json":
            raise
        reject = ReadReject(origin, error.reason, error.detail)
    yield reject
    if not reader.skip():
        raise _Invalid("truncated_json", f"the file ends inside value {origin}")


def _object_value(reader: _JsonStream, origin: str, path: str) -> Iterator[Any]:
    """An object at ``pos``: decoded whole when it fits ``limit``; otherwise streamed key by key,
    its ``messages`` array message by message (a long conversation), or too long (a message)."""
    try:  # on failure ``pos`` stays at the object's start (fills move the buffer, not the start)
        yield JsonValue(origin, reader.value(), False, clean=reader.clean)
        return
    except _TooLong:
        pass
    except _Invalid as error:
        if error.reason == "truncated_json":
            raise
        yield ReadReject(origin, error.reason, error.detail)
        if not reader.skip():
            raise _Invalid("truncated_json", f"the file ends inside value {origin}") from None
        return
    reader.take("{")  # the object's start is still in the buffer: read it key by key
    meta: dict = {}
    streamed = False
    while reader.peek() != "}":
        key = reader.value()
        if not isinstance(key, str):
            raise _Invalid("invalid_json", f"object key is not a string in {origin}")
        reader.take(":")
        if key == "messages" and reader.peek() == "[" and not streamed and "role" not in meta:
            reader.pos += 1
            streamed = True
            yield _Open(origin, meta)
            yield from _array_values(reader, origin, nested=True)
            yield _Close(origin)
        else:
            try:
                meta[key] = reader.value()
            except _TooLong:
                if not reader.skip():
                    raise _Invalid("truncated_json", f"the file ends inside value {origin}") from None
        if reader.peek() == ",":
            reader.pos += 1
        elif reader.peek() != "}":
            raise _Invalid("truncated_json" if reader.peek() == "" else "invalid_json",
                           f"expected ',' or '}}' in {origin}")
    reader.pos += 1
    if not streamed:
        yield ReadReject(origin, "sql_too_long", f"the message is over {reader.limit} bytes")


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and "role" in value


def _as_conversation(value: Any) -> tuple[Optional[list], dict]:
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        meta = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
        return value["messages"], {**meta, **{k: v for k, v in value.items() if k != "messages"}}
    return None, {}


def _text(value: Any) -> Optional[str]:
    return value.strip() or None if isinstance(value, str) else None


def _joined_text(content: Any) -> str:
    """The text of an OpenAI ``content`` (a string, or a list of text parts)."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") in ("text", None)]
        return "\n".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
    return ""


def _looks_like_error(output: Any) -> bool:
    """Whether a tool's output reports an error (``Error…`` text, or an object with an ``error``)."""
    if isinstance(output, dict):
        return bool(output.get("error"))
    if isinstance(output, list):
        output = _joined_text(output)
    if isinstance(output, str):
        text = output.strip()
        if text[:5].lower() == "error":
            return True
        if text.startswith("{"):
            try:
                decoded = json.loads(text)
            except ValueError:
                return False
            return isinstance(decoded, dict) and bool(decoded.get("error"))
    return False


def _error_text(output: Any) -> Optional[str]:
    if isinstance(output, str) and output.strip().startswith("{"):
        try:
            output = json.loads(output)
        except ValueError:
            pass
    if isinstance(output, dict):
        output = output.get("error")
    if isinstance(output, list):
        output = _joined_text(output)
    text = output if isinstance(output, str) else stringify(output)
    return excerpt(text, _ERROR_CHARS) if text else None


class _Pending:
    """An OpenAI tool call waiting for its result message."""

    __slots__ = ("pair", "settled")

    def __init__(self, pair: RawPair):
        self.pair = pair
        self.settled = False

    def settle(self, success: bool, **extra: Optional[str]) -> None:
        self.pair = _with(self.pair, success, **extra)
        self.settled = True


class _Conversation:
    """Messages of one conversation, fed in order; pairs come out as soon as they are settled."""

    def __init__(self, origin: str, tool_name: str, window: Optional[int], db_id: Optional[str],
                 conversation_id: Optional[str], limit: int = MAX_MESSAGE_BYTES,
                 on_finish: Optional[Callable[[ConversationTurns], Any]] = None):
        self.origin = origin
        self._origin = origin
        self._tool = tool_name
        self._window = window
        self._db_id = db_id
        self._conversation_id = conversation_id
        self._limit = limit
        self._on_finish = on_finish
        self._all_turns: Optional[list[str]] = [] if on_finish is not None else None
        self._turns: list[str] = []
        self._turn_count = 0  # turns said so far; a pair's ``turn`` is where its question sits
        self._question_turn = 0
        self._question: Optional[str] = None
        self._context: tuple[str, ...] = ()
        self._index = 0
        self._queue: collections.deque = collections.deque()
        self._calls: dict[str, _Pending] = {}

    # -- feeding ---------------------------------------------------------------
    def add(self, message: Any, check_unicode: bool = True) -> Iterator[Item]:
        """Feed the next message; ``check_unicode=False`` when the reader knows no string in it
        can hold a lone surrogate (looking costs as much as parsing the message)."""
        index = self._index
        self._index += 1
        origin = f"{self._origin}#{index}"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            self._queue.append(ReadReject(origin, "malformed_message", f"no role: {excerpt(message)}"))
            return self._ready()
        bad = find_bad_unicode(message) if check_unicode else None
        if bad is not None:
            self._queue.append(ReadReject(origin, "not_utf8", excerpt(bad)))
            return self._ready()
        role = message["role"]
        if role != "tool":
            self._settle_calls()  # a call's result comes right after it, or never
        if isinstance(message.get("parts"), list):
            self._add_ui_message(message, index, role)
        else:
            self._add_openai_message(message, index, role)
        return self._ready()

    def skip(self) -> None:
        """A value in the conversation's place that is no message: count it, so origins stay positions."""
        self._index += 1

    def settle(self) -> Iterator[Item]:
        """Calls still waiting for a result will not get one: they failed (``no_result``)."""
        self._settle_calls()
        return self._ready()

    def finish(self) -> Iterator[Item]:
        ready = self.settle()
        if self._on_finish is not None and self._index:
            self._on_finish(ConversationTurns(self.conversation_id, self._origin, tuple(self._all_turns)))
        return ready

    @property
    def conversation_id(self) -> str:
        """The conversation's own id, else its origin (unique among the job's inputs)."""
        return self._conversation_id or self._origin

    def _settle_calls(self) -> None:
        for pending in self._calls.values():
            pending.settle(False, state="no_result")
        self._calls.clear()

    def _ready(self) -> Iterator[Item]:
        ready = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, _Pending):
                if not head.settled:
                    break
                head = head.pair
            ready.append(head)
            self._queue.popleft()
        return iter(ready)

    # -- turns -----------------------------------------------------------------
    def _user_said(self, text: str) -> None:
        self._question = text or None
        self._context = tuple(self._turns)
        self._question_turn = self._turn_count
        self._turn(f"User: {text}" if text else None)

    def _assistant_said(self, text: str) -> None:
        self._turn(f"Assistant: {text}" if text else None)

    def _turn(self, turn: Optional[str]) -> None:
        if turn is None:
            return
        self._turn_count += 1
        if self._all_turns is not None:
            self._all_turns.append(turn)
        if self._window == 0:
            return
        self._turns.append(turn)
        if self._window is not None and len(self._turns) > self._window:
            del self._turns[0]  # only the last ``window`` turns are ever needed

    # -- UIMessage ---------------------------------------------------------------
    def _add_ui_message(self, message: dict, index: int, role: str) -> None:
        texts = []
        for part_index, part in enumerate(message["parts"]):
            origin = f"{self._origin}#{index}.{part_index}"
            if not isinstance(part, dict):
                self._queue.append(ReadReject(origin, "malformed_part", f"part is {type(part).__name__}"))
                continue
            kind = part.get("type")
            if kind == "text":
                if isinstance(part.get("text"), str) and part["text"].strip():
                    texts.append(part["text"].strip())
                continue
            call = self._ui_tool_call(part)
            if call is None:
                continue
            arguments, state, output, error_text, call_id = call
            if not isinstance(arguments, dict):
                self._queue.append(ReadReject(origin, "malformed_part", f"tool part without input (state {state!r})"))
                continue
            failed = error_text is not None or state not in ("output-available", "result") or _looks_like_error(output)
            item = self._pair(arguments, origin, message, call_id)
            if isinstance(item, RawPair):
                extra = {"state": state if isinstance(state, str) else ""}
                if failed:
                    extra["error"] = excerpt(error_text, _ERROR_CHARS) if error_text else _error_text(output)
                item = _with(item, not failed, **extra)
            self._queue.append(item)
        text = "\n".join(texts)
        if role == "user":
            self._user_said(text)
        elif role == "assistant":
            self._assistant_said(text)

    def _ui_tool_call(self, part: dict):
        """``(input, state, output, errorText, toolCallId)`` when ``part`` calls the tool, else None."""
        kind = part.get("type")
        if kind == f"tool-{self._tool}" or (kind == "dynamic-tool" and part.get("toolName") == self._tool):
            error = part.get("errorText")
            return (part.get("input"), part.get("state"), part.get("output"),
                    error if isinstance(error, str) else None, part.get("toolCallId"))
        if kind == "tool-invocation" and isinstance(part.get("toolInvocation"), dict):
            invocation = part["toolInvocation"]
            if invocation.get("toolName") == self._tool:
                return (invocation.get("args"), invocation.get("state"), invocation.get("result"), None,
                        invocation.get("toolCallId"))
        return None

    # -- OpenAI ------------------------------------------------------------------
    def _add_openai_message(self, message: dict, index: int, role: str) -> None:
        text = _joined_text(message.get("content"))
        if role == "user":
            self._user_said(text)
            return
        if role == "tool":
            pending = self._calls.pop(str(message.get("tool_call_id")), None)
            if pending is not None:
                content = message.get("content")
                if _looks_like_error(content):
                    pending.settle(False, state="error", error=_error_text(content))
                else:
                    pending.settle(True, state="result")
            return
        if role != "assistant":
            return
        self._assistant_said(text)
        calls = message.get("tool_calls")
        if calls is None:
            return
        if not isinstance(calls, list):
            self._queue.append(ReadReject(f"{self._origin}#{index}", "malformed_part", "tool_calls is not a list"))
            return
        for call_index, call in enumerate(calls):
            origin = f"{self._origin}#{index}.{call_index}"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                self._queue.append(ReadReject(origin, "malformed_part", "tool call without a function"))
                continue
            if function.get("name") != self._tool:
                continue
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError as error:
                    self._queue.append(ReadReject(origin, "malformed_part", f"arguments are not JSON: {error}"))
                    continue
            if not isinstance(arguments, dict):
                self._queue.append(ReadReject(origin, "malformed_part", "arguments are not a JSON object"))
                continue
            call_id = call.get("id")
            item = self._pair(arguments, origin, message, call_id)
            if isinstance(item, ReadReject):
                self._queue.append(item)
                continue
            pending = _Pending(item)
            self._queue.append(pending)
            if call_id is None:
                pending.settle(False, state="no_result")
            else:
                self._calls[str(call_id)] = pending

    # -- pairs -------------------------------------------------------------------
    def _pair(self, arguments: dict, origin: str, message: dict, call_id: Any) -> Item:
        sql = arguments.get("sql")
        if not isinstance(sql, str):
            what = "missing" if sql is None else f"a {type(sql).__name__}"
            return ReadReject(origin, "malformed_part", f"sql is {what}, not a string")
        sql = sql.strip()
        if not sql:
            return ReadReject(origin, "empty_sql", "sql argument is blank")
        if "\x00" in sql:
            return ReadReject(origin, "nul_byte", excerpt(sql))
        if len(sql) * 4 > self._limit and len(sql.encode("utf-8", "surrogatepass")) > self._limit:
            return ReadReject(origin, "sql_too_long", f"the sql argument is over {self._limit} bytes")
        extra = {"tool": self._tool}
        for key, value in (("tool_call_id", call_id), ("message_id", message.get("id"))):
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                extra[key] = str(value)
        extra["conversation_id"] = self.conversation_id
        extra["turn"] = str(self._question_turn)
        db_id = self._db_id
        for key, value in arguments.items():
            if key == "sql":
                continue
            if key in ("db_id", "database") and db_id is None and _text(value):
                db_id = _text(value)
                continue
            text = stringify(value)
            if text:
                extra[f"input.{key}"] = text
        return RawPair(sql, self._question, self._context, True, db_id, "chat", origin, extra)


def _with(pair: RawPair, success: bool, **extra: Optional[str]) -> RawPair:
    return pair._replace(success=success, extra={**pair.extra, **{k: v for k, v in extra.items() if v}})
