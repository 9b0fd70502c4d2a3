"""Which tables, columns, comments and example values a training prompt's schema shows (``--prompt_schema``).

A model trained only on prompts that list exactly the tables its answer reads learns that
every table shown is to be used; at inference it meets whole databases. Three modes:

* ``referenced`` (default): the tables the SQL reads, every column, no comments — the prompt
  the exports always wrote, byte for byte;
* ``full``: every table of the database (listed from ``--database``, else every ``--schema``
  table), every column and every column comment;
* ``noisy`` (OmniSQL / Data Designer style): the referenced tables in full, plus 1 to
  ``max_distractors`` distractor tables — foreign-key neighbours of the referenced tables
  first, then the others — each showing its key columns and a share of its other columns drawn
  uniformly from ``min_column_share`` to 100 % (OmniSQL's 10-100 % of unused columns); each
  column comment is dropped with probability ``comment_drop_share``; and columns whose values
  match the question's words show up to ``max_examples`` such values, read from the database.

Tables are shown in the database's order (referenced ones not in it last), so their position
does not tell which are used. Every choice comes from a ``random.Random`` seeded with a hash of
the pair's id and ``--seed`` (``pair_rng``), never the global random state: the same pair and
seed give the same prompt on every worker, another seed another prompt.

The functions that choose and render are pure; ``PromptSchema`` adds the database reads
(through the ``Executor`` contract, read-only, bounded: ``VALUE_SCAN_ROWS`` rows per table,
``VALUES_PER_COLUMN`` distinct values per column, each cut to ``VALUE_CHARS``), cached per
worker.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from transforms.sql import table_schema
from transforms.sql.table_schema import Column, Table, table_key

REFERENCED, NOISY, FULL = "referenced", "noisy", "full"
PROMPT_SCHEMAS = (REFERENCED, NOISY, FULL)
#: Distractor tables added to a noisy prompt: 1 to this many (fewer when the database has fewer).
MAX_DISTRACTORS = 4
#: A distractor table shows its key columns and this share (uniform, up to 100 %) of the others.
MIN_COLUMN_SHARE = 0.1
#: Each column comment of a noisy prompt is dropped with this probability.
COMMENT_DROP_SHARE = 0.3
#: Example values shown per column at most, and characters per value.
MAX_EXAMPLES = 3
EXAMPLE_CHARS = table_schema.SAMPLE_CHARS
#: Bounds of the value index: rows read per table, distinct values kept per column, characters kept per value.
VALUE_SCAN_ROWS = 2000
VALUES_PER_COLUMN = 500
VALUE_CHARS = 200
#: Rows the schema lookup's executors may return: a value scan, or a list of up to 500 tables.
LOOKUP_MAX_ROWS = VALUE_SCAN_ROWS
_TEXT_TYPES = ("char", "text", "string", "clob", "name", "enum")
_STOPWORDS = frozenset(
    "the and for with from that this what which who whom whose how many much are was were was has have had "
    "all any each every per than then there their them they its not but can did does list show give find "
    "tell number count total average name names".split())


@dataclass(frozen=True)
class PromptSchemaSettings:
    """``--prompt_schema`` and the ratios of the noisy mode (documented in the module docstring)."""

    mode: str = REFERENCED
    seed: int = 0
    max_distractors: int = MAX_DISTRACTORS
    min_column_share: float = MIN_COLUMN_SHARE
    comment_drop_share: float = COMMENT_DROP_SHARE
    max_examples: int = MAX_EXAMPLES

    @property
    def reads_catalog(self) -> bool:
        """Whether prompts show tables the SQL does not read (so the whole database is listed)."""
        return self.mode != REFERENCED


def pair_rng(pair_id: str, seed: int) -> random.Random:
    """The random choices of one pair's prompt: a hash of its id and the seed, never the global state.

    >>> pair_rng("r1", 0).random() == pair_rng("r1", 0).random() != pair_rng("r1", 1).random()
    True
    """
    digest = hashlib.sha256(f"prompt_schema\0{seed}\0{pair_id}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# -- choosing ------------------------------------------------------------------------------


def _is_key(column: Column) -> bool:
    return column.primary_key or bool(column.references)


def thin_columns(table: Table, rng: random.Random, min_share: float) -> Table:
    """``table`` with its key columns and a share (uniform in ``[min_share, 1]``) of the others, in order.

    Sample rows keep the same columns (or are dropped when they do not line up with them).
    """
    others = [i for i, column in enumerate(table.columns) if not _is_key(column)]
    if not others:
        return table
    share = rng.uniform(min(max(min_share, 0.0), 1.0), 1.0)
    keep_others = set(rng.sample(others, max(1, round(share * len(others)))))
    kept = [i for i, column in enumerate(table.columns) if _is_key(column) or i in keep_others]
    aligned = all(len(row) == len(table.columns) for row in table.samples)
    samples = tuple(tuple(row[i] for i in kept) for row in table.samples) if aligned else ()
    return table._replace(columns=tuple(table.columns[i] for i in kept), samples=samples)


def drop_comments(table: Table, rng: random.Random, share: float) -> Table:
    """``table`` with each column comment removed with probability ``share``."""
    columns = tuple(c._replace(comment="") if c.comment and rng.random() < share else c for c in table.columns)
    return table._replace(columns=columns)


def distractors(referenced: Sequence[Table], universe: Sequence[Table], rng: random.Random,
                limit: int) -> list[Table]:
    """1 to ``limit`` tables of ``universe`` the SQL does not read: foreign-key neighbours of the
    referenced tables first (in random order), then the others (in random order).

    >>> rng = pair_rng("r", 0)
    >>> a, b = Table("a", (Column("id", primary_key=True),)), Table("b", (Column("a_id", references="a.id"),))
    >>> [t.name for t in distractors([a], [a, Table("c"), b, Table("d")], rng, 1)]
    ['b']
    """
    used = {table_key(t.name) for t in referenced}
    candidates = [t for t in universe if table_key(t.name) not in used]
    if not candidates or limit <= 0:
        return []
    links = table_schema.foreign_key_links([*universe, *referenced])
    near = [t for t in candidates if links.get(table_key(t.name), set()) & used]
    far = [t for t in candidates if not links.get(table_key(t.name), set()) & used]
    rng.shuffle(near)
    rng.shuffle(far)
    return (near + far)[: rng.randint(1, min(limit, len(candidates)))]


def _in_universe_order(tables: Sequence[Table], universe: Sequence[Table]) -> list[Table]:
    position = {table_key(t.name): i for i, t in enumerate(universe)}
    order = sorted(range(len(tables)), key=lambda i: (position.get(table_key(tables[i].name), len(universe)), i))
    return [tables[i] for i in order]


def choose_tables(pair_id: str, referenced: Sequence[Table], universe: Sequence[Table],
                  settings: PromptSchemaSettings) -> list[Table]:
    """The tables (with their columns and comments) a pair's prompt shows, in the database's order.

    ``referenced``: the described tables the SQL reads; ``universe``: every described table of
    the database. ``referenced`` mode returns ``referenced`` unchanged.
    """
    if settings.mode == REFERENCED:
        return list(referenced)
    canonical = {table_key(t.name): t for t in universe}  # one spelling of a table's name, whichever pair asks
    referenced = [canonical.get(table_key(t.name), t) for t in referenced]
    used = {table_key(t.name) for t in referenced}
    if settings.mode == FULL:
        tables = [*referenced, *(t for t in universe if table_key(t.name) not in used)]
        return _in_universe_order(tables, universe)
    rng = pair_rng(pair_id, settings.seed)
    extra = [thin_columns(t, rng, settings.min_column_share)
             for t in distractors(referenced, universe, rng, settings.max_distractors)]
    shown = _in_universe_order([*referenced, *extra], universe)
    return [drop_comments(t, rng, settings.comment_drop_share) for t in shown]


# -- example values ------------------------------------------------------------------------


def words(text: str) -> set[str]:
    """The content words of ``text``, lowercased (3 characters or more, common question words left out).

    >>> sorted(words("How many tracks did AC/DC record in 2010?"))
    ['2010', 'record', 'tracks']
    """
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) >= 3 and w not in _STOPWORDS}


def matching_values(question: str, values: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` of ``values`` that share a word with ``question`` (or appear in it whole),
    most shared words first, then in their given order.

    >>> matching_values("Albums by Led Zeppelin?", ["Queen", "Led Zeppelin", "Zeppelin tribute"], 2)
    ['Led Zeppelin', 'Zeppelin tribute']
    """
    wanted, lowered = words(question), question.lower()
    scored = []
    for index, value in enumerate(values):
        shared = len(words(value) & wanted) + (2 if len(value) >= 3 and value.lower() in lowered else 0)
        if shared:
            scored.append((-shared, index, value))
    return [value for _, _, value in sorted(scored)[: max(0, limit)]]


