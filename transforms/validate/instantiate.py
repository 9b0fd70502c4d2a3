"""Instantiate: fill a logged template's placeholders with real values from its own database.

Normalize has already turned ``WHERE id = $1`` / ``##UserId##`` / ``@var`` into
canonical parameter nodes and listed them in ``record.parameters``. This stage,
right after Normalize, makes each such template into up to ``k`` runnable queries
(``--instances_per_template``), so the executed query returns meaningful rows and a
question can mention concrete values:

1. **Where each parameter is used** (:func:`usage_of`, pure): the expression it is
   compared with (``=``, ``<>``, ``<``, ``>``, ``IN``, ``BETWEEN``, ``LIKE``, also
   through ``lower()``, casts and ``'%' || $1 || '%'``), or ``LIMIT``/``OFFSET``/``TOP``.
2. **A real value** (:func:`sample_query`): the distinct values of that expression
   in its table — ``SELECT DISTINCT <expr> AS v FROM <table> WHERE <expr> IS NOT NULL
   ORDER BY v LIMIT 1000``, read-only through the ``Executor`` contract and cached per
   worker — chosen by a seeded hash (``--seed``), so runs are reproducible. The
   operator is respected: ``=``/``IN`` get a value that exists, ``>`` one below the
   largest value seen (``<`` above the smallest), ``BETWEEN`` a low ≤ high pair,
   ``LIKE`` a ``%word%`` cut from a real value, ``LIMIT`` a small positive number.
   Defaults written in the query (SEDE ``##n:int?10##``, ``DECLARE @n int = 10``) fill
   the first instance. Only the first 1000 distinct values in sort order are seen,
   so values lean towards the low end of a column.
3. **Records**: each instance is a new record (``evolution = "instantiate"``,
   ``parent_id`` = the template's id, ``parameters`` with their ``value``), sharing the
   template's ``template_fingerprint`` and ``frequency``; its ``sql`` and
   ``normalized_sql`` are the filled-in query.

When a parameter gets no value (no column to sample, an empty column, no database),
the template is kept, not dropped: it is checked without values — every placeholder
``NULL``, the query limited to 0 rows, run read-only like any query, which makes the
database parse, resolve names and plan it exactly as it would a prepared statement —
and marked ``execution.status = "skipped"`` with the reason (``"error"`` when even
that check fails). Without a database (``--validate parse|none``) only defaults can
fill a template; otherwise it goes on unfilled and Execute marks it skipped.

Weighting (``--weight_by frequency``): a template gets ``k × frequency / mean
frequency`` instances (at least 1, at most ``--max_per_template``, else ``10 × k``),
so what users run most is most represented. Every outcome is counted in the report's
``instantiate`` section; each extra instance is reported as ``added`` so the
accounting still balances.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import hashlib
import logging
import math
import re
import uuid
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
import sqlglot
from apache_beam.utils.shared import Shared
from sqlglot import exp

from adapters.db import DatabaseMap, DatabaseUnavailable, redact
from transforms.core.record import Execution, Parameter, Record, new_record
from transforms.sql import placeholders, trees
from transforms.kit.stage import DEAD, count, reject
from transforms.sql.normalize import fingerprint, generate_sql

_LOGGER = logging.getLogger(__name__)

#: Tag of the side output carrying report notes (``note:<section>:<key>`` and ``added:<step>`` strings).
NOTES = "notes"
#: Distinct values read per sampled column or expression.
SAMPLE_SIZE = 1000
#: Values a LIMIT / TOP / FETCH placeholder takes, and an OFFSET one.
LIMIT_CHOICES = (5, 10, 20, 50, 100)
OFFSET_CHOICES = (1, 5, 10)
#: Tries to find a value combination not used by an earlier instance.
_ATTEMPTS = 8
#: Sampled columns remembered per worker.
_CACHE_SIZE = 4096
WEIGHTS = ("none", "frequency")


class InstantiateSettings(NamedTuple):
    """The options of this stage (``--seed``, ``--instances_per_template``, ``--weight_by``, ``--max_per_template``)."""

    seed: int = 0
    instances_per_template: int = 1
    weight_by: str = "none"
    max_per_template: Optional[int] = None


class Usage(NamedTuple):
    """How one parameter is used: the operator and what it is compared with."""

    op: str  # eq neq gt gte lt lte in like like_part between_low between_high limit offset other
    source: Optional[exp.Expression] = None  # the column expression the value must come from
    partner: Optional[str] = None  # the other bound of a BETWEEN
    case: Optional[str] = None  # "lower"/"upper" when the parameter sits inside lower()/upper()


_COMPARISONS = {exp.EQ: "eq", exp.NullSafeEQ: "eq", exp.NEQ: "neq", exp.GT: "gt", exp.GTE: "gte",
                exp.LT: "lt", exp.LTE: "lte"}
_FLIPPED = {"gt": "lt", "lt": "gt", "gte": "lte", "lte": "gte"}
_CONCATS = (exp.DPipe, exp.Concat, exp.SafeConcat) if hasattr(exp, "SafeConcat") else (exp.DPipe, exp.Concat)


def usage_of(node: exp.Expression) -> Usage:
    """Where a parameter node is used.

    >>> import sqlglot
    >>> tree = sqlglot.parse_one("SELECT * FROM t WHERE $1 < price AND name LIKE '%' || $2 || '%' LIMIT $3", read="postgres")
    >>> sorted((n.name, usage_of(n).op) for n in placeholders.parameter_nodes(tree, ["1", "2", "3"]))
    [('1', 'gt'), ('2', 'like_part'), ('3', 'limit')]
    """
    child, parent, case = node, node.parent, None
    while isinstance(parent, (exp.Paren, exp.Cast, exp.TryCast, exp.Lower, exp.Upper)) and parent.this is child:
        if isinstance(parent, (exp.Lower, exp.Upper)):
            case = "lower" if isinstance(parent, exp.Lower) else "upper"
        child, parent = parent, parent.parent
    if isinstance(parent, (exp.Limit, exp.Fetch)):
        return Usage("limit")
    if isinstance(parent, exp.Offset):
        return Usage("offset")
    for kind, op in _COMPARISONS.items():
        if type(parent) is kind:
            if child is parent.expression:
                return Usage(op, parent.this, case=case)
            return Usage(_FLIPPED.get(op, op), parent.expression, case=case)
    if isinstance(parent, (exp.Like, exp.ILike)) and child is parent.expression:
        return Usage("like", parent.this, case=case)
    if isinstance(parent, _CONCATS):
        top = parent
        while isinstance(top.parent, _CONCATS):
            top = top.parent
        holder = top.parent
        while isinstance(holder, (exp.Lower, exp.Upper, exp.Paren)):
            top, holder = holder, holder.parent
        if isinstance(holder, (exp.Like, exp.ILike)) and holder.expression is top:
            return Usage("like_part", holder.this, case=case)
        return Usage("other")
    if isinstance(parent, exp.In) and any(e is child for e in parent.expressions):
        return Usage("in", parent.this, case=case)
    if isinstance(parent, exp.Between):
        low, high = parent.args.get("low"), parent.args.get("high")
        other = high if child is low else low
        partner = other.name if isinstance(other, (exp.Parameter, exp.Placeholder)) else None
        return Usage("between_low" if child is low else "between_high", parent.this, partner=partner, case=case)
    return Usage("other")


# --- where a value comes from --------------------------------------------------------------

def _enclosing_selects(node: exp.Expression) -> list[exp.Select]:
    selects = []
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.Select):
            selects.append(parent)
        parent = parent.parent
    return selects


def _table_sources(select: exp.Select, ctes: set[str]) -> list[exp.Table]:
    """The base tables a SELECT reads directly (FROM and JOINs), CTE references left out."""
    sources = []
    from_ = select.args.get("from_") or select.args.get("from")
    items = [from_.this] if from_ is not None else []
    items += [join.this for join in select.args.get("joins") or ()]
    for item in items:
        if isinstance(item, exp.Table) and item.name and not (not item.db and item.name.lower() in ctes):
            sources.append(item)
    return sources


def _sampleable(source: Optional[exp.Expression]) -> bool:
    if source is None or not any(True for _ in source.find_all(exp.Column)):
        return False
    forbidden = (exp.Query, exp.Subquery, exp.AggFunc, exp.Window, exp.Parameter, exp.Placeholder, exp.Star)
    return not any(True for _ in source.find_all(*forbidden))


def candidate_tables(node: exp.Expression, source: exp.Expression, tree: exp.Expression) -> list[exp.Table]:
    """Tables the columns of ``source`` may come from, best first (several when unqualified and ambiguous)."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    qualifiers = {column.table.lower() for column in source.find_all(exp.Column) if column.table}
    for select in _enclosing_selects(node):
        sources = _table_sources(select, ctes)
        if qualifiers:
            if len(qualifiers) > 1:
                return []
            qualifier = next(iter(qualifiers))
            matching = [t for t in sources if t.alias_or_name.lower() == qualifier]
            if matching:
                return matching[:1]
            continue  # a correlated reference to an outer query block
        return sources
    return []


