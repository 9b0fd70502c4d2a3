"""Conversations: with ``--context full``, each chat conversation written once, beside the pairs.

Copying every earlier turn into every pair makes a conversation of n tool calls cost
O(n²) bytes and memory (10,000 calls: 20 GB of RSS, 446 MB of pairs). Instead each pair
carries ``extra["conversation_id"]`` and ``extra["turn"]`` (where its question sits among
the turns), and this transform writes ``PREFIX-conversations-SSSSS-of-NNNNN.jsonl``, one
line per conversation::

    {"conversation_id": "…", "origin": "chats.json#3", "turns": ["User: …", "Assistant: …", …]}

A pair's full context is ``turns[:int(turn)]`` of its conversation: what exports and users
rebuild, with the output linear in the input. The chat files are read a second time for
this (streaming, one conversation's turns held at a time), only when ``full`` is asked for,
and matched and opened exactly as the main read does (``transforms.ingest.conversations``): the same ``**`` globs, the same decompression, and what that read files as
an unreadable dead letter (a dangling link, a link loop) is skipped here.

The training exports that render earlier turns (``sft-chat``, the prompt/completion and DPO
prompts) get them back through ``WithFullContext``: a join of each conversation with its
pairs by conversation id, so a worker holds one conversation and its pairs at a time, never
every conversation of the input.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import apache_beam as beam

from transforms.core.record import Record
from transforms.kit.stage import count
from transforms.formats.chat import ConversationTurns
from transforms.kit.write import WriteJsonShards


def conversations_prefix(prefix: str) -> str:
    """Where the conversations of an output prefix go.

    >>> conversations_prefix("out/chinook")
    'out/chinook-conversations'
    """
    return f"{prefix}-conversations"


def conversation_to_json(conversation: ConversationTurns) -> str:
    """One JSON line for a conversation (fixed key order, UTF-8 kept as is).

    >>> conversation_to_json(ConversationTurns("c1", "chat.json", ("User: Hi?",)))
    '{"conversation_id": "c1", "origin": "chat.json", "turns": ["User: Hi?"]}'
    """
    return json.dumps({"conversation_id": conversation.conversation_id, "origin": conversation.origin,
                       "turns": list(conversation.turns)}, ensure_ascii=False, separators=(", ", ": "))


def _sort_key(conversation: ConversationTurns) -> str:
    return f"{conversation.conversation_id}\x00{conversation.origin}"


class WriteConversations(beam.PTransform):
    """Conversations → ``PREFIX-conversations-*.jsonl`` (one line per conversation, sorted)."""

    def __init__(self, prefix: str, num_shards: int):
        super().__init__()
        self.prefix, self.num_shards = prefix, num_shards

    def expand(self, conversations):
        return conversations | "Write" >> WriteJsonShards(conversations_prefix(self.prefix), self.num_shards,
                                                          conversation_to_json, _sort_key)


# ---------------------------------------------------------------------------------------------
# A pair's full context, rebuilt from its conversation
# ---------------------------------------------------------------------------------------------


def conversation_of(extra: Mapping[str, str]) -> Optional[tuple[str, int]]:
    """``(conversation_id, turn)`` of a chat pair's ``extra``; None for a pair from elsewhere.

    >>> conversation_of({"conversation_id": "c1", "turn": "4"}), conversation_of({"tool": "db_query"})
    (('c1', 4), None)
    """
    conversation_id, turn = extra.get("conversation_id"), extra.get("turn")
    if conversation_id is None or turn is None or not str(turn).isdigit():
        return None
    return str(conversation_id), int(turn)


def conversation_origin(pair_origin: Optional[str]) -> Optional[str]:
    """The origin of the conversation a chat pair came from: the pair's origin less its last
    ``#message.part`` (the reader names a pair's origin after its conversation's).

    >>> conversation_origin("chats.json#3#5.1"), conversation_origin("chat.json#4.0"), conversation_origin(None)
    ('chats.json#3', 'chat.json', None)
    """
    if not pair_origin or "#" not in pair_origin:
        return None
    return pair_origin.rsplit("#", 1)[0]


def full_context(record: Record, conversations: Sequence[ConversationTurns]) -> tuple[str, ...]:
    """The turns before ``record``'s question: ``turns[:turn]`` of the conversation it names.

    ``conversations`` are those with the record's conversation id (one, unless two inputs
    reuse an id): the one its origin came from is taken, else the first by origin, so the
    choice is the same on every run. No conversation, no context.

    >>> talk = ConversationTurns("c1", "chat.json", ("User: Hi?", "Assistant: Hello.", "User: Sales?"))
    >>> pair = Record("r", "Sales?", "SELECT 1", origin="chat.json#2.0", extra={"conversation_id": "c1", "turn": "2"})
    >>> full_context(pair, [talk])
    ('User: Hi?', 'Assistant: Hello.')
    >>> full_context(pair, [])
    ()
    """
    position = conversation_of(record.extra or {})
    if position is None or not conversations:
        return ()
    origin = conversation_origin(record.origin)
    chosen = next((c for c in conversations if c.origin == origin), None)
    if chosen is None:
        chosen = min(conversations, key=lambda c: c.origin)
    return tuple(chosen.turns[: position[1]])


_OTHER = "other"


def _by_conversation(record: Record) -> Iterator:
    position = conversation_of(record.extra or {})
    if position is None:
        yield beam.pvalue.TaggedOutput(_OTHER, record)
    else:
        yield position[0], record


def _with_context(joined: tuple[str, Mapping[str, Iterable]]) -> Iterator[Record]:
    _, groups = joined
    conversations = list(groups["conversations"])  # one per id, unless two inputs reuse an id
    for record in groups["pairs"]:
        if not conversations:
            count("conversations.missing")
        yield record._replace(context=full_context(record, conversations))


class WithFullContext(beam.PTransform):
    """``{"pairs": records, "conversations": ConversationTurns}`` → the same records, each chat pair
    with ``context`` set to the turns before its question (``full_context``), as a reader that
    copied them would have given.

    A join by conversation id (``CoGroupByKey``): each conversation meets its own pairs, so a
    worker holds one conversation and its pairs at a time, whatever the input's size (a side
    input would hold every conversation on every worker). Pairs that name no conversation
    (logs, seeds, synthesized and evolved pairs) pass through unchanged.
    """

    def expand(self, inputs):
        pairs, conversations = inputs["pairs"], inputs["conversations"]
        routed = pairs | "ByConversation" >> beam.FlatMap(_by_conversation).with_outputs(_OTHER, main="chat")
        keyed = conversations | "ConversationsById" >> beam.Map(lambda c: (c.conversation_id, c))
        restored = (
            {"conversations": keyed, "pairs": routed.chat}
            | "JoinTurnsAndPairs" >> beam.CoGroupByKey()
            | "RestoreContext" >> beam.FlatMap(_with_context).with_output_types(Record)
        )
        return (restored, routed[_OTHER]) | "AllPairs" >> beam.Flatten()