def match_examples(question: str, values: Mapping[str, Mapping[str, Sequence[str]]],
                   limit: int) -> dict[str, dict[str, list[str]]]:
    """``{table key: {column: [value as SQL text, ...]}}`` for the columns whose values match the question.

    >>> match_examples("Tracks of Queen", {"artist": {"Name": ["Queen", "Abba"], "Id": []}}, 3)
    {'artist': {'Name': ["'Queen'"]}}
    """
    found: dict[str, dict[str, list[str]]] = {}
    for key, columns in values.items():
        for column, column_values in columns.items():
            matched = matching_values(question, column_values, limit)
            if matched:
                found.setdefault(key, {})[column] = [table_schema.sample_value_text(v) for v in matched]
    return found


def is_text_column(column: Column) -> bool:
    """Whether ``column`` holds text (the only values a question's words can match)."""
    return any(kind in column.type.lower() for kind in _TEXT_TYPES)


def read_column_values(executor: Any, table: Table) -> dict[str, tuple[str, ...]]:
    """Distinct values of the text columns of ``table``, from its first ``VALUE_SCAN_ROWS`` rows.

    At most ``VALUES_PER_COLUMN`` per column, each cut to ``VALUE_CHARS``; read-only, through
    the Executor contract's ``fetch_rows``; a failure gives nothing (values are a hint).
    """
    from sqlglot import exp

    columns = [c.name for c in table.columns if is_text_column(c)]
    if not columns:
        return {}
    dialect = getattr(executor, "dialect", None) or "postgres"
    try:
        sql = (exp.select(*(exp.column(name, quoted=True) for name in columns))
               .from_(exp.to_table(table.name, dialect=dialect)).limit(VALUE_SCAN_ROWS).sql(dialect=dialect))
        _, rows = executor.fetch_rows(sql)
    except Exception:  # noqa: BLE001 - example values are optional
        return {}
    found: dict[str, dict[str, None]] = {name: {} for name in columns}
    for row in rows[:VALUE_SCAN_ROWS]:
        for name, value in zip(columns, row):
            if isinstance(value, str) and value.strip() and len(found[name]) < VALUES_PER_COLUMN:
                found[name][" ".join(value.split())[:VALUE_CHARS]] = None
    return {name: tuple(values) for name, values in found.items() if values}


