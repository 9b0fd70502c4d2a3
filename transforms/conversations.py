"""Conversations: with ``--context full``, each chat conversation written once, beside the pairs.

Copying every earlier turn into every pair makes a conversation of n tool calls cost
O(n²) bytes and memory (10,000 calls: 20 GB of RSS, 446 MB of pairs). Instead each pair
carries ``extra["conversation_id"]`` and ``extra["turn"]`` (where its question sits among
the turns), and this transform writes ``PREFIX-conversations-SSSSS-of-NNNNN.jsonl``, one
line per conversation::

    {"conversation_id": "…", "origin": "chats.json#3", "turns": ["User: …", "Assistant: …", …]}

A pair's full context is ``turns[:int(turn)]`` of its conversation: what exports and users
rebuild, with the output linear in the input. The chat files are read a second time for
this (streaming, one conversation's turns held at a time), only when ``full`` is asked for.
"""

from __future__ import annotations

import json
from typing import Iterator, Sequence

import apache_beam as beam
from apache_beam.io import fileio

from transforms.common import count
from transforms.formats.chat import ConversationTurns, parse_conversations
from transforms.read import ReadSettings
from transforms.write import WriteJsonShards


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


class _ConversationsOfFileFn(beam.DoFn):
    def __init__(self, settings: ReadSettings):
        self.settings = settings

    def process(self, readable: fileio.ReadableFile) -> Iterator[ConversationTurns]:
        # An unreadable file is already a dead letter of the read stage: nothing to add here.
        try:
            with readable.open() as stream:
                for conversation in parse_conversations(stream, readable.metadata.path, self.settings.tool_name,
                                                        max_message_bytes=self.settings.max_sql_bytes):
                    count("conversations.written")
                    yield conversation
        except Exception:  # noqa: BLE001 - see above
            return


class WriteConversations(beam.PTransform):
    """Chat files matching ``patterns`` → ``PREFIX-conversations-*.jsonl`` (one line per conversation)."""

    def __init__(self, patterns: Sequence[str], settings: ReadSettings, prefix: str, num_shards: int):
        super().__init__()
        self.patterns, self.settings = list(patterns), settings
        self.prefix, self.num_shards = prefix, num_shards

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> fileio.MatchAll()
            | "Open" >> fileio.ReadMatches()
            | "Conversations" >> beam.ParDo(_ConversationsOfFileFn(self.settings))
            | "Write" >> WriteJsonShards(conversations_prefix(self.prefix), self.num_shards, conversation_to_json,
                                         _sort_key)
        )
