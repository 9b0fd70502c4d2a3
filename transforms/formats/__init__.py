"""Pure, streaming parsers for every input format (no Beam in here).

Each parser has the shape ``parse_<fmt>(stream, path, **options)`` where ``stream``
is a binary file object (``typing.BinaryIO``) and ``path`` names the file in
origins. It returns a lazy iterator of :class:`RawPair` (one usable item) and
:class:`ReadReject` (one unusable item, or one for a whole file that cannot be
read). Parsers never raise for bad *content*; bad *options* (an unknown dialect, an
unknown context mode) raise ``ValueError`` when the parser is called.

Formats and their modules:

==============  ==========================  =======================================
format          parser                      module
==============  ==========================  =======================================
``sql``         ``parse_sql_file``          :mod:`transforms.formats.sql_file`
``json(l)``     ``parse_json_records``      :mod:`transforms.formats.jsonl`
``csv``         ``parse_csv``               :mod:`transforms.formats.csv_file`
``parquet``     ``parse_parquet``           :mod:`transforms.formats.parquet_file`
``defog``       ``parse_defog_csv``         :mod:`transforms.formats.defog`
``chat``        ``parse_chat_history``      :mod:`transforms.formats.chat`
``pg_csvlog``   ``parse_pg_csvlog``         :mod:`transforms.formats.pg_csvlog`
==============  ==========================  =======================================

Conventions shared by all parsers:

* ``RawPair.sql`` is the SQL text as it appears in the input, stripped of
  surrounding whitespace only (Defog's expanded alternatives are the one
  exception: they are built from the template, which is kept in ``extra``).
* Text is decoded as strict UTF-8 per line or record; bytes that are not UTF-8
  reject that line/record/statement (``not_utf8``) and the rest of the file goes
  on. SQL containing a NUL character is rejected (``nul_byte``).
* An empty (or whitespace-only) file yields nothing: it is a valid, empty log.
* Origins are ``"path:line"`` (1-based line where the item starts) for line- and
  CSV-based formats and ``"path#index"`` (0-based) for JSON arrays and parquet rows;
  chat parts are ``"<conversation>#<message>.<part>"``.

The record types live in :mod:`transforms.formats.types` and the helpers the parsers
share in :mod:`transforms.formats.shared`; this package only re-exports them with the
parsers. Parser modules import those two modules, never this package, so the package
can import the parsers without an import cycle.
"""

from __future__ import annotations

from transforms.formats.chat import parse_chat_history
from transforms.formats.csv_file import parse_csv
from transforms.formats.defog import expand_alternatives, parse_defog_csv
from transforms.formats.jsonl import parse_json_records
from transforms.formats.parquet_file import parse_parquet
from transforms.formats.pg_csvlog import parse_pg_csvlog
from transforms.formats.sql_file import parse_sql_file, split_statements
from transforms.formats.types import SOURCES, RawPair, ReadReject

#: Parser for each format name.
PARSERS = {
    "sql": parse_sql_file,
    "json": parse_json_records,
    "jsonl": parse_json_records,
    "csv": parse_csv,
    "parquet": parse_parquet,
    "defog": parse_defog_csv,
    "chat": parse_chat_history,
    "pg_csvlog": parse_pg_csvlog,
}

__all__ = [
    "PARSERS",
    "RawPair",
    "ReadReject",
    "SOURCES",
    "expand_alternatives",
    "parse_chat_history",
    "parse_csv",
    "parse_defog_csv",
    "parse_json_records",
    "parse_parquet",
    "parse_pg_csvlog",
    "parse_sql_file",
    "split_statements",
]