def sample_query(source: exp.Expression, table: exp.Table, dialect: str, size: int = SAMPLE_SIZE) -> str:
    """The read-only query listing distinct non-null values of ``source`` in ``table``, sorted.

    >>> import sqlglot
    >>> sample_query(sqlglot.parse_one("a.name"), sqlglot.parse_one("SELECT 1 FROM artist AS a").args["from_"].this, "postgres", 5)
    'SELECT DISTINCT a.name AS v FROM artist AS a WHERE NOT a.name IS NULL ORDER BY v NULLS FIRST LIMIT 5'
    """
    table = table.copy()
    for key in ("joins", "laterals", "pivots", "hints", "version", "sample"):
        table.set(key, None)
    query = (
        exp.select(exp.alias_(source.copy(), "v"))
        .distinct()
        .from_(table)
        .where(exp.not_(source.copy().is_(exp.null())))
        .order_by("v")
        .limit(size)
    )
    return generate_sql(query, dialect) if dialect == "mysql" else query.sql(dialect=dialect)


# --- values ---------------------------------------------------------------------------------

def _draw(seed: int, *parts: Any) -> int:
    """A deterministic non-negative integer from the seed and ``parts``."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


_WORD = re.compile(r"[^\W_]{3,}")


def like_fragment(value: Any, draw: int) -> Optional[str]:
    """A piece of a real value to search for with LIKE: a word of it, else its start; never holding % or _.

    >>> like_fragment("Alanis Morissette", 1), like_fragment("AC/DC", 0)
    ('Morissette', 'AC/DC')
    """
    text = str(value)
    words = _WORD.findall(text)
    if words:
        return words[draw % len(words)]
    head = text[:12]
    if head and not any(c in head for c in "%_\\") and head.strip():
        return head
    return None


def kind_of_value(value: Any) -> Optional[str]:
    """Our type name of a Python value read from a database."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, str):
        return "string"
    return None


