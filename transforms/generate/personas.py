"""Personas: who asks the questions — ``{role, perspective, styles}``, from the schema or from a file.

Synthetic questions written "by nobody" all sound alike. A persona (a finance analyst
reconciling invoices, a label manager ranking artists) gives the model a reason to ask
and a voice: its ``styles`` are 1–3 of OmniSQL's nine question styles
(``transforms.core.vocab.STYLES``). ``--personas N`` asks the model for N personas per
database from its schema; the result is written to ``<output>-personas.json``, which
the user can edit and pass back with ``--personas_file`` (a JSON list of personas, or
``{"personas": [...]}``; an entry with a ``db_id`` applies to that database only).

Records made for a persona carry it in ``Record.persona`` as ``"role: perspective"``
(the form ``WriteQuestions`` already puts in its prompts).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam

from adapters.llm.handler import LlmTask
from adapters.llm.prompting import load_prompt
from transforms.kit import catalog as catalogs
from transforms.kit.inputs import read_json_file
from transforms.core.vocab import DIALECT_NAMES
from transforms.generate.generation import GenerationSettings, output_paths, output_tokens
from transforms.kit.llm_stage import AskModel, ModelReply
from transforms.core.vocab import STYLES
from transforms.kit.write import WriteTextFileFn

_LOGGER = logging.getLogger(__name__)
#: Most personas per database (a prompt asking for more gets near-copies).
MAX_PERSONAS = 20
MAX_ROLE_CHARS = 80
MAX_PERSPECTIVE_CHARS = 400
#: Key of personas that apply to every database.
ANY_DATABASE = "*"


class Persona(NamedTuple):
    """Someone who asks questions of the database, and how they phrase them."""

    role: str
    perspective: str
    styles: tuple[str, ...]

    @property
    def text(self) -> str:
        """The persona as one line for prompts and ``Record.persona``."""
        return f"{self.role}: {self.perspective}" if self.perspective else self.role


def parse_persona(data: Any) -> Persona:
    """A persona from ``{role, perspective, styles}``; ``ValueError`` says what is wrong.

    >>> parse_persona({"role": "Label manager", "perspective": "Ranks artists by sales.", "styles": ["concise"]})
    Persona(role='Label manager', perspective='Ranks artists by sales.', styles=('concise',))
    >>> parse_persona({"role": "x", "perspective": "", "styles": ["shouty"]})
    Traceback (most recent call last):
    ValueError: unknown style 'shouty' (expected 1 to 3 of formal, colloquial, imperative, interrogative, descriptive, concise, vague, metaphorical, conversational)
    """
    if not isinstance(data, dict):
        raise ValueError(f"a persona is an object with role, perspective and styles, got {type(data).__name__}")
    role = " ".join(str(data.get("role") or "").split())
    perspective = " ".join(str(data.get("perspective") or "").split())
    styles = data.get("styles") or []
    if not role:
        raise ValueError("a persona needs a role")
    if len(role) > MAX_ROLE_CHARS or len(perspective) > MAX_PERSPECTIVE_CHARS:
        raise ValueError(f"persona {role[:40]!r}: role or perspective too long")
    if isinstance(styles, str):
        styles = [s.strip() for s in styles.split(",")]
    expected = f"1 to 3 of {', '.join(STYLES)}"
    for style in styles:
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r} (expected {expected})")
    styles = tuple(dict.fromkeys(styles))
    if not 1 <= len(styles) <= 3:
        raise ValueError(f"persona {role!r} has {len(styles)} styles (expected {expected})")
    return Persona(role, perspective, styles)


def parse_personas(data: Any) -> list[tuple[str, Persona]]:
    """``(db key or "*", persona)`` from a personas file's JSON (a list, or ``{"personas": [...]}``)."""
    items = data.get("personas") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError('expected a non-empty JSON list of personas, or {"personas": [...]}')
    found = []
    for index, item in enumerate(items):
        try:
            persona = parse_persona(item)
        except ValueError as error:
            raise ValueError(f"persona {index + 1}: {error}") from None
        db_id = item.get("db_id") if isinstance(item, dict) else None
        found.append((catalogs.db_key(db_id) if db_id is not None else ANY_DATABASE, persona))
    return found


def load_personas_file(path: str) -> list[tuple[str, Persona]]:
    """Read and check ``--personas_file`` (any Beam filesystem path); ``OSError``/``ValueError`` on problems."""
    data = read_json_file(path)
    return parse_personas(data)


def personas_json(personas: Iterable[tuple[str, Persona]]) -> str:
    """The personas file (the format ``--personas_file`` reads), sorted for byte-identical output."""
    items = []
    for key, persona in sorted(personas, key=lambda kp: (kp[0], kp[1].role, kp[1].perspective)):
        item: dict[str, Any] = {"role": persona.role, "perspective": persona.perspective, "styles": list(persona.styles)}
        if key not in ("", ANY_DATABASE):
            item["db_id"] = key
        items.append(item)
    return json.dumps({"personas": items}, indent=2, ensure_ascii=False) + "\n"


