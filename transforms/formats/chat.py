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

import collections
import json
from typing import Any, BinaryIO, Iterator, Optional, Union

from transforms.formats import RawPair, ReadReject
from transforms.formats._common import excerpt, find_bad_unicode, stringify
from transforms.formats.jsonl import iter_json_values

Item = Union[RawPair, ReadReject]
#: How much of a tool's error text is kept in ``extra["error"]``.
_ERROR_CHARS = 1000


def context_window(mode: str) -> Optional[int]:
    """How many preceding turns a ``context`` mode keeps (None: all); ``ValueError`` if unknown.

    >>> context_window("full"), context_window("none"), context_window("last"), context_window("window:3")
    (None, 0, 1, 3)
    """
    if mode == "full":
        return None
    if mode == "none":
        return 0
    if mode == "last":
        return 1
    if mode.startswith("window:") and mode[len("window:"):].isdigit():
        return int(mode[len("window:"):])
    raise ValueError(f"context must be none, full, last or window:N, got {mode!r}")


def parse_chat_history(
    stream: BinaryIO,
    path: str,
    tool_name: str = "db_query",
    include_failures: bool = False,
    context: str = "full",
    *,
    db_id: Optional[str] = None,
) -> Iterator[Item]:
    """One ``RawPair`` (source ``chat``) per call of ``tool_name`` with a string ``sql`` argument.

    ``include_failures`` is accepted for the pipeline's option of that name and does
    not change what is yielded: failed calls always come out with ``success=False``
    (see the module docstring). ``db_id`` names the database of every pair; without
    it a conversation's ``db_id`` key, or the call's ``db_id``/``database``
    argument, is used. A tool call without ``input``, with ``arguments`` that are not
    JSON, or with an ``sql`` that is not a string is ``malformed_part``.
    """
    window = context_window(context)
    del include_failures  # documented above: failures are yielded and filtered downstream
    return _parse_chat(stream, path, tool_name, window, db_id)


def _parse_chat(stream, path, tool_name, window, db_id) -> Iterator[Item]:
    file_conversation = _Conversation(path, tool_name, window, db_id, None)
    for item in iter_json_values(stream, path):
        if isinstance(item, ReadReject):
            yield item
            continue
        value = item.value
        check = not item.clean
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
        conversation = _Conversation(item.origin, tool_name, window, conversation_db, conversation_id)
        for message in messages:
            yield from conversation.add(message, check)
        yield from conversation.finish()
    yield from file_conversation.finish()


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
                 conversation_id: Optional[str]):
        self._origin = origin
        self._tool = tool_name
        self._window = window
        self._db_id = db_id
        self._conversation_id = conversation_id
        self._turns: list[str] = []
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
        return self.settle()

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
        self._turn(f"User: {text}" if text else None)

    def _assistant_said(self, text: str) -> None:
        self._turn(f"Assistant: {text}" if text else None)

    def _turn(self, turn: Optional[str]) -> None:
        if turn is None or self._window == 0:
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
        extra = {"tool": self._tool}
        for key, value in (("tool_call_id", call_id), ("message_id", message.get("id")),
                           ("conversation_id", self._conversation_id)):
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                extra[key] = str(value)
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