def value_text(value: Any) -> str:
    """How a value is written in ``Parameter.value`` and inside string literals."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def to_literal(value: Any) -> Optional[exp.Expression]:
    """A SQL literal for a value read from a database (None when it has no literal form here).

    >>> [to_literal(v).sql() for v in (3, -2.5, "O'Neil", True, datetime.date(2020, 1, 2))]
    ['3', '-2.5', "'O''Neil'", 'TRUE', "'2020-01-02'"]
    """
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, decimal.Decimal)) or (isinstance(value, float) and math.isfinite(value)):
        text = repr(value) if isinstance(value, float) else str(value)
        return exp.Literal.number(text)
    if isinstance(value, (str, datetime.date, datetime.time, uuid.UUID)):
        return exp.Literal.string(value_text(value))
    return None


def default_value(parameter: Parameter) -> Any:
    """A parameter's written default as a value of its type (``'10'`` → 10 for an int)."""
    text = parameter.default
    if text is None:
        return None
    if parameter.type in ("int", "float", "decimal") or (parameter.type is None and re.fullmatch(r"-?\d+(\.\d+)?", text)):
        try:
            return int(text) if re.fullmatch(r"-?\d+", text) else decimal.Decimal(text)
        except (ValueError, decimal.InvalidOperation):
            return text
    return text


