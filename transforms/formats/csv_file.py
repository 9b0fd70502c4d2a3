"""CSV files with a header row: one pair per record.

Quoted fields may hold newlines and doubled quotes (RFC 4180, Python's ``csv``);
a record's origin is the line it starts on. The file must have a header naming
``sql_field``, else one ``missing_column:<name>`` reject for the file; every other
column is optional (a file without ``question_field`` / ``db_id_field`` gives pairs
without a question / database, as JSON records without those keys do). A record
with more or fewer fields than the header is ``wrong_field_count``; one the ``csv``
module refuses is ``csv_error``. A record over ``max_sql_bytes`` (a line, a field,
or the SQL cell's UTF-8 bytes) is ``sql_too_long``, and no line over it is held
in memory whole.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, Optional, Union

from transforms.formats.shared import (
    MAX_SQL_BYTES,
    check_source,
    csv_rows,
    has_bad_unicode,
    over_bytes,
    record_to_pair,
    too_long,
)
from transforms.formats.types import RawPair, ReadReject


def parse_csv(
    stream: BinaryIO,
    path: str,
    sql_field: str = "sql",
    question_field: Optional[str] = None,
    db_id_field: Optional[str] = None,
    source: str = "log",
    *,
    success_field: Optional[str] = "success",
    delimiter: str = ",",
    max_sql_bytes: int = MAX_SQL_BYTES,
) -> Iterator[Union[RawPair, ReadReject]]:
    """One ``RawPair`` per CSV record (see the module docstring).

    Empty cells count as absent: an empty question is None, an empty ``success``
    cell is True, an empty SQL cell is ``empty_sql``. ``success`` accepts
    true/false, t/f, 1/0, yes/no (any case).
    """
    check_source(source)
    return _parse_csv(stream, path, sql_field, question_field, db_id_field, source, success_field, delimiter,
                      max_sql_bytes)


def _parse_csv(stream, path, sql_field, question_field, db_id_field, source, success_field, delimiter,
               max_sql_bytes):
    header = None
    sql_at = 0
    for line, row in csv_rows(stream, path, max_sql_bytes, delimiter=delimiter):
        origin = f"{path}:{line}"
        if isinstance(row, ReadReject):
            yield row
            continue
        if header is None:
            header = [name.strip() for name in row]
            if any(has_bad_unicode(name) for name in header):
                yield ReadReject(origin, "not_utf8", "header row")
                return
            if sql_field not in header:  # the one required column; the others are optional
                yield ReadReject(path, f"missing_column:{sql_field}", f"header has {header}")
                return
            sql_at = header.index(sql_field)
            continue
        if len(row) != len(header):
            yield ReadReject(origin, "wrong_field_count", f"expected {len(header)} fields, got {len(row)}")
            continue
        size = over_bytes(row[sql_at], max_sql_bytes)
        if size is not None:
            yield too_long(origin, size, max_sql_bytes, row[sql_at])
            continue
        record = {name: (value if value != "" or name == sql_field else None) for name, value in zip(header, row)}
        yield record_to_pair(
            record,
            origin,
            sql_field=sql_field,
            question_field=question_field,
            db_id_field=db_id_field,
            source=source,
            success_field=success_field if success_field in header else None,
        )
