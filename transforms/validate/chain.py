"""ValidatePairs: the validate family as one composite — normalize → instantiate → classify → execute → filter.

The job runs this chain twice: once on every pair it read or synthesized, and once more on the
pairs ``--depth``/``--breadth`` evolved from validated ones (a Beam graph cannot loop back). One
composite, given its settings, keeps both runs the same chain.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam

from adapters.db.base import DEFAULT_MAX_RESULT_BYTES
from transforms.validate.classify import ClassifyDifficulty
from transforms.validate.execute import ExecuteQueries
from transforms.validate.filter import FilterPairs, FilterSettings
from transforms.validate.instantiate import NOTES, InstantiateParameters, InstantiateSettings
from transforms.validate.normalize import NormalizeSql

#: The chain's steps, in order, as the report's funnel names them (``job.steps``).
STEPS = ("normalize", "instantiate", "classify", "execute", "filter")


class ValidateSettings(NamedTuple):
    """What the chain needs, resolved from the options (the defaults are the stages' own).

    ``instantiate=None`` leaves the step out: evolved pairs come from validated, already filled
    pairs, so they hold no placeholder. ``source_dialect=None`` reads the SQL in the target
    dialect (evolved pairs are written in it). ``database=None`` (``--validate parse|none``):
    nothing is run, every pair is marked skipped with ``skip_reason``.
    """

    target_dialect: str
    source_dialect: Optional[str] = None
    database: Optional[str] = None
    instantiate: Optional[InstantiateSettings] = InstantiateSettings()
    filter: FilterSettings = FilterSettings()
    timeout_s: float = 5.0
    max_rows: int = 10000
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_connections: Optional[int] = None
    password_env: Optional[str] = None
    skip_reason: str = "not executed"
    hot_threshold: Optional[int] = None  # ExecuteQueries: a query this frequent runs apart from the grouping


class ValidatedPairs(NamedTuple):
    """The chain's outputs: each step's kept records by step name (``STEPS``, less a step left
    out), every step's dead letters as one collection, and the report notes."""

    steps: dict[str, beam.PCollection]
    dead: beam.PCollection
    notes: tuple[beam.PCollection, ...]

    @property
    def records(self) -> beam.PCollection:
        """The pairs that passed every step (the ``filter`` step's output)."""
        return self.steps["filter"]


class ValidatePairs(beam.PTransform):
    """Records → validated records: normalize → instantiate → classify → execute → filter.

    Why this order:

    - **normalize** first: the one parse, which refuses anything but a single read-only query
      before any other step (or the database) sees it, puts the SQL in the target dialect and
      lists a template's placeholders.
    - **instantiate** right after: it turns each template into runnable queries with values
      sampled from the database, so every later step sees the query that will be written.
    - **classify** before execute: pure CPU on the normalized SQL, fused with normalize on the
      worker that parsed, and what it cannot classify is never run.
    - **execute** each distinct query once, read-only and bounded.
    - **filter** last: its reasons need the other steps' results (execution status, empty
      results, the difficulty bounds, the tables).

    Every step's rejections are dead letters with the step's own ``stage``; the caller files
    them (the evolved pairs' under ``revalidate``).
    """

    def __init__(self, settings: ValidateSettings):
        super().__init__()
        self.settings = settings

    def expand(self, records: beam.PCollection) -> ValidatedPairs:
        settings = self.settings
        steps: dict[str, beam.PCollection] = {}
        dead: list[beam.PCollection] = []
        notes: tuple[beam.PCollection, ...] = ()
        normalized = records | "NormalizeSql" >> NormalizeSql(settings.target_dialect, settings.source_dialect)
        steps["normalize"], current = normalized.records, normalized.records
        dead.append(normalized.dead)
        if settings.instantiate is not None:
            instantiated = current | "InstantiateParameters" >> InstantiateParameters(
                settings.database, settings.instantiate, timeout_s=settings.timeout_s,
                password_env=settings.password_env)
            steps["instantiate"] = current = instantiated.records
            dead.append(instantiated.dead)
            notes = (instantiated[NOTES],)
        classified = current | "ClassifyDifficulty" >> ClassifyDifficulty()
        # templates Instantiate could not fill were checked there already: Execute passes them through
        executed = classified.records | "ExecuteQueries" >> _execute(settings)
        filtered = executed.records | "FilterPairs" >> FilterPairs(settings.filter)
        steps.update(classify=classified.records, execute=executed.records, filter=filtered.records)
        dead += [classified.dead, executed.dead, filtered.dead]
        return ValidatedPairs(steps, dead | "DeadLetters" >> beam.Flatten(), notes)


def _execute(settings: ValidateSettings) -> ExecuteQueries:
    """The Execute step with the chain's limits."""
    return ExecuteQueries(
        settings.database,
        timeout_s=settings.timeout_s,
        max_rows=settings.max_rows,
        max_connections=settings.max_connections,
        password_env=settings.password_env,
        max_result_bytes=settings.max_result_bytes,
        skip_reason=settings.skip_reason,
        hot_threshold=settings.hot_threshold,
    )
