"""DDL files (``--schema``) read through Beam's filesystems (local, ``gs://``), parsed by
``transforms.sql.table_schema``. Reading files is I/O, so it lives in the kit, not in sql/; the
question writer, the generators' catalogue and the exports' schemas all read them.
"""

from __future__ import annotations

from typing import Optional, Sequence

from transforms.sql.table_schema import Table, tables_from_ddl


def load_ddl(patterns: Sequence[str], dialect: Optional[str]) -> dict[str, Table]:
    """Tables described by the DDL files ``patterns`` match (any Beam filesystem, files in name order)."""
    if not patterns:
        return {}
    from apache_beam.io.filesystems import FileSystems

    texts = []
    for result in FileSystems.match(list(patterns)):
        for metadata in sorted(result.metadata_list, key=lambda m: m.path):
            with FileSystems.open(metadata.path) as handle:
                texts.append(handle.read().decode("utf-8", errors="replace"))
    return tables_from_ddl(texts, dialect)
