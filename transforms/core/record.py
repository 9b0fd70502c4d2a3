"""The one record type that flows through every stage, and its dead-letter envelope.

Both are ``typing.NamedTuple`` classes, registered with Beam's ``RowCoder`` by
``transforms.kit`` (this module imports no Beam), so they travel between stages and
workers as schema'd rows (compact, language-neutral, deterministic) rather than as
pickled dicts. Stages never rebuild a record ad hoc:
they call ``record._replace(field=value)`` and add what they computed.

JSON is the exchange format on disk: ``record_to_json`` writes one object per line
with a fixed key order, and ``record_from_json`` reads it back (round-trips).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, NamedTuple, Optional, Sequence

#: Execution statuses, in the order the report lists them.
EXECUTION_STATUSES = ("ok", "error", "timeout", "refused", "skipped")
#: Where a record came from.
SOURCES = ("log", "chat", "seed", "schema", "evolved", "sample")
#: Who wrote the question.
QUESTION_SOURCES = ("given", "rules", "llm")


class Execution(NamedTuple):
    """What running the normalized SQL against its database gave.

    ``result_hash`` is a canonical multiset hash of the (capped) rows, or an ordered
    hash when the query has a top-level ORDER BY, so equal results hash equally
    across databases and drivers. The executors return the same fields as their own
    plain result (``adapters.db.results``, where the hash is computed);
    ``transforms.kit.executors.run_query`` copies it into this type, so the record
    model depends on no adapter.
    """

    status: str
    row_count: Optional[int] = None
    columns: Sequence[str] = ()
    result_hash: Optional[str] = None
    error: Optional[str] = None
    elapsed_ms: Optional[float] = None
    truncated: bool = False


class Parameter(NamedTuple):
    """A placeholder in a parameterized logged query (``$1``, ``?``, ``:name``, ``##Id##``)."""

    name: str
    position: int
    type: Optional[str] = None
    default: Optional[str] = None
    value: Optional[str] = None


class Record(NamedTuple):
    """A question/SQL pair with its provenance, analysis, execution result and lineage."""

    id: str
    question: Optional[str]
    sql: str
    context: Sequence[str] = ()
    success: bool = True
    db_id: Optional[str] = None
    dialect: Optional[str] = None
    source: str = "log"
    question_source: Optional[str] = None
    origin: Optional[str] = None
    normalized_sql: Optional[str] = None
    sql_fingerprint: Optional[str] = None
    template_fingerprint: Optional[str] = None
    tables: Sequence[str] = ()
    difficulty: Optional[str] = None
    concepts: Sequence[str] = ()
    execution: Optional[Execution] = None
    duplicates: int = 0
    frequency: int = 1
    parameters: Sequence[Parameter] = ()
    parent_id: Optional[str] = None
    evolution: Optional[str] = None
    persona: Optional[str] = None
    extra: Mapping[str, str] = {}
    reasoning: Optional[str] = None  # --cot: the step-by-step trace whose SQL gave the gold result
    evidence: Optional[str] = None  # --evidence: what the question's domain terms mean (None: none needed)


class DeadLetter(NamedTuple):
    """A rejected input or record: which stage said no, why, and what it was.

    ``reason`` is a short stable code (counted in the report); ``detail`` is a
    human-readable explanation (never containing credentials). ``record`` is absent
    only for inputs that never became a record (unreadable lines); ``origin`` then
    names the file and line.
    """

    stage: str
    reason: str
    detail: str
    origin: Optional[str] = None
    record: Optional[Record] = None


def content_id(*parts: Any) -> str:
    """A stable 20-hex-digit id from the content that defines a record.

    >>> content_id("log", None, "How many?", "SELECT 1", ())
    'd3a0d78aaec73fc53923'
    """
    payload = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), default=list)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def new_record(
    sql: str,
    question: Optional[str] = None,
    *,
    context: Sequence[str] = (),
    success: bool = True,
    db_id: Optional[str] = None,
    source: str = "log",
    origin: Optional[str] = None,
    frequency: int = 1,
    parent_id: Optional[str] = None,
    evolution: Optional[str] = None,
    persona: Optional[str] = None,
    extra: Optional[Mapping[str, str]] = None,
) -> Record:
    """Build a fresh record whose id is a hash of its defining content.

    The origin (file and line) is provenance, not content: the same pair read from
    two files gets the same id, which is what makes dedup representatives stable.
    """
    question = question if question else None
    rid = content_id(source, db_id, question, sql, list(context), parent_id, evolution, persona)
    return Record(
        id=rid,
        question=question,
        sql=sql,
        context=tuple(context),
        success=success,
        db_id=db_id,
        source=source,
        question_source="given" if question else None,
        origin=origin,
        frequency=frequency,
        parent_id=parent_id,
        evolution=evolution,
        persona=persona,
        extra=dict(extra or {}),
    )


