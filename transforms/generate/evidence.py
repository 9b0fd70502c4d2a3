"""Evidence: BIRD-style external knowledge for questions that use domain terms or vague words (``--evidence``).

"How many active customers?" cannot become SQL from the schema alone: a reader must know
that *active customer refers to active = 1*. BIRD gives such questions "evidence", and
OmniSQL's training prompts carry it. ``--evidence`` asks the ``--llm`` model (temperature
0) to write it for each final pair from the question, the pair's SQL, the focused schema
with sample rows and the teachings (``transforms.generate.teachings``: the job's teachings when
the generators built or were given some, else the rules' glossary and join hints of the
schema). The prompt is ``adapters/llm/prompts/evidence.txt``, the reply
``{"evidence": "..."}`` checked against ``evidence.schema.json``.

A question that names its columns and values plainly needs none: the model answers
``{"evidence": ""}`` (or a word meaning none, see ``NO_EVIDENCE``) and the pair's
``evidence`` stays null. Otherwise the notes are stored as the record's ``evidence`` and
every export renders them into the prompt (``transforms.publish.exports.training_prompt`` and
``user_message``); an empty one renders nothing.

Model output is data, so the evidence is checked before it is kept (``evidence_problem``):
it must name something the pair really uses — a table or column of its schema, or a
value its SQL compares with — else the pair is a dead letter (stage ``evidence``, reason
``ungrounded``); and it must not be a query (``SELECT … FROM``: reason ``leaks_sql``),
which would hand the answer to the model being trained. Other reasons: ``bad_reply``,
``request_failed``, ``no_question``, ``no_database``, ``database_unavailable``.

One request per final pair (plus at most one repair request), counted as ``llm.evidence.*``
in the report's ``llm`` section; the report's ``evidence`` section counts ``written`` and
``none``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional

import apache_beam as beam
from sqlglot import exp

from adapters.llm import LlmRequest, LlmSettings
from adapters.llm.handler import LlmTask
from adapters.llm.prompting import load_prompt
from transforms.kit import catalog as catalogs
from transforms.generate import teachings as teaching_notes
from transforms.sql import trees
from transforms.kit.stage import DEAD, reject
from transforms.core.record import Record
from transforms.core.vocab import dialect_name
from transforms.kit.llm_stage import AskModel, ModelReply

#: Dead-letter stage, request stage (``llm.evidence.*``) and report-note section.
STAGE = "evidence"
#: Report notes side output.
NOTES = "notes"
#: Replies that mean "this question needs no evidence" (compared lowercased, without punctuation).
NO_EVIDENCE = frozenset({"", "none", "n a", "na", "null", "nil", "no evidence", "no evidence needed",
                         "not needed", "no evidence is needed", "none needed", "nothing"})
#: Longest evidence kept, in characters (the reply schema allows a little more; longer is cut at a note).
MAX_EVIDENCE_CHARS = 600
#: Reply budget: a few short notes.
REPLY_TOKENS = 256
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUERY = re.compile(r"\bselect\b.+\bfrom\b", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class EvidenceSettings:
    """What the evidence stage needs (plain values: it pickles into the graph without a client)."""

    llm: LlmSettings
    database: str  # the --database spec the pairs ran on (their schema grounds the evidence)
    database_settings: Mapping[str, Any] = field(default_factory=dict)
    schema_patterns: tuple[str, ...] = ()
    schema_dialect: Optional[str] = None
    max_prompt_tables: int = catalogs.MAX_PROMPT_TABLES


def clean_evidence(text: Any) -> Optional[str]:
    """The evidence as stored: one line, or None when the reply means "none needed".

    >>> clean_evidence("  active customer refers to\\n active = 1 "), clean_evidence("None."), clean_evidence("")
    ('active customer refers to active = 1', None, None)
    """
    evidence = " ".join(str(text or "").split())
    if " ".join(re.sub(r"[^a-z0-9]+", " ", evidence.lower()).split()) in NO_EVIDENCE:
        return None
    if len(evidence) > MAX_EVIDENCE_CHARS:
        cut = evidence[:MAX_EVIDENCE_CHARS]
        evidence = cut[:cut.rfind(";")] if ";" in cut else cut
    return evidence.strip(" ;") or None


def grounding_terms(tables: Iterable[Any], tree: Optional[exp.Expression]) -> tuple[frozenset[str], frozenset[str]]:
    """What evidence may be grounded in: the (lowercased) table and column names of ``tables``
    and the literal values of the pair's SQL ``tree``."""
    names = set()
    for table in tables:
        names.add(table.name.rsplit(".", 1)[-1].lower())
        names.update(column.name.lower() for column in table.columns)
    literals = set()
    if tree is not None:
        literals = {str(literal.this).strip().lower() for literal in tree.find_all(exp.Literal)}
    return frozenset(names), frozenset(value for value in literals if value)


