"""Teachings: glossary terms, hints and guardrails every generation prompt carries.

A model that sees only column names guesses what "revenue" or "active customer" means;
teachings say it once, per database, and every synthesis, evolution and round-trip
prompt includes them. They come from three places:

* the schema, by rules: glossary entries that map the words in an identifier to it
  (``billing country`` → ``Invoice.BillingCountry``), and a hint per foreign key (the
  join path);
* the logs, by query pattern mining: the joins, filters, aggregations and groupings
  users' queries use most often (``mine_patterns`` over each logged query's tree);
* the model, given both: business terms, data facts and mistakes to avoid.

The result is written to ``<output>-teachings.json``; edit it and pass it back with
``--teachings FILE`` to use it as is (nothing is generated then). The file is
``{"version": 1, "databases": [{"db_id", "glossary": [{"term", "meaning"}], "hints",
"guardrails"}]}``; a bare ``{"glossary", "hints", "guardrails"}`` object applies to
every database.
"""

from __future__ import annotations

import collections
import json
import logging
import re
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
import sqlglot
from sqlglot import exp

from adapters.llm.handler import LlmTask
from adapters.llm.prompting import load_prompt
from transforms.kit import catalog as catalogs
from transforms.kit.inputs import read_json_file
from transforms.sql import table_schema
from transforms.core.vocab import DIALECT_NAMES
from transforms.generate.generation import GenerationSettings, output_paths, output_tokens
from transforms.kit.llm_stage import AskModel, ModelReply
from transforms.kit.write import WriteTextFileFn

_LOGGER = logging.getLogger(__name__)
#: Key of teachings that apply to every database.
ANY_DATABASE = "*"
#: Most frequent logged patterns kept per kind (join, filter, aggregate, group).
TOP_PATTERNS = 8
#: Items rendered into one prompt at most.
PROMPT_GLOSSARY, PROMPT_HINTS, PROMPT_GUARDRAILS = 25, 15, 10
#: Items kept in the file at most.
MAX_ITEMS = 300
DEFAULT_GUARDRAILS = (
    "Write one read-only SELECT (WITH allowed); never modify data.",
    "Use only tables and columns that exist in the schema; never guess a name.",
    "Compare text values exactly as the sample rows spell them.",
    "Qualify column names with their table when a query reads several tables.",
    "Join tables on their foreign keys.",
)


class Teachings(NamedTuple):
    """Domain notes for one database."""

    glossary: tuple[tuple[str, str], ...] = ()  # (term, meaning)
    hints: tuple[str, ...] = ()
    guardrails: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"glossary": [{"term": t, "meaning": m} for t, m in self.glossary], "hints": list(self.hints),
                "guardrails": list(self.guardrails)}


def _clean(text: Any) -> str:
    return " ".join(str(text or "").split())


def parse_teachings(data: Any) -> Teachings:
    """Teachings from ``{glossary, hints, guardrails}`` (each optional); ``ValueError`` if malformed.

    >>> parse_teachings({"glossary": [{"term": "revenue", "meaning": "SUM(Total)"}], "hints": ["x"]}).glossary
    (('revenue', 'SUM(Total)'),)
    """
    if not isinstance(data, dict):
        raise ValueError(f"teachings are an object with glossary, hints and guardrails, got {type(data).__name__}")
    unknown = set(data) - {"glossary", "hints", "guardrails", "db_id"}
    if unknown:
        raise ValueError(f"unexpected keys {', '.join(sorted(unknown))} (expected glossary, hints, guardrails)")
    glossary = []
    for item in data.get("glossary") or []:
        if not isinstance(item, dict) or not _clean(item.get("term")) or not _clean(item.get("meaning")):
            raise ValueError(f"a glossary entry needs a term and a meaning, got {item!r:.80}")
        glossary.append((_clean(item["term"]), _clean(item["meaning"])))
    lists = {}
    for name in ("hints", "guardrails"):
        items = data.get(name) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{name} must be a list of strings")
        lists[name] = tuple(_clean(i) for i in items if _clean(i))
    return Teachings(tuple(glossary), lists["hints"], lists["guardrails"])