def _choose(values: Sequence[Any], usage: Usage, draw: int, partner_draw: Optional[int]) -> Any:
    """A value from ``values`` (sorted ascending, as sampled) that fits the operator."""
    pool = list(values)
    if usage.op == "gt" and len(pool) > 1:
        pool = pool[:-1]
    elif usage.op == "lt" and len(pool) > 1:
        pool = pool[1:]
    if usage.op in ("between_low", "between_high") and partner_draw is not None:
        a, b = draw % len(pool), partner_draw % len(pool)
        return pool[min(a, b)] if usage.op == "between_low" else pool[max(a, b)]
    return pool[draw % len(pool)]


def _apply_case(value: Any, case: Optional[str]) -> Any:
    if isinstance(value, str) and case == "lower":
        return value.lower()
    if isinstance(value, str) and case == "upper":
        return value.upper()
    return value


# --- the plan for one template ---------------------------------------------------------------

class Slot(NamedTuple):
    """One parameter of a template and how to fill it."""

    parameter: Parameter
    usage: Usage
    in_string: bool = False  # a SEDE placeholder inside a string literal
    like_literal: bool = False  # ... inside a literal that already holds % (fill with a fragment)
    candidates: tuple = ()  # (source expression, table) pairs to sample from


def plan_template(tree: exp.Expression, parameters: Sequence[Parameter]) -> list[Slot]:
    """How to fill each parameter of ``tree`` (pure; the first usable occurrence wins)."""
    slots = []
    names = [p.name for p in parameters]
    nodes = placeholders.parameter_nodes(tree, names)
    literals = placeholders.sede_in_strings(tree)
    for parameter in parameters:
        best: Optional[Slot] = None
        for node in (n for n in nodes if n.name == parameter.name):
            usage = usage_of(node)
            candidates = ()
            if usage.source is not None and _sampleable(usage.source):
                candidates = tuple((usage.source, t) for t in candidate_tables(node, usage.source, tree))
            slot = Slot(parameter, usage, candidates=candidates)
            if best is None or (candidates and not best.candidates) or \
                    (best.usage.op == "other" and usage.op in ("limit", "offset")):
                best = slot
            if candidates:
                break
        if best is None:
            best = _string_slot(parameter, literals, tree)
        slots.append(best)
    return slots


def _string_slot(parameter: Parameter, literals: list[exp.Literal], tree: exp.Expression) -> Slot:
    """A SEDE placeholder inside a string literal: compared like the literal it sits in."""
    pattern = re.compile(rf"##{re.escape(parameter.name)}(?::\w+)?(?:\?[^#]*)?##", re.IGNORECASE)
    for literal in literals:
        if not pattern.search(literal.this):
            continue
        holder = literal
        while isinstance(holder.parent, (exp.Cast, exp.Paren, exp.Lower, exp.Upper)):
            holder = holder.parent
        usage = usage_of(holder)
        wildcard = "%" in pattern.sub("", literal.this) or usage.op in ("like", "like_part")
        candidates = ()
        if usage.source is not None and _sampleable(usage.source):
            candidates = tuple((usage.source, t) for t in candidate_tables(literal, usage.source, tree))
        return Slot(parameter, usage, in_string=True, like_literal=wildcard, candidates=candidates)
    return Slot(parameter, Usage("other"), in_string=True)


def fill(tree: exp.Expression, slots: Sequence[Slot], values: dict[str, Any]) -> exp.Expression:
    """A copy of ``tree`` with every parameter replaced by its value (literal, or text inside strings)."""
    literal_values = {name: to_literal(value) for name, value in values.items()}
    in_string = {slot.parameter.name.lower(): value_text(values[slot.parameter.name])
                 for slot in slots if slot.parameter.name in values}
    names = set(values)

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Parameter, exp.Placeholder)) and node.name in names \
                and not isinstance(node.parent, exp.Parameter):
            return literal_values[node.name].copy()
        if isinstance(node, exp.Literal) and node.is_string and "##" in node.this:
            return exp.Literal.string(placeholders.substitute_in_string(node.this, in_string))
        return node

    return tree.copy().transform(replace)