# -- rendering -----------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def column_notes(table: Table, examples: Mapping[str, Sequence[str]] = {}, comments: bool = False) -> dict[str, str]:
    """``{column name: note}``: its comment (when ``comments``) and its example values.

    >>> column_notes(Table("t", (Column("a", comment="the name"), Column("b"))), {"a": ["'x'"]}, comments=True)
    {'a': "the name; example values: 'x'"}
    """
    notes = {}
    for column in table.columns:
        parts = [_one_line(column.comment)] if comments and column.comment.strip() else []
        if examples.get(column.name):
            parts.append("example values: " + ", ".join(examples[column.name]))
        if parts:
            notes[column.name] = "; ".join(parts)
    return notes


def render_ddl(table: Table, sample_rows: int = 0, notes: Mapping[str, str] = {}) -> str:
    """One table as ``CREATE TABLE`` DDL, with up to ``sample_rows`` of its samples as comments and
    ``notes`` (by column name) as ``--`` comments after their columns.

    >>> t = Table("album", (Column("album_id", "INT", True), Column("artist_id", "INT", False,
    ...     "artist.artist_id")), (("1", "2"), ("3", "4")))
    >>> print(render_ddl(t, sample_rows=1))
    CREATE TABLE album (
      album_id INT PRIMARY KEY,
      artist_id INT REFERENCES artist(artist_id)
    );
    -- sample rows of album:
    -- (1, 2)
    >>> print(render_ddl(t, notes={"album_id": "the album"}))
    CREATE TABLE album (
      album_id INT PRIMARY KEY, -- the album
      artist_id INT REFERENCES artist(artist_id)
    );
    """
    columns = []
    for index, column in enumerate(table.columns):
        text = f"  {column.name}" + (f" {column.type}" if column.type else "")
        if column.primary_key:
            text += " PRIMARY KEY"
        if column.references:
            target, _, target_column = column.references.partition(".")
            text += f" REFERENCES {target}({target_column})" if target_column else f" REFERENCES {target}"
        if index < len(table.columns) - 1:
            text += ","
        if notes.get(column.name):
            text += f" -- {_one_line(notes[column.name])}"
        columns.append(text)
    lines = [f"CREATE TABLE {table.name} (", "\n".join(columns), ");"]
    samples = table.samples[: max(0, sample_rows)]
    if samples:
        lines.append(f"-- sample rows of {table.name}:")
        lines.extend(f"-- ({', '.join(row)})" for row in samples)
    return "\n".join(lines)