def load_teachings_file(path: str) -> list[tuple[str, Teachings]]:
    """``(db key or "*", Teachings)`` from ``--teachings`` (any Beam filesystem path)."""
    data = read_json_file(path)
    if isinstance(data, dict) and "databases" in data:
        entries = data["databases"]
        if not isinstance(entries, list):
            raise ValueError('"databases" must be a list')
        found = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise ValueError("each entry of \"databases\" is an object")
            db_id = entry.get("db_id")
            found.append((catalogs.db_key(db_id), parse_teachings(entry)))
        return found
    return [(ANY_DATABASE, parse_teachings(data))]


def teachings_json(teachings: Iterable[tuple[str, Teachings]]) -> str:
    """The teachings file, sorted by database."""
    entries = [{"db_id": key or None, **t.to_dict()} for key, t in sorted(teachings, key=lambda kt: kt[0])]
    return json.dumps({"version": 1, "databases": entries}, indent=2, ensure_ascii=False) + "\n"


def teachings_for(key: str, teachings: Mapping[str, Teachings]) -> Optional[Teachings]:
    return teachings.get(key) or teachings.get(ANY_DATABASE)


def render(teachings: Optional[Teachings], tables: Sequence[table_schema.Table] = ()) -> str:
    """The prompt's domain-notes section ("" when there are none).

    Glossary entries and hints that name a table are kept only when that table is in
    ``tables`` (the prompt's focused schema), so a large glossary does not crowd the prompt.
    """
    if teachings is None or not (teachings.glossary or teachings.hints or teachings.guardrails):
        return ""
    names = {table_schema.table_key(t.name) for t in tables}

    def relevant(text: str) -> bool:
        mentioned = {w.lower() for w in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\.[A-Za-z_]", text)}
        return not names or not mentioned or bool(mentioned & names)

    lines: list[str] = []
    glossary = [(t, m) for t, m in teachings.glossary if relevant(m)][:PROMPT_GLOSSARY]
    if glossary:
        lines.append("Glossary:")
        lines.extend(f"- {term}: {meaning}" for term, meaning in glossary)
    hints = [h for h in teachings.hints if relevant(h)][:PROMPT_HINTS]
    if hints:
        lines.append("Hints:")
        lines.extend(f"- {hint}" for hint in hints)
    if teachings.guardrails:
        lines.append("Avoid:")
        lines.extend(f"- {rule}" for rule in teachings.guardrails[:PROMPT_GUARDRAILS])
    if not lines:
        return ""
    return "\n".join(["", "Domain notes:", *lines]) + "\n"


# ---------------------------------------------------------------------------------------------
# Query pattern mining
# ---------------------------------------------------------------------------------------------


def _sources(select: exp.Expression) -> dict[str, str]:
    """Alias or name → table name, for the tables of one query (subqueries included)."""
    mapping = {}
    for table in select.find_all(exp.Table):
        if table.name:
            mapping[table.alias_or_name.lower()] = table.name
    return mapping


def _column_name(column: exp.Column, sources: Mapping[str, str]) -> Optional[str]:
    qualifier = column.table.lower() if column.table else None
    if qualifier:
        table = sources.get(qualifier)
        return f"{table}.{column.name}" if table else None
    tables = set(sources.values())
    return f"{tables.pop()}.{column.name}" if len(tables) == 1 else None


def mine_patterns(tree: exp.Expression) -> list[str]:
    """The join, filter, aggregation and grouping patterns of one query, as keys.

    >>> mine_patterns(sqlglot.parse_one(
    ...     "SELECT g.Name, SUM(t.Milliseconds) FROM Track t JOIN Genre g ON t.GenreId = g.GenreId "
    ...     "WHERE t.UnitPrice > 0.99 GROUP BY g.Name"))
    ['aggregate SUM(Track.Milliseconds)', 'filter Track.UnitPrice', 'group Genre.Name', 'join Genre.GenreId = Track.GenreId']
    """
    sources = _sources(tree)
    found = set()
    for join in tree.find_all(exp.Join):
        condition = join.args.get("on")
        for eq in condition.find_all(exp.EQ) if condition is not None else ():
            left, right = eq.this, eq.expression
            if isinstance(left, exp.Column) and isinstance(right, exp.Column):
                names = [_column_name(left, sources), _column_name(right, sources)]
                if all(names):
                    found.add("join " + " = ".join(sorted(names)))
    for where in tree.find_all(exp.Where):
        for column in where.find_all(exp.Column):
            name = _column_name(column, sources)
            if name:
                found.add(f"filter {name}")
    for agg in tree.find_all(exp.AggFunc):
        if agg.find_ancestor(exp.Window) is not None:
            continue
        columns = list(agg.find_all(exp.Column))
        function = agg.key.upper()
        if not columns:
            found.add(f"aggregate {function}(*)")
        else:
            name = _column_name(columns[0], sources)
            if name:
                found.add(f"aggregate {function}({name})")
    for group in tree.find_all(exp.Group):
        for column in group.find_all(exp.Column):
            name = _column_name(column, sources)
            if name:
                found.add(f"group {name}")
    return sorted(found)


def _patterns_of(record: Any, dialect: Optional[str]) -> list[tuple[str, str]]:
    try:
        tree = sqlglot.parse_one(record.sql, read=record.dialect or dialect or None)
    except Exception:  # noqa: BLE001 - unparseable logs are the normalize stage's business
        return []
    if tree is None:
        return []
    key = catalogs.db_key(record.db_id)
    return [(key, pattern) for pattern in mine_patterns(tree)]


def top_patterns(counted: Iterable[tuple[str, int]], per_kind: int = TOP_PATTERNS) -> list[tuple[str, int]]:
    """The ``per_kind`` most frequent patterns of each kind (ties: alphabetical).

    >>> top_patterns([("filter a.x", 3), ("filter a.y", 5), ("join a.i = b.i", 1)], per_kind=1)
    [('filter a.y', 5), ('join a.i = b.i', 1)]
    """
    by_kind: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for pattern, count in counted:
        by_kind[pattern.split(" ", 1)[0]].append((pattern, count))
    kept = []
    for kind in sorted(by_kind):
        kept.extend(sorted(by_kind[kind], key=lambda pc: (-pc[1], pc[0]))[:per_kind])
    return kept


class MinePatterns(beam.PTransform):
    """Logged records → ``(db key, [(pattern, count), ...])``, the most frequent patterns per database."""

    def __init__(self, dialect: Optional[str] = None):
        super().__init__()
        self.dialect = dialect

    def expand(self, records):
        dialect = self.dialect
        return (
            records
            | "Patterns" >> beam.FlatMap(lambda r: _patterns_of(r, dialect))
            | "CountPatterns" >> beam.combiners.Count.PerElement()
            | "ByDatabase" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
            | "GroupByDatabase" >> beam.GroupByKey()
            | "TopPatterns" >> beam.MapTuple(lambda key, counted: (key, top_patterns(counted)))
        )


# ---------------------------------------------------------------------------------------------
# From the schema and the patterns
# ---------------------------------------------------------------------------------------------


def identifier_words(name: str) -> str:
    """The words of an identifier.

    >>> identifier_words("BillingCountry"), identifier_words("invoice_line_id"), identifier_words("HTTPCode")
    ('billing country', 'invoice line id', 'http code')
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return " ".join(w.lower() for w in re.split(r"[\s_]+", spaced) if w)


def pattern_hint(pattern: str, count: int) -> str:
    """A logged pattern as a hint sentence."""
    kind, _, what = pattern.partition(" ")
    verbs = {"join": "join", "filter": "filter on", "aggregate": "compute", "group": "group by"}
    return f"Users' queries often {verbs.get(kind, kind)} {what} ({count} logged queries)."


def rule_teachings(catalog: catalogs.Catalog, patterns: Sequence[tuple[str, int]] = ()) -> Teachings:
    """Teachings derived without a model: identifier glossary, foreign-key join paths, logged patterns."""
    glossary: dict[str, str] = {}
    hints = []
    for table in catalog.tables:
        words = identifier_words(table.name.rsplit(".", 1)[-1])
        if words != table.name.lower():
            glossary.setdefault(words, f"table {table.name}")
        for column in table.columns:
            words = identifier_words(column.name)
            if words != column.name.lower() and " " in words:
                glossary.setdefault(words, f"{table.name}.{column.name}")
            if column.references:
                hints.append(f"{table.name}.{column.name} references {column.references}: join {table.name} to "
                             f"{column.references.rsplit('.', 1)[0]} on it.")
    hints.extend(pattern_hint(p, c) for p, c in patterns)
    return Teachings(tuple(sorted(glossary.items()))[:MAX_ITEMS], tuple(hints)[:MAX_ITEMS], DEFAULT_GUARDRAILS)


def merge_teachings(model: Teachings, rules: Teachings) -> Teachings:
    """The model's items first (business terms), then the rules' (identifier words), deduplicated by term/text."""
    glossary: dict[str, tuple[str, str]] = {}
    for term, meaning in (*model.glossary, *rules.glossary):
        glossary.setdefault(term.lower(), (term, meaning))

    def unique(items: Iterable[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(items))[:MAX_ITEMS]

    return Teachings(tuple(glossary.values())[:MAX_ITEMS], unique((*model.hints, *rules.hints)),
                     unique((*rules.guardrails, *model.guardrails)))


class _TeachingsTasksFn(beam.DoFn):
    """Target → rule teachings (and a model request to enrich them)."""

    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, target: tuple[str, str], patterns: Mapping[str, list]) -> Iterator:
        key, _ = target
        try:
            catalog = self._bench.catalog(key or None)
        except Exception as error:  # noqa: BLE001 - no teachings is a note, not a crash
            _LOGGER.warning("teachings: cannot describe database %r: %s", key, type(error).__name__)
            yield beam.pvalue.TaggedOutput("notes", "note:teachings:schema_unavailable")
            return
        mined = patterns.get(key, [])
        rules = rule_teachings(catalog, mined)
        if self.settings.llm.backend == "rules":
            yield beam.pvalue.TaggedOutput("done", (key, rules))
            return
        prompt = load_prompt("synth_teachings")
        listed = "\n".join(f"- {p} ({c} queries)" for p, c in mined) or "(no logged queries)"
        request = prompt.request(stage="teachings", dialect=DIALECT_NAMES.get(catalog.dialect, catalog.dialect),
                                 schema=catalogs.render(catalogs.focus(catalog, limit=self.settings.max_prompt_tables)),
                                 patterns=listed)
        yield LlmTask((request._replace(max_output_tokens=output_tokens(self.settings, 2048)),), (key, rules))


def _apply_teachings(reply: ModelReply) -> Iterator:
    key, rules = reply.context
    outcome = reply.outcome
    if outcome.error:
        _LOGGER.warning("teachings for %r: %s: %s", key, outcome.error, outcome.detail[:200])
        yield beam.pvalue.TaggedOutput("notes", f"note:teachings:{outcome.error}")
        yield key, rules
        return
    try:
        model = parse_teachings(outcome.value)
    except ValueError:
        yield beam.pvalue.TaggedOutput("notes", "note:teachings:invalid_reply")
        yield key, rules
        return
    yield beam.pvalue.TaggedOutput("notes", "note:teachings:from_model")
    yield key, merge_teachings(model, rules)


class TeachingOutputs(NamedTuple):
    teachings: beam.PCollection  # (db key or "*", Teachings)
    notes: beam.PCollection


class MakeTeachings(beam.PTransform):
    """``(targets, logged records)`` → ``(db key, Teachings)``: from ``--teachings``, else built and written.

    Built teachings go to ``<output>-teachings.json``. A failed model request keeps
    the rule-derived teachings (a report note says so).
    """

    def __init__(self, settings: "GenerationSettings", dialect: Optional[str] = None):
        super().__init__()
        self.settings = settings
        self.dialect = dialect

    def expand(self, inputs):
        targets, logged = inputs
        settings = self.settings
        pipeline = targets.pipeline
        if settings.teachings_given is not None:
            given = pipeline | "GivenTeachings" >> beam.Create(list(settings.teachings_given))
            return TeachingOutputs(given, pipeline | "NoTeachingNotes" >> beam.Create([]))
        patterns = logged | "MinePatterns" >> MinePatterns(self.dialect)
        # Without a model (--llm rules) the rule teachings come out as "done", and nothing is asked.
        asked = targets | "AskTeachings" >> AskModel(
            _TeachingsTasksFn(settings), settings.llm, _apply_teachings, main="teachings", tags=("notes", "done"),
            task_side_inputs={"patterns": beam.pvalue.AsDict(patterns)})
        teachings = (asked["done"], asked["teachings"]) | "AllTeachings" >> beam.Flatten()
        if settings.output:
            (teachings
             | "TeachingsList" >> beam.combiners.ToList()
             | "WriteTeachings" >> beam.ParDo(WriteTextFileFn(output_paths(settings.output)["teachings"], teachings_json)))
        return TeachingOutputs(teachings, asked["notes"])
