"""What the generators share: their settings (resolved from the options) and small helpers.

Synthesis (``transforms.generate.synthesize``), evolution (``transforms.generate.evolve``), personas,
teachings and the round-trip check (``transforms.generate.consistency``) all need a model, the
databases (every new SQL is executed) and the same prompt context. ``GenerationSettings``
carries all of it as plain values, so it pickles into the job graph without a client,
connection or secret in it; ``pipeline.settings.generation.generation_settings`` builds it
from the options and refuses, as one-line user errors, combinations that cannot work.

This module imports none of the generators, so they can all import it: the settings and
helpers they share live here, and turning options into them lives in
``pipeline.settings.generation``.

Offline (``--llm rules``) the generators refuse to run: rules cannot write new questions
or SQL worth training on, and a deterministic imitation would flood the data with one
phrasing. Near-duplicate merging needs no model and always works.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Optional

from adapters.llm import LlmSettings

if TYPE_CHECKING:  # annotations only: personas and teachings import this module
    from transforms.generate.personas import Persona
    from transforms.generate.teachings import Teachings

#: Report notes: ``note:<section>:<key>`` strings and ``added:<step>`` (records created by a step).
NOTES = "notes"
#: Lineage counters for the report's accept rates: ``gen:<dimension>:<metric>:<name>``.
GEN_PREFIX = "gen"


class GenerationSettings(NamedTuple):
    """Everything the generators need, resolved from the options (plain values only)."""

    llm: LlmSettings
    database: str
    database_settings: Mapping[str, Any] = {}
    schema_patterns: tuple[str, ...] = ()
    schema_dialect: Optional[str] = None
    output: Optional[str] = None  # prefix of the personas and teachings files written
    personas: int = 0
    personas_given: tuple[tuple[str, Persona], ...] = ()  # from --personas_file: (db key or "*", persona)
    teachings_given: Optional[tuple[tuple[str, Teachings], ...]] = None  # from --teachings
    synthesize: int = 0
    levels: tuple[str, ...] = ()  # () = every level
    concepts: tuple[str, ...] = ()  # () = the whole curriculum
    max_repairs: int = 2
    breadth: int = 0
    depth: int = 0
    depth_techniques: tuple[str, ...] = ()
    consistency: bool = False
    consistency_llm: Optional[LlmSettings] = None
    max_prompt_tables: int = 12
    max_output_tokens: Optional[int] = None  # caps every generation reply (small local models ramble)
    targets: tuple[tuple[str, str], ...] = ()  # (db key, url) of databases named by --database

    @property
    def needs_guidance(self) -> bool:
        """Whether personas or teachings feed a prompt (or were asked for)."""
        return bool(self.synthesize or self.depth or self.breadth or self.consistency or self.personas)

    @property
    def evolves(self) -> bool:
        return bool(self.depth or self.breadth)


def output_tokens(settings: "GenerationSettings", wanted: int) -> int:
    """The reply budget of a request: what it needs, capped by ``settings.max_output_tokens``.

    >>> output_tokens(GenerationSettings(llm=LlmSettings(), database="x"), 800)
    800
    >>> output_tokens(GenerationSettings(llm=LlmSettings(), database="x", max_output_tokens=200), 800)
    200
    """
    return min(wanted, settings.max_output_tokens) if settings.max_output_tokens else wanted


def stable_index(*parts: Any) -> int:
    """A deterministic integer from ``parts`` (spreads styles and techniques; same on every run).

    >>> stable_index("a", 1) == stable_index("a", 1), stable_index("a", 1) == stable_index("a", 2)
    (True, False)
    """
    return int(hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:8], 16)


def lineage_notes(dimension: str, metric: str, names: Iterable[Optional[str]]) -> list[str]:
    """``gen:<dimension>:<metric>:<name>`` for each non-empty name (``:`` in a metric becomes ``_``)."""
    metric = metric.replace(":", "_")
    return [f"{GEN_PREFIX}:{dimension}:{metric}:{name}" for name in names if name]


def record_lineage(record: Any) -> dict[str, Optional[str]]:
    """The dimensions a generated record is counted under: level, concept (synthesis), evolution."""
    extra = record.extra or {}
    return {"level": extra.get("level"), "concept": extra.get("concept"), "evolution": record.evolution}


def written_notes(record: Any) -> list[str]:
    """Notes for a written pair (counts toward its level's / technique's accept rate)."""
    return [note for dimension, name in record_lineage(record).items()
            for note in lineage_notes(dimension, "written", [name])]


def dead_notes(dead: Any) -> list[str]:
    """Notes for a dead letter of a generated record: which stage and reason rejected which level/technique."""
    if dead.record is None:
        return []
    metric = f"dead.{dead.stage}.{dead.reason}"
    return [note for dimension, name in record_lineage(dead.record).items()
            for note in lineage_notes(dimension, metric, [name])]


def output_paths(prefix: str) -> dict[str, str]:
    """Where generated personas and teachings are written (edit them, pass them back)."""
    return {"personas": f"{prefix}-personas.json", "teachings": f"{prefix}-teachings.json"}


def revalidation_dead_letter(dead: Any) -> Any:
    """A dead letter of the evolved pairs' second normalize → classify → execute → filter chain.

    It is filed under stage ``revalidate`` (owned by the report's ``evolve`` step), with
    the stage that rejected it kept in the reason (``filter.above_max_difficulty``), so the
    funnel stays one line per step and the first chain's counts are not mixed with these.

    >>> from transforms.core.record import DeadLetter
    >>> revalidation_dead_letter(DeadLetter("execute", "no_database", "x")).reason
    'execute.no_database'
    """
    return dead._replace(stage="revalidate", reason=f"{dead.stage}.{dead.reason}")
