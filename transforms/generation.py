"""What the generators share: their settings (resolved from the options) and small helpers.

Synthesis (``transforms.synthesize``), evolution (``transforms.evolve``), personas,
teachings and the round-trip check (``transforms.consistency``) all need a model, the
databases (every new SQL is executed) and the same prompt context. ``GenerationSettings``
carries all of it as plain values, so it pickles into the job graph without a client,
connection or secret in it; ``generation_settings`` builds it from the options and
refuses, as one-line user errors, combinations that cannot work.

Offline (``--llm rules``) the generators refuse to run: rules cannot write new questions
or SQL worth training on, and a deterministic imitation would flood the data with one
phrasing. Near-duplicate merging needs no model and always works.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, NamedTuple, Optional

from adapters.llm import LlmSettings
from transforms.personas import Persona
from transforms.teachings import Teachings

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


# ---------------------------------------------------------------------------------------------
# Options -> settings
# ---------------------------------------------------------------------------------------------


def consistency_llm_settings(values: Any, llm: LlmSettings) -> LlmSettings:
    """The round-trip model: ``--consistency_llm*`` where given, else the ``--llm*`` settings; temperature 0.

    A different backend does not inherit ``--llm_model``, ``--llm_endpoint`` or
    ``--llm_api_key_env`` (they belong to the other provider).
    """
    backend = values.consistency_llm or llm.backend
    same = backend == llm.backend
    return llm._replace(
        backend=backend,
        model=values.consistency_llm_model or (llm.model if same else None),
        endpoint=values.consistency_llm_endpoint or (llm.endpoint if same else None),
        api_key_env=values.consistency_llm_api_key_env or (llm.api_key_env if same else None),
        temperature=0.0,
    )


def generation_settings(values: Any, *, database: Optional[str], dialect: Optional[str]) -> Optional[GenerationSettings]:
    """``GenerationSettings`` from the parsed options, or None when no generator is asked for.

    ``database`` is the ``--database`` spec when queries are executed (``--validate
    execute``), else None. Raises ``transforms.core.errors.UserError``.
    """
    from transforms.core.errors import UserError
    from transforms.catalog import targets as database_targets
    from transforms.llm_options import check_model, model_settings
    from transforms.evolve import parse_techniques
    from transforms.personas import load_personas_file
    from transforms.read import split_patterns
    from transforms.teachings import load_teachings_file

    wanted = {
        "--synthesize_from_schema": values.synthesize_from_schema,
        "--breadth": values.breadth,
        "--depth": values.depth,
        "--consistency": values.consistency,
        "--personas": values.personas,
        "--personas_file": values.personas_file,
    }
    asked = [flag for flag, value in wanted.items() if value]
    if not asked:
        if values.teachings:
            raise UserError("--teachings feeds the generators' prompts: add --synthesize_from_schema, --depth, "
                            "--breadth or --consistency")
        return None
    if values.personas and values.personas_file:
        raise UserError("give --personas N (generated) or --personas_file (yours), not both")
    if database is None:
        raise UserError(f"{asked[0]} executes every new SQL: give --database (and do not set --validate parse|none)")
    llm = model_settings(values)
    consistency_llm = consistency_llm_settings(values, llm) if values.consistency else None
    model_flags = [flag for flag in asked if flag != "--personas_file" and flag != "--consistency"]
    if llm.backend == "rules" and model_flags:
        raise UserError(f"{model_flags[0]} needs a model that writes questions and SQL: add --llm gemini|openai")
    if llm.backend != "rules":
        check_model("--llm", llm)
    if consistency_llm is not None:
        if consistency_llm.backend == "rules":
            raise UserError("--consistency needs a model that writes SQL: add --consistency_llm gemini|openai "
                            "(or --llm gemini|openai)")
        check_model("--consistency_llm", consistency_llm, project_flag="--llm_project")
    if values.breadth and values.dedup in ("sql-only", "template"):
        raise UserError(f"--breadth writes several questions for one SQL, which --dedup {values.dedup} would merge "
                        "back into one: use --dedup exact (near-duplicate questions are merged by --near_dup_threshold)")
    targets = tuple(database_targets(database))
    if values.synthesize_from_schema and not targets:
        raise UserError("--synthesize_from_schema needs databases named by --database (a URL or db_id=URL pairs); "
                        "a {db_id} template names none")
    try:
        techniques = parse_techniques(values.depth_techniques)
    except ValueError as error:
        raise UserError(f"--depth_techniques: {error}") from None
    personas_given: tuple = ()
    if values.personas_file:
        try:
            personas_given = tuple(load_personas_file(values.personas_file))
        except (OSError, ValueError) as error:
            raise UserError(f"--personas_file {values.personas_file}: {error}") from None
    teachings_given = None
    if values.teachings:
        try:
            teachings_given = tuple(load_teachings_file(values.teachings))
        except (OSError, ValueError) as error:
            raise UserError(f"--teachings {values.teachings}: {error}") from None
    return GenerationSettings(
        llm=llm,
        database=database,
        database_settings={"timeout_s": values.timeout_s, "max_rows": values.max_rows,
                           "password_env": values.database_password_env},
        schema_patterns=tuple(split_patterns(values.schema)),
        schema_dialect=dialect,
        output=values.output,
        personas=values.personas or 0,
        personas_given=personas_given,
        teachings_given=teachings_given,
        synthesize=values.synthesize_from_schema or 0,
        max_repairs=values.max_repairs,
        breadth=values.breadth or 0,
        depth=values.depth or 0,
        depth_techniques=techniques,
        consistency=bool(values.consistency),
        consistency_llm=consistency_llm,
        targets=targets,
    )


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