def validation_query(tree: exp.Expression, slots: Sequence[Slot], dialect: str) -> str:
    """The template with every placeholder NULL (LIMIT/OFFSET 0), returning no rows: it checks
    names, types and the plan without any value, like a prepared statement would."""
    names = {slot.parameter.name: slot for slot in slots}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Parameter, exp.Placeholder)) and node.name in names \
                and not isinstance(node.parent, exp.Parameter):
            if names[node.name].usage.op in ("limit", "offset"):
                return exp.Literal.number(0)
            return exp.Null()
        return node

    checked = tree.copy().transform(replace)
    if isinstance(checked, exp.Query):
        checked = checked.limit(0)
    return generate_sql(checked, dialect) if dialect == "mysql" else checked.sql(dialect=dialect)


def instances_wanted(frequency: int, settings: InstantiateSettings, mean_frequency: Optional[float]) -> int:
    """How many instances a template gets: k, or k × frequency / mean frequency when weighting by frequency.

    >>> s = InstantiateSettings(instances_per_template=2, weight_by="frequency", max_per_template=5)
    >>> instances_wanted(1, s, 10.0), instances_wanted(10, s, 10.0), instances_wanted(1000, s, 10.0)
    (1, 2, 5)
    """
    k = settings.instances_per_template
    cap = settings.max_per_template
    if settings.weight_by == "frequency" and mean_frequency and math.isfinite(mean_frequency) and mean_frequency > 0:
        ceiling = cap if cap else 10 * k
        return max(1, min(ceiling, round(k * max(frequency, 0) / mean_frequency)))
    return min(k, cap) if cap else k


# --- the DoFn --------------------------------------------------------------------------------

class _Unresolved(NamedTuple):
    name: str
    reason: str


_SHARED_EXECUTORS = Shared()