def personas_for(key: str, personas: Sequence[tuple[str, Persona]]) -> list[Persona]:
    """The personas of database ``key``: its own and those for every database, in a stable order."""
    chosen = [p for k, p in personas if k in (key, ANY_DATABASE)]
    return sorted(dict.fromkeys(chosen), key=lambda p: (p.role, p.perspective, p.styles))


# ---------------------------------------------------------------------------------------------
# Generation from the schema
# ---------------------------------------------------------------------------------------------


def persona_request(catalog: catalogs.Catalog, count: int, settings: "GenerationSettings"):
    """The request asking for ``count`` personas of a database."""
    prompt = load_prompt("persona")
    tables = catalogs.focus(catalog, limit=settings.max_prompt_tables)
    request = prompt.request(stage="personas", count=str(count),
                             dialect=DIALECT_NAMES.get(catalog.dialect, catalog.dialect),
                             schema=catalogs.render(tables), styles=", ".join(STYLES))
    return request._replace(max_output_tokens=output_tokens(settings, max(512, 160 * count)))


class _PersonaTasksFn(beam.DoFn):
    def __init__(self, settings: "GenerationSettings"):
        self.settings = settings

    def setup(self) -> None:
        self._bench = catalogs.Workbench(self.settings.database, self.settings.database_settings,
                                         self.settings.schema_patterns, self.settings.schema_dialect).setup()

    def process(self, target: tuple[str, str]) -> Iterator:
        key, _ = target
        try:
            catalog = self._bench.catalog(key or None)
        except Exception as error:  # noqa: BLE001 - no personas is a note, not a crash
            _LOGGER.warning("personas: cannot describe database %r: %s", key, type(error).__name__)
            yield beam.pvalue.TaggedOutput("notes", "note:personas:schema_unavailable")
            return
        if not catalog.tables:
            yield beam.pvalue.TaggedOutput("notes", "note:personas:empty_schema")
            return
        yield LlmTask((persona_request(catalog, self.settings.personas, self.settings),), key)


class _ApplyPersonasFn(beam.DoFn):
    def __init__(self, count: int):
        self.count = count

    def process(self, reply: ModelReply) -> Iterator:
        key = reply.context
        outcome = reply.outcome
        if outcome.error:
            _LOGGER.warning("personas for %r: %s: %s", key, outcome.error, outcome.detail[:200])
            yield beam.pvalue.TaggedOutput("notes", f"note:personas:{outcome.error}")
            return
        kept: list[Persona] = []
        for item in outcome.value.get("personas") or []:
            try:
                persona = parse_persona(item)
            except ValueError:
                yield beam.pvalue.TaggedOutput("notes", "note:personas:invalid_persona")
                continue
            if persona.role.lower() not in {p.role.lower() for p in kept} and len(kept) < self.count:
                kept.append(persona)
        if len(kept) < self.count:
            yield beam.pvalue.TaggedOutput("notes", "note:personas:fewer_than_asked")
        for persona in kept:
            yield beam.pvalue.TaggedOutput("notes", "note:personas:generated")
            yield key, persona


class PersonaOutputs(NamedTuple):
    personas: beam.PCollection  # (db key or "*", Persona)
    notes: beam.PCollection


class MakePersonas(beam.PTransform):
    """Targets ``(db key, url)`` → ``(db key, Persona)``: from ``--personas_file``, else generated.

    Generated personas are written to ``<output>-personas.json``. A failed request
    leaves that database without personas (a report note says why); synthesis then
    writes persona-less questions rather than none.
    """

    def __init__(self, settings: "GenerationSettings"):
        super().__init__()
        self.settings = settings

    def expand(self, targets):
        settings = self.settings
        pipeline = targets.pipeline
        if settings.personas_given or not settings.personas:
            given = pipeline | "GivenPersonas" >> beam.Create(list(settings.personas_given))
            notes = pipeline | "NoPersonaNotes" >> beam.Create([])
            return PersonaOutputs(given, notes)
        count = min(settings.personas, MAX_PERSONAS)
        asked = targets | "AskPersonas" >> AskModel(
            _PersonaTasksFn(settings), settings.llm, _ApplyPersonasFn(count), main="personas", tags=("notes",))
        if settings.output:
            (asked["personas"]
             | "AllPersonas" >> beam.combiners.ToList()
             | "WritePersonas" >> beam.ParDo(WriteTextFileFn(output_paths(settings.output)["personas"], personas_json)))
        return PersonaOutputs(asked["personas"], asked["notes"])


def persona_text(persona: Optional[Persona]) -> Optional[str]:
    return persona.text if persona is not None else None