def evidence_problem(evidence: str, names: frozenset[str], literals: frozenset[str]) -> Optional[tuple[str, str]]:
    """``(reason, detail)`` when ``evidence`` must not be kept, else None.

    >>> names, values = frozenset({"customer", "active"}), frozenset({"1"})
    >>> evidence_problem("active customer refers to active = 1", names, values) is None
    True
    >>> evidence_problem("loyal buyers refers to the good ones", names, values)[0]
    'ungrounded'
    >>> evidence_problem("answer: SELECT COUNT(*) FROM customer", names, values)[0]
    'leaks_sql'
    """
    if _QUERY.search(evidence):
        return "leaks_sql", f"the evidence writes a query: {evidence[:500]}"
    words = {word.lower() for word in _WORD.findall(evidence)}
    lowered = evidence.lower()
    if words & names or any(_mentions(lowered, value) for value in literals):
        return None
    return "ungrounded", f"names no table, column or value of the pair: {evidence[:500]}"


def _mentions(text: str, value: str) -> bool:
    """Whether ``value`` occurs in ``text`` as a whole token (so "1" is not found in "2010")."""
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_])", text) is not None


def evidence_request(record: Record, schema: str, teachings: str) -> LlmRequest:
    """The evidence writer's request for one pair: question, SQL, schema and teachings."""
    request = load_prompt("evidence").request(
        stage=STAGE, dialect=dialect_name(record.dialect), schema=schema, teachings=teachings,
        question=record.question or "", sql=" ".join((record.normalized_sql or record.sql).split()))
    return request._replace(max_output_tokens=REPLY_TOKENS, temperature=0.0)


class _EvidenceTasksFn(beam.DoFn):
    """Pair → ``LlmTask`` with the evidence request, carrying what the reply is checked against."""

    def __init__(self, settings: EvidenceSettings):
        self.settings = settings

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()
        self._rules: dict[str, teaching_notes.Teachings] = {}  # db key -> the schema's rule teachings

    def process(self, record: Record, teachings: Mapping) -> Iterator:
        catalog, dead = self._bench.pair_catalog(record, STAGE, "a pair without a question needs no evidence")
        if dead is not None:
            yield dead
            return
        key = catalogs.db_key(record.db_id)
        notes = teaching_notes.teachings_for(key, teachings)
        if notes is None:  # no generator made teachings: the schema's own glossary and join hints
            notes = self._rules.get(key)
            if notes is None:
                notes = self._rules[key] = teaching_notes.rule_teachings(catalog)
        tables = catalogs.focus(catalog, record.tables, limit=self.settings.max_prompt_tables)
        request = evidence_request(record, catalogs.render(tables), teaching_notes.render(notes, tables))
        yield LlmTask((request,), (record, grounding_terms(tables, _tree(record))))


def _tree(record: Record) -> Optional[exp.Expression]:
    try:
        return trees.tree_for(record.normalized_sql or record.sql, record.dialect)
    except Exception:  # noqa: BLE001 - without a tree, evidence is grounded in the schema's names only
        return None


class _ApplyEvidenceFn(beam.DoFn):
    """The writer's reply → the pair with its evidence (or none needed), or a dead letter."""

    def process(self, reply: ModelReply) -> Iterator:
        record, (names, literals) = reply.context
        outcome = reply.outcome
        if outcome.error:
            reason = "bad_reply" if outcome.error == "invalid_reply" else outcome.error
            yield reject(STAGE, reason, outcome.detail, record)
            return
        evidence = clean_evidence(outcome.value.get("evidence"))
        if evidence is None:
            yield beam.pvalue.TaggedOutput(NOTES, f"note:{STAGE}:none")
            yield record._replace(evidence=None)
            return
        problem = evidence_problem(evidence, names, literals)
        if problem is not None:
            yield reject(STAGE, problem[0], problem[1], record._replace(evidence=evidence))
            return
        yield beam.pvalue.TaggedOutput(NOTES, f"note:{STAGE}:written")
        yield record._replace(evidence=evidence)


class EvidenceOutputs(NamedTuple):
    records: beam.PCollection
    dead: beam.PCollection
    notes: beam.PCollection


class WriteEvidence(beam.PTransform):
    """``(pairs, teachings)`` → the pairs with ``evidence`` where their question needs it.

    ``teachings`` is a PCollection of ``(db key, Teachings)`` (``transforms.generate.teachings.MakeTeachings``),
    possibly empty.
    """

    def __init__(self, settings: EvidenceSettings):
        super().__init__()
        self.settings = settings

    def expand(self, inputs):
        records, teachings = inputs
        written = records | "AskEvidence" >> AskModel(
            _EvidenceTasksFn(self.settings), self.settings.llm, _ApplyEvidenceFn(), tags=(DEAD, NOTES),
            task_side_inputs={"teachings": beam.pvalue.AsDict(teachings)}, count_records=True)
        return EvidenceOutputs(written["records"], written[DEAD], written[NOTES])