class _InstantiateFn(beam.DoFn):
    """Fills parameterized records; passes every other record through untouched."""

    def __init__(self, database: Optional[str], executor_settings: dict[str, Any], settings: InstantiateSettings):
        self.database = database
        self.executor_settings = executor_settings
        self.settings = settings

    def setup(self) -> None:
        self._executors = None
        self._databases = None
        if self.database:
            from transforms.kit.executors import ExecutorSet

            settings = dict(self.executor_settings)
            tag = "instantiate:" + hashlib.sha256(repr((self.database, sorted(settings.items()))).encode()).hexdigest()
            self._executors = _SHARED_EXECUTORS.acquire(lambda: ExecutorSet(settings), tag=tag)
            self._databases = DatabaseMap.parse(self.database)
        self._samples: collections.OrderedDict = collections.OrderedDict()

    def process(self, record: Record, mean_frequency: Optional[float] = None) -> Iterator:
        if not record.parameters:
            count("instantiate.passthrough")
            yield record
            return
        count("instantiate.templates")
        yield beam.pvalue.TaggedOutput(NOTES, "note:instantiate:templates")
        try:
            yield from self._instantiate(record, mean_frequency)
        except DatabaseUnavailable as error:
            yield reject("instantiate", "database_unavailable", redact(str(error)), record)
        except Exception as error:  # noqa: BLE001 - one odd template must not stop the run
            _LOGGER.debug("instantiate failed", exc_info=True)
            yield reject("instantiate", "internal_error", redact(f"{type(error).__name__}: {error}")[:500], record)

    def _instantiate(self, record: Record, mean_frequency: Optional[float]) -> Iterator:
        dialect = record.dialect
        # parsed afresh, not trees.tree_for: Normalize generates SQL from its tree in place
        # (copy=False), and some dialects rewrite that tree while printing it (T-SQL's TOP)
        tree = sqlglot.parse_one(record.normalized_sql, read=dialect)
        slots = plan_template(tree, record.parameters)
        url = self._databases.url_for(record.db_id) if self._databases is not None else None
        executor = self._executors.get(url) if url else None
        pools: dict[str, list] = {}
        unresolved: list[_Unresolved] = []
        for slot in slots:
            pool, why = self._pool(slot, executor, dialect)
            if pool:
                pools[slot.parameter.name] = pool
            elif slot.parameter.default is None:
                unresolved.append(_Unresolved(slot.parameter.name, why))
        if unresolved:
            yield from self._keep_unfilled(record, tree, slots, unresolved, executor, url)
            return
        wanted = instances_wanted(record.frequency, self.settings, mean_frequency)
        made = self._assignments(record, slots, pools, wanted)
        if len(made) < wanted:
            count("instantiate.fewer_distinct_values")
            yield beam.pvalue.TaggedOutput(NOTES, "note:instantiate:fewer_distinct_values_than_wanted")
        for index, (values, sources) in enumerate(made):
            yield self._instance(record, tree, slots, values, dialect)
            count("instantiate.instances")
            yield beam.pvalue.TaggedOutput(NOTES, "note:instantiate:instances")
            for source in sources:
                yield beam.pvalue.TaggedOutput(NOTES, f"note:instantiate:value_from:{source}")
            if index:
                yield beam.pvalue.TaggedOutput(NOTES, "added:instantiate")

    # -- values -------------------------------------------------------------------------------
    def _pool(self, slot: Slot, executor, dialect: str) -> tuple[list, str]:
        """The values a slot may take (sorted as sampled), or why there are none."""
        op = slot.usage.op
        if op == "limit":
            return list(LIMIT_CHOICES), ""
        if op == "offset":
            return list(OFFSET_CHOICES), ""
        if not slot.candidates:
            return [], f"{op}_without_column" if op != "other" else "not_compared_with_a_column"
        if executor is None:
            return [], "no_database"
        why = "sample_failed"
        for source, table in slot.candidates:
            sql = sample_query(source, table, dialect)
            key = (executor.url, sql)
            cached = self._samples.get(key)
            if cached is None:
                try:
                    _, rows = executor.fetch_rows(sql)
                    cached = ("ok", [row[0] for row in rows if to_literal(row[0]) is not None])
                except DatabaseUnavailable:
                    raise
                except Exception as error:  # noqa: BLE001 - e.g. the column is not in this table
                    cached = ("error", executor.describe_error(error, sql)[:200])
                self._samples[key] = cached
                while len(self._samples) > _CACHE_SIZE:
                    self._samples.popitem(last=False)
                count("instantiate.samples")
            else:
                self._samples.move_to_end(key)
            status, values = cached
            if status == "ok" and values:
                return values, ""
            why = "empty_column" if status == "ok" else "sample_failed"
        return [], why

    def _assignments(self, record: Record, slots: Sequence[Slot], pools: dict, wanted: int) -> list:
        """Up to ``wanted`` distinct value assignments ({name: value}, [value sources])."""
        seed = self.settings.seed
        made, seen = [], set()
        for index in range(wanted):
            for attempt in range(_ATTEMPTS):
                draws = {s.parameter.name: _draw(seed, record.sql_fingerprint, s.parameter.name, index, attempt)
                         for s in slots}
                values, sources = {}, []
                for slot in slots:
                    name = slot.parameter.name
                    if index == 0 and slot.parameter.default is not None:
                        values[name], source = default_value(slot.parameter), "default"
                    elif name in pools:
                        value = _choose(pools[name], slot.usage, draws[name], draws.get(slot.usage.partner))
                        values[name] = self._shape(value, slot, draws[name])
                        source = "constant" if slot.usage.op in ("limit", "offset") else "database"
                    else:
                        values[name], source = default_value(slot.parameter), "default"
                    sources.append(source)
                if any(v is None for v in values.values()):
                    continue
                signature = tuple(sorted((k, repr(v)) for k, v in values.items()))
                if signature not in seen:
                    seen.add(signature)
                    made.append((values, sources))
                    break
            else:
                break  # no new combination: the value space is exhausted
        return made

    @staticmethod
    def _shape(value: Any, slot: Slot, draw: int) -> Any:
        """Fit a sampled value to how it is used (a LIKE pattern, a fragment, the case of lower())."""
        op = slot.usage.op
        if slot.in_string:
            return like_fragment(value, draw) if slot.like_literal else _apply_case(value, slot.usage.case)
        if op == "like":
            fragment = like_fragment(value, draw)
            return None if fragment is None else _apply_case(f"%{fragment}%", slot.usage.case)
        if op == "like_part":
            return _apply_case(like_fragment(value, draw), slot.usage.case)
        return _apply_case(value, slot.usage.case)

    # -- records ------------------------------------------------------------------------------
    def _instance(self, record: Record, tree, slots, values: dict, dialect: str) -> Record:
        filled_tree = fill(tree, slots, values)
        # MySQL keeps its own REGEXP (sqlglot would print REGEXP_LIKE, which MariaDB lacks)
        sql = (generate_sql(filled_tree, dialect) if dialect == "mysql"
               else filled_tree.sql(dialect=dialect, comments=False))
        trees.remember(sql, dialect, filled_tree)
        parameters = tuple(
            p._replace(value=value_text(values[p.name]), type=p.type or kind_of_value(values[p.name]))
            for p in record.parameters
        )
        instance = new_record(
            sql, record.question, context=record.context, success=record.success, db_id=record.db_id,
            source=record.source, origin=record.origin, frequency=record.frequency, parent_id=record.id,
            evolution="instantiate", persona=record.persona, extra=record.extra,
        )
        return instance._replace(
            question_source=record.question_source, dialect=dialect, normalized_sql=sql,
            sql_fingerprint=fingerprint(sql), template_fingerprint=record.template_fingerprint,
            tables=record.tables, parameters=parameters,
        )

    def _keep_unfilled(self, record, tree, slots, unresolved, executor, url) -> Iterator:
        """No value for some parameter: keep the template, checked without values when a database is there."""
        reason = "; ".join(f"{u.name}: {u.reason}" for u in unresolved)
        for item in unresolved:
            count(f"instantiate.unresolved.{item.reason}")
            yield beam.pvalue.TaggedOutput(NOTES, f"note:instantiate:unresolved:{item.reason}")
        if executor is None:
            count("instantiate.unfilled")
            yield beam.pvalue.TaggedOutput(NOTES, "note:instantiate:kept_unfilled")
            yield record  # Execute marks it skipped (--validate parse / none) or says it has no database
            return
        checked = executor.execute(validation_query(tree, slots, record.dialect))
        if checked.status == "ok":
            execution = Execution(status="skipped", columns=checked.columns,
                                  error=f"no value for parameter(s) {reason}; checked without values")
            yield beam.pvalue.TaggedOutput(NOTES, "note:instantiate:validated_without_values")
        else:
            execution = checked._replace(error=f"checked without values ({reason}): {checked.error}")
            yield beam.pvalue.TaggedOutput(NOTES, f"note:instantiate:validation_{checked.status}")
        count(f"instantiate.validated.{checked.status}")
        yield record._replace(execution=execution._replace(elapsed_ms=None))


