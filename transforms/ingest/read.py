"""Read: SQL logs, chat histories and seed pairs → records; unreadable items → dead letters.

Files are matched by ``transforms.kit.inputs.match_pattern`` and opened through Beam's filesystems
(any Beam filesystem, ``gs://`` included; ``.gz``/``.bz2`` decompressed by
extension). Each file is parsed by a streaming parser from ``transforms.formats``;
a malformed line, record or statement becomes a dead letter (stage ``read``)
naming the file and line, and the run goes on. No item larger than
``--max_sql_bytes`` is parsed or held whole (``sql_too_long``).
"""

from __future__ import annotations

import io
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata

from transforms.core.record import new_record
from transforms.kit.inputs import MatchFiles, Unmatchable, open_input
from transforms.kit.stage import DEAD, count, reject
from transforms.formats.chat import parse_chat_history
from transforms.formats.csv_file import parse_csv
from transforms.formats.defog import parse_defog_csv
from transforms.formats.jsonl import parse_json_records
from transforms.formats.parquet_file import parse_parquet
from transforms.formats.pg_csvlog import parse_pg_csvlog
from transforms.formats.pg_stat_statements import frequency_of, looks_like_pg_stat_statements, parse_pg_stat_statements
from transforms.formats.sql_file import parse_sql_file
from transforms.formats.types import RawPair, ReadReject

#: Kinds of input and the source label their records get.
KINDS = {"sql_logs": "log", "chat_history": "chat", "seed_pairs": "seed"}

_COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")


class ReadSettings(NamedTuple):
    format: str = "auto"
    sql_field: str = "sql"
    question_field: Optional[str] = None
    db_id_field: Optional[str] = None
    tool_name: str = "db_query"
    include_failures: bool = False
    context: str = "last"  # transforms.formats.chat.DEFAULT_CONTEXT: bounded, linear in the input
    dialect: Optional[str] = None
    max_sql_bytes: int = 1_048_576  # --max_sql_bytes: the largest item any reader parses


def format_of(path: str, kind: str, declared: str = "auto") -> str:
    """The parser to use for ``path``.

    >>> format_of("logs/q.sql.gz", "sql_logs"), format_of("s.csv", "seed_pairs"), format_of("c.json", "chat_history")
    ('sql', 'csv', 'chat')
    """
    if kind == "chat_history":
        return "chat"
    if declared != "auto":
        return declared
    name = path.lower()
    for extension in _COMPRESSED:
        if name.endswith(extension):
            name = name[: -len(extension)]
    for extension, fmt in ((".sql", "sql"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                           (".csv", "csv"), (".parquet", "parquet"), (".log", "pg_csvlog")):
        if name.endswith(extension):
            return fmt
    return "unknown"


def _looks_like_defog(stream: io.BufferedReader) -> bool:
    header = stream.peek(4096)[:4096].split(b"\n", 1)[0].decode("utf-8", "replace").lower()
    columns = {c.strip().strip('"') for c in header.split(",")}
    return {"query", "question", "db_name"} <= columns


def parse_file(stream: Any, path: str, kind: str, settings: ReadSettings) -> Iterator[RawPair | ReadReject]:
    """Dispatch one opened file to its parser."""
    source = KINDS[kind]
    fmt = format_of(path, kind, settings.format if kind == "sql_logs" else "auto")
    question_field, db_id_field = settings.question_field, settings.db_id_field
    if kind == "seed_pairs":  # pairs have questions by definition: read the usual field names
        question_field, db_id_field = question_field or "question", db_id_field or "db_id"
    limit = settings.max_sql_bytes
    fields = dict(sql_field=settings.sql_field, question_field=question_field,
                  db_id_field=db_id_field, source=source, max_sql_bytes=limit)
    if fmt == "chat":
        return parse_chat_history(stream, path, tool_name=settings.tool_name,
                                  include_failures=settings.include_failures, context=settings.context,
                                  max_message_bytes=limit)
    if fmt == "sql":
        return parse_sql_file(stream, path, dialect=settings.dialect, max_sql_bytes=limit)
    if fmt == "pg_stat_statements":
        return parse_pg_stat_statements(stream, path, db_id_field=settings.db_id_field, max_sql_bytes=limit)
    if fmt in ("jsonl", "json"):
        return parse_json_records(stream, path, **fields)
    if fmt == "csv" or fmt == "defog":
        buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
        if fmt == "defog" or (kind == "seed_pairs" and _looks_like_defog(buffered)):
            return parse_defog_csv(buffered, path, max_sql_bytes=limit)
        if kind == "sql_logs" and settings.sql_field == "sql" and looks_like_pg_stat_statements(buffered.peek(4096)):
            return parse_pg_stat_statements(buffered, path, db_id_field=settings.db_id_field, max_sql_bytes=limit)
        return parse_csv(buffered, path, **fields)
    if fmt == "parquet":
        return parse_parquet(stream, path, **fields)
    if fmt == "pg_csvlog":
        return parse_pg_csvlog(stream, path, max_sql_bytes=limit)
    return iter([ReadReject(path, "unknown_format",
                            "cannot tell the format from the extension; use --sql_logs_format")])


class _ParseFilesFn(beam.DoFn):
    def __init__(self, kind: str, settings: ReadSettings):
        self.kind, self.settings = kind, settings

    def process(self, found: Union[FileMetadata, Unmatchable]) -> Iterator:
        if isinstance(found, Unmatchable):
            count(f"read.files.{self.kind}")
            yield reject("read", "unreadable_file", found.detail, origin=found.path)
            return
        path = found.path
        count(f"read.files.{self.kind}")
        try:
            with open_input(path) as stream:
                for item in parse_file(stream, path, self.kind, self.settings):
                    if isinstance(item, ReadReject):
                        yield reject("read", item.reason, item.detail, origin=item.origin)
                        continue
                    if self.kind == "chat_history" and not item.success and not self.settings.include_failures:
                        yield reject("read", "failed_tool_call",
                                     "the tool call ended in an error (use --include_failures to read it)",
                                     origin=item.origin)
                        continue
                    count("read.out")
                    yield new_record(
                        item.sql,
                        item.question,
                        context=item.context,
                        success=item.success,
                        db_id=item.db_id,
                        source=item.source,
                        origin=item.origin,
                        frequency=frequency_of(item.extra),
                        extra=item.extra,
                    )
        except Exception as error:  # noqa: BLE001 - an unreadable file is a dead letter, not a crash
            yield reject("read", "unreadable_file", f"{type(error).__name__}: {str(error)[:300]}", origin=path)


class ReadInputs(beam.PTransform):
    """Read every file matching ``patterns`` as ``kind`` (sql_logs, chat_history, seed_pairs)."""

    def __init__(self, kind: str, patterns: Sequence[str], settings: ReadSettings = ReadSettings()):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown input kind {kind!r}")
        self.kind, self.patterns, self.settings = kind, list(patterns), settings

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> MatchFiles()
            | "Parse" >> beam.ParDo(_ParseFilesFn(self.kind, self.settings)).with_outputs(DEAD, main="records")
        )


