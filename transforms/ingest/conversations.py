"""ReadConversations: with ``--context full``, the chat files read a second time, one
``ConversationTurns`` per conversation (``transforms.publish.conversations`` writes them and joins
them back to their pairs).

Files are matched and opened as ``ReadInputs`` does (``MatchFiles``, ``open_input``): the same
``**`` globs, the same decompression, and what that read files as an unreadable dead letter (a
dangling link, a link loop) is skipped here.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata

from transforms.formats.chat import ConversationTurns, parse_conversations
from transforms.ingest.read import ReadSettings
from transforms.kit.inputs import MatchFiles, Unmatchable, open_input
from transforms.kit.stage import count


class _ConversationsOfFileFn(beam.DoFn):
    def __init__(self, settings: ReadSettings):
        self.settings = settings

    def process(self, found: Union[FileMetadata, Unmatchable]) -> Iterator[ConversationTurns]:
        # What cannot be read (a dangling link, a link loop, a file that fails to open or parse)
        # is already a dead letter of the read stage: nothing to add here.
        if isinstance(found, Unmatchable):
            return
        try:
            with open_input(found.path) as stream:
                for conversation in parse_conversations(stream, found.path, self.settings.tool_name,
                                                        max_message_bytes=self.settings.max_sql_bytes):
                    count("conversations.written")
                    yield conversation
        except Exception:  # noqa: BLE001 - see above
            return


class ReadConversations(beam.PTransform):
    """Chat files matching ``patterns`` → one ``ConversationTurns`` per conversation.

    Files are matched and opened as ``transforms.ingest.read.ReadInputs`` does, so a conversation's
    ``origin`` is the prefix of its pairs' origins.
    """

    def __init__(self, patterns: Sequence[str], settings: ReadSettings):
        super().__init__()
        self.patterns, self.settings = list(patterns), settings

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> MatchFiles()
            | "Conversations" >> beam.ParDo(_ConversationsOfFileFn(self.settings))
        )
