"""Read: SQL logs, chat histories and seed pairs → records; unreadable items → dead letters.

Files are matched and opened through Beam's ``fileio`` (any Beam filesystem,
``gs://`` included; ``.gz``/``.bz2`` decompressed by extension). Each file is
parsed by a streaming parser from ``transforms.formats``; a malformed line, record
or statement becomes a dead letter (stage ``read``) naming the file and line, and
the run goes on.
"""

from __future__ import annotations

import io
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io import fileio

from pipeline.record import new_record
from transforms.common import DEAD, count, reject
from transforms.formats import RawPair, ReadReject
from transforms.formats.chat import parse_chat_history
from transforms.formats.csv_file import parse_csv
from transforms.formats.defog import parse_defog_csv
from transforms.formats.jsonl import parse_json_records
from transforms.formats.parquet_file import parse_parquet
from transforms.formats.pg_csvlog import parse_pg_csvlog
from transforms.formats.pg_stat_statements import frequency_of, looks_like_pg_stat_statements, parse_pg_stat_statements
from transforms.formats.sql_file import parse_sql_file

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
    context: str = "full"
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
    fields = dict(sql_field=settings.sql_field, question_field=question_field,
                  db_id_field=db_id_field, source=source)
    if fmt == "chat":
        return parse_chat_history(stream, path, tool_name=settings.tool_name,
                                  include_failures=settings.include_failures, context=settings.context)
    if fmt == "sql":
        return parse_sql_file(stream, path, dialect=settings.dialect)
    if fmt == "pg_stat_statements":
        return parse_pg_stat_statements(stream, path, db_id_field=settings.db_id_field)
    if fmt in ("jsonl", "json"):
        return parse_json_records(stream, path, **fields)
    if fmt == "csv" or fmt == "defog":
        buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
        if fmt == "defog" or (kind == "seed_pairs" and _looks_like_defog(buffered)):
            return parse_defog_csv(buffered, path)
        if kind == "sql_logs" and settings.sql_field == "sql" and looks_like_pg_stat_statements(buffered.peek(4096)):
            return parse_pg_stat_statements(buffered, path, db_id_field=settings.db_id_field)
        return parse_csv(buffered, path, **fields)
    if fmt == "parquet":
        return parse_parquet(stream, path, **fields)
    if fmt == "pg_csvlog":
        return parse_pg_csvlog(stream, path)
    return iter([ReadReject(path, "unknown_format",
                            "cannot tell the format from the extension; use --sql_logs_format")])


class _ParseFilesFn(beam.DoFn):
    def __init__(self, kind: str, settings: ReadSettings):
        self.kind, self.settings = kind, settings

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        path = readable.metadata.path
        count(f"read.files.{self.kind}")
        try:
            with readable.open() as stream:
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
            | "Match" >> fileio.MatchAll()
            | "Open" >> fileio.ReadMatches()
            | "Parse" >> beam.ParDo(_ParseFilesFn(self.kind, self.settings)).with_outputs(DEAD, main="records")
        )


def split_patterns(value: Optional[str]) -> list[str]:
    """``"a/*.sql, b.jsonl"`` → ``["a/*.sql", "b.jsonl"]``."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def settings_from(options: Mapping[str, Any]) -> ReadSettings:
    """ReadSettings from the job's option values."""
    return ReadSettings(**{k: options[k] for k in ReadSettings._fields if options.get(k) is not None})