class InstantiateParameters(beam.PTransform):
    """Records → records with every parameterized template filled in (or kept, marked); plus
    ``dead`` (templates that could not be handled) and ``notes`` (report counts).

    ``database`` is the ``--database`` spec (None: no sampling, defaults only).
    """

    def __init__(
        self,
        database: Optional[str],
        settings: InstantiateSettings = InstantiateSettings(),
        *,
        timeout_s: float = 5.0,
        max_rows: int = SAMPLE_SIZE,
        password_env: Optional[str] = None,
        max_connections: int = 2,
    ):
        super().__init__()
        self.database = database
        self.settings = settings
        # Only the variable's name travels with the job; the worker reads the password.
        self.executor_settings = {"timeout_s": timeout_s, "max_rows": max(max_rows, SAMPLE_SIZE),
                                  "password_env": password_env, "max_connections": max_connections}

    def expand(self, records):
        fn = _InstantiateFn(self.database, self.executor_settings, self.settings)
        if self.settings.weight_by == "frequency":
            mean = (
                records
                | "ParameterizedFrequency" >> beam.FlatMap(lambda r: [r.frequency] if r.parameters else [])
                | "MeanFrequency" >> beam.combiners.Mean.Globally()
            )
            return records | "Instantiate" >> beam.ParDo(fn, mean_frequency=beam.pvalue.AsSingleton(mean)).with_outputs(
                DEAD, NOTES, main="records"
            )
        return records | "Instantiate" >> beam.ParDo(fn).with_outputs(DEAD, NOTES, main="records")
