"""Parquet files: one pair per row, read batch by batch with pyarrow.

Origins are ``path#row`` (0-based across the file). A file without the named
columns is one ``missing_column:<name>`` reject; a file pyarrow cannot open is one
``parquet_error`` reject; a read error part-way stops the file with a
``parquet_error`` naming the first row not read. Text columns may be ``string`` or
``binary`` (decoded as strict UTF-8); other columns go to ``extra`` (non-strings as
JSON, timestamps as ISO 8601).
"""

from __future__ import annotations

import io
from typing import BinaryIO, Iterator, Optional, Union

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.formats import RawPair, ReadReject
from transforms.formats._common import check_source, excerpt, read_all, record_to_pair

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
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per parquet row holding ``sql_field`` (see the module docstring).

    A stream that cannot seek cheaply (a decompressing reader) is read into memory
    first: parquet keeps its index at the end of the file.
    """
    check_source(source)
    return _parse_parquet(stream, path, sql_field, question_field, db_id_field, source, success_field, batch_rows)


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


def _parse_parquet(stream, path, sql_field, question_field, db_id_field, source, success_field, batch_rows):
    stream = _seekable(stream)
    if _is_empty(stream):
        return
    try:
        parquet = pq.ParquetFile(stream)
        names = parquet.schema_arrow.names
    except _ARROW_ERRORS as error:
        yield ReadReject(path, "parquet_error", excerpt(f"{type(error).__name__}: {error}"))
        return
    for field in (sql_field, question_field, db_id_field):
        if field and field not in names:
            yield ReadReject(path, f"missing_column:{field}", f"columns are {names}")
            return
    success = success_field if success_field in names else None
    batches = parquet.iter_batches(batch_size=batch_rows)
    row = 0
    while True:
        try:
            batch = next(batches)
            records = batch.to_pylist()
        except StopIteration:
            return
        except _ARROW_ERRORS as error:
            yield ReadReject(f"{path}#{row}", "parquet_error", excerpt(f"{type(error).__name__}: {error}"))
            return
        for record in records:
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