def _plain(value: Any) -> Any:
    """Turn nested NamedTuples / sequences / mappings into JSON-ready values."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    return value


def _strings(values: Any) -> bool:
    """Whether ``values`` is a tuple or list of strings only (JSON writes it as ``_plain`` would)."""
    return isinstance(values, (tuple, list)) and all(type(value) is str for value in values)


_RECORD_FIELDS = Record._fields
_EXECUTION_FIELDS = Execution._fields
#: Record fields whose usual value (a str, number, bool or None) JSON writes as it is.
_SCALAR_FIELDS = frozenset(_RECORD_FIELDS) - {"context", "tables", "concepts", "execution", "parameters", "extra"}


def _record_plain(record: Record) -> dict:
    """``_plain(record)``, without walking the fields that hold plain values already.

    A job writes every pair and dead letter through here; the generic walk visited every
    string of every record (~40 µs a record). Anything unusual (a list of non-strings, a
    nested value of another kind) still goes through ``_plain``, so the result is the same.
    """
    plain = dict(zip(_RECORD_FIELDS, record))
    for name in ("context", "tables", "concepts"):
        value = plain[name]
        if not _strings(value):
            plain[name] = _plain(value)
    execution = record.execution
    if type(execution) is Execution and _strings(execution.columns):
        plain["execution"] = dict(zip(_EXECUTION_FIELDS, execution))
    elif execution is not None:
        plain["execution"] = _plain(execution)
    plain["parameters"] = _plain(record.parameters)
    plain["extra"] = _plain(record.extra)
    for name in _SCALAR_FIELDS:
        value = plain[name]
        if value is not None and type(value) not in (str, int, float, bool):
            plain[name] = _plain(value)
    return plain


def record_to_dict(record: Record) -> dict:
    """The record as a plain dict with the field order of ``Record``."""
    if type(record) is Record:
        return _record_plain(record)
    return _plain(record)


def record_to_json(record: Record) -> str:
    """One JSON line for a record (fixed key order, UTF-8 kept as is)."""
    return json.dumps(record_to_dict(record), ensure_ascii=False, separators=(", ", ": "))


def without_timings(record: Record) -> Record:
    """The record with ``execution.elapsed_ms`` cleared, so output bytes do not depend on timing."""
    if record.execution is None or record.execution.elapsed_ms is None:
        return record
    return record._replace(execution=record.execution._replace(elapsed_ms=None))


def dead_letter_to_json(dead: DeadLetter) -> str:
    """One JSON line ``{stage, reason, detail, origin, record}`` for a dead letter."""
    plain = _plain(dead._replace(record=None))
    if dead.record is not None:
        plain["record"] = record_to_dict(dead.record)
    return json.dumps(plain, ensure_ascii=False, separators=(", ", ": "))


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """Rebuild a record from ``record_to_dict`` output (unknown keys are ignored)."""
    fields = {k: data[k] for k in Record._fields if k in data}
    execution = fields.get("execution")
    if isinstance(execution, Mapping):
        fields["execution"] = Execution(**{k: execution[k] for k in Execution._fields if k in execution})
    for name in ("context", "tables", "concepts"):
        if name in fields and fields[name] is not None:
            fields[name] = tuple(fields[name])
    if "parameters" in fields:
        fields["parameters"] = tuple(
            Parameter(**{k: p[k] for k in Parameter._fields if k in p}) for p in fields["parameters"] or ()
        )
    if "execution" in fields and fields["execution"] is not None:
        fields["execution"] = fields["execution"]._replace(columns=tuple(fields["execution"].columns))
    return Record(**fields)


def record_from_json(line: str) -> Record:
    """Inverse of ``record_to_json``."""
    return record_from_dict(json.loads(line))