def render_schema(tables: Sequence[Table], sample_rows: int = 0,
                  notes: Mapping[str, Mapping[str, str]] = {}) -> str:
    """The DDL of ``tables``, one blank line apart (``notes`` by table key); a plain note when nothing is known."""
    if not tables:
        return "-- (schema not available)"
    return "\n\n".join(render_ddl(table, sample_rows, notes.get(table_key(table.name), {})) for table in tables)


# -- with a database -----------------------------------------------------------------------


class PromptSchema:
    """A pair's prompt schema, with the database reads ``noisy`` and ``full`` need, cached per worker.

    ``describe(url, name)`` describes one live table (``SchemaLookup``'s cached introspection),
    ``executor_for(url)`` gives the executor of a database URL; ``ddl`` are the ``--schema`` tables.
    """

    def __init__(self, settings: PromptSchemaSettings, ddl: Mapping[str, Table],
                 describe: Callable[[str, str], Optional[Table]], executor_for: Callable[[str], Any]):
        self.settings, self.ddl = settings, ddl
        self.describe, self.executor_for = describe, executor_for
        self._universes: dict[Optional[str], list[Table]] = {}
        self._values: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}

    def universe(self, url: Optional[str]) -> list[Table]:
        """Every described table of the database at ``url`` (its own list, then ``--schema``'s others)."""
        if url not in self._universes:
            tables: list[Table] = []
            if url is not None:
                from transforms.kit.catalog import list_tables

                try:
                    names = list_tables(self.executor_for(url))
                except Exception:  # noqa: BLE001 - fall back to the DDL
                    names = []
                for name in names:  # named as the database lists it, whichever spelling described it first
                    table = table_schema.merge(self.ddl.get(table_key(name)), self.describe(url, name))
                    if table is not None and table_key(name) not in {table_key(t.name) for t in tables}:
                        tables.append(table if table_key(name) in self.ddl else table._replace(name=name))
            seen = {table_key(t.name) for t in tables}
            tables += [t for key, t in self.ddl.items() if key not in seen]
            self._universes[url] = tables
        return self._universes[url]

    def column_values(self, url: str, table: Table) -> dict[str, tuple[str, ...]]:
        key = (url, table_key(table.name))
        if key not in self._values:
            try:
                self._values[key] = read_column_values(self.executor_for(url), table)
            except Exception:  # noqa: BLE001 - example values are optional
                self._values[key] = {}
        return self._values[key]

    def text(self, pair_id: str, question: str, referenced: Sequence[Table], url: Optional[str],
             sample_rows: int) -> str:
        """The schema section of one pair's prompt."""
        settings = self.settings
        if settings.mode == REFERENCED:
            return render_schema(referenced, sample_rows)
        shown = choose_tables(pair_id, referenced, self.universe(url), settings)
        examples: dict[str, dict[str, list[str]]] = {}
        if settings.mode == NOISY and url is not None and settings.max_examples > 0:
            whole = {table_key(t.name): t for t in self.universe(url)}  # the cache holds every text column
            values = {table_key(t.name): self.column_values(url, whole.get(table_key(t.name), t)) for t in shown}
            examples = match_examples(question, values, settings.max_examples)
        notes = {table_key(t.name): column_notes(t, examples.get(table_key(t.name), {}), comments=True)
                 for t in shown}
        return render_schema(shown, sample_rows, notes)
