"""Parquet files: one pair per row, read batch by batch with pyarrow.

Origins are ``path#row`` (0-based across the file). A file without the SQL
column is one ``missing_column:<name>`` reject; every other column is optional (a
file without the question or database column gives pairs without them, as JSON
records without those keys do). A row whose text columns hold more than
``max_sql_bytes`` bytes together is ``sql_too_long``: the sizes are read from the
Arrow batch (a vectorised length, no Python string made) before the batch is
converted, and that row's text is never turned into Python objects. A file pyarrow cannot open is one
``parquet_error`` reject; a read error part-way stops the file with a
``parquet_error`` naming the first row not read. Text columns may be ``string`` or
``binary`` (decoded as strict UTF-8); other columns go to ``extra`` (non-strings as
JSON, timestamps as ISO 8601).
"""

from __future__ import annotations

import io
from typing import BinaryIO, Iterator, Optional, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.formats.shared import MAX_SQL_BYTES, check_source, excerpt, read_all, record_to_pair, too_long
from transforms.formats.types import RawPair, ReadReject

#: Rows per batch read from the file.
BATCH_ROWS = 1024
_ARROW_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


def parse_parquet(
    stream: BinaryIO,
    path: str,
    sql_field: str = "sql",
    question_field: Optional[str] = None,
    db_id_field: Optional[str] = None,
    source: str = "log",
    *,
    success_field: Optional[str] = "success",
    batch_rows: int = BATCH_ROWS,
    max_sql_bytes: int = MAX_SQL_BYTES,
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per parquet row holding ``sql_field`` (see the module docstring).

    A stream that cannot seek cheaply (a decompressing reader) is read into memory
    first: parquet keeps its index at the end of the file.
    """
    check_source(source)
    return _parse_parquet(stream, path, sql_field, question_field, db_id_field, source, success_field, batch_rows,
                          max_sql_bytes)


def _seekable(stream: BinaryIO) -> BinaryIO:
    """``stream`` if it can seek cheaply, else its bytes in memory.

    Beam's ``CompressedFile`` says it can seek (a property, not a method) but does it
    by decompressing again from the start, so it is read whole too.
    """
    seekable = getattr(stream, "seekable", None)
    if callable(seekable):
        try:
            if seekable():
                return stream
        except (OSError, ValueError):
            pass
    return io.BytesIO(read_all(stream))


def _is_empty(stream: BinaryIO) -> bool:
    position = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(position)
    return end == position


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) or \
        pa.types.is_large_binary(kind)


def _oversized(batch: pa.RecordBatch, max_bytes: int) -> Optional[list[bool]]:
    """Which rows' text columns hold more than ``max_bytes`` bytes together (None: no row does).

    Computed on the Arrow buffers: no value is converted to Python to measure it.
    """
    total = None
    for column in batch.columns:
        if _is_text(column.type):
            length = pc.fill_null(pc.binary_length(column), 0).cast(pa.int64())
            total = length if total is None else pc.add(total, length)
    if total is None:
        return None
    over = pc.greater(total, max_bytes)
    return over.to_pylist() if pc.any(over).as_py() else None


def _without_text(batch: pa.RecordBatch, over: list[bool]) -> pa.RecordBatch:
    """``batch`` with the text of the rows marked in ``over`` replaced by nulls (they are rejected)."""
    mask = pa.array(over)
    columns = [pc.if_else(mask, pa.scalar(None, column.type), column) if _is_text(column.type) else column
               for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _size_and_preview(batch: pa.RecordBatch, row: int, sql_field: str) -> tuple[int, bytes]:
    size = 0
    for column in batch.columns:
        if _is_text(column.type) and column[row].is_valid:
            size += pc.binary_length(column.slice(row, 1))[0].as_py()
    sql = batch.column(sql_field).slice(row, 1)
    preview = pc.binary_slice(sql.cast(pa.large_binary()), 0, 80)[0].as_py() if _is_text(sql.type) else b""
    return size, preview or b""


def _parse_parquet(stream, path, sql_field, question_field, db_id_field, source, success_field, batch_rows,
                   max_sql_bytes):
    stream = _seekable(stream)
    if _is_empty(stream):
        return
    try:
        parquet = pq.ParquetFile(stream)
        names = parquet.schema_arrow.names
    except _ARROW_ERRORS as error:
        yield ReadReject(path, "parquet_error", excerpt(f"{type(error).__name__}: {error}"))
        return
    if sql_field not in names:  # the one required column; the others are optional
        yield ReadReject(path, f"missing_column:{sql_field}", f"columns are {names}")
        return
    success = success_field if success_field in names else None
    batches = parquet.iter_batches(batch_size=batch_rows)
    row = 0
    while True:
        over = None
        try:
            batch = next(batches)
            over = _oversized(batch, max_sql_bytes)
            if over is not None:
                sizes = {j: _size_and_preview(batch, j, sql_field) for j, big in enumerate(over) if big}
                batch = _without_text(batch, over)
            records = batch.to_pylist()
        except StopIteration:
            return
        except _ARROW_ERRORS as error:
            yield ReadReject(f"{path}#{row}", "parquet_error", excerpt(f"{type(error).__name__}: {error}"))
            return
        for j, record in enumerate(records):
            if over is not None and over[j]:
                size, preview = sizes[j]
                yield too_long(f"{path}#{row}", size, max_sql_bytes, preview)
                row += 1
                continue
            yield record_to_pair(
                record,
                f"{path}#{row}",
                sql_field=sql_field,
                question_field=question_field,
                db_id_field=db_id_field,
                source=source,
                success_field=success,
            )
            row += 1
