"""Filter: keep the pairs worth training on; every drop is a dead letter with its reason."""

from __future__ import annotations

import importlib
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam

from transforms.core.vocab import DIFFICULTIES
from transforms.core.record import Record
from transforms.kit.stage import DEAD, count, reject

_FAILED_STATUSES = ("error", "timeout", "refused")


class FilterSettings(NamedTuple):
    keep_failures: bool = False
    tables: tuple[str, ...] = ()
    min_difficulty: Optional[str] = None
    max_difficulty: Optional[str] = None
    drop_empty_results: bool = False
    custom: Optional[str] = None  # package.module:function


def load_predicate(spec: str) -> Callable[[Record], bool]:
    """Import ``package.module:function``; raises ImportError/AttributeError/ValueError."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"--filter must look like package.module:function, got {spec!r}")
    function = getattr(importlib.import_module(module_name), function_name)
    if not callable(function):
        raise ValueError(f"--filter {spec} is not callable")
    return function


def rejection(record: Record, settings: FilterSettings) -> Optional[tuple[str, str]]:
    """Why the built-in filters drop ``record`` as (reason, detail), or None to keep it."""
    execution = record.execution
    if not settings.keep_failures:
        if not record.success:
            return "input_marked_failed", "the input marked this query as failed (use --keep_failures to keep it)"
        if execution is not None and execution.status in _FAILED_STATUSES:
            return f"execution_{execution.status}", execution.error or execution.status
    if settings.tables:
        tables = {t.lower().rsplit(".", 1)[-1] for t in record.tables}
        if not tables.intersection(settings.tables):
            return "table_filter", f"references {sorted(tables)}, none of {list(settings.tables)}"
    if record.difficulty in DIFFICULTIES:
        level = DIFFICULTIES.index(record.difficulty)
        if settings.min_difficulty and level < DIFFICULTIES.index(settings.min_difficulty):
            return "below_min_difficulty", f"{record.difficulty} < {settings.min_difficulty}"
        if settings.max_difficulty and level > DIFFICULTIES.index(settings.max_difficulty):
            return "above_max_difficulty", f"{record.difficulty} > {settings.max_difficulty}"
    if settings.drop_empty_results and execution is not None and execution.status == "ok" and not execution.row_count:
        return "empty_result", "the query returned no rows"
    return None


class _FilterFn(beam.DoFn):
    def __init__(self, settings: FilterSettings):
        self.settings = settings

    def setup(self) -> None:
        self._custom = load_predicate(self.settings.custom) if self.settings.custom else None

    def process(self, record: Record) -> Iterator:
        why = rejection(record, self.settings)
        if why:
            yield reject("filter", why[0], why[1], record)
            return
        if self._custom is not None:
            try:
                keep = bool(self._custom(record))
            except Exception as error:  # noqa: BLE001 - a user predicate's bug is a dead letter
                yield reject("filter", "custom_filter_error", f"{type(error).__name__}: {error}"[:500], record)
                return
            if not keep:
                yield reject("filter", "custom_filter", f"{self.settings.custom} returned False", record)
                return
        failed = not record.success or (record.execution is not None and record.execution.status in _FAILED_STATUSES)
        if failed:
            record = record._replace(success=False)
        count("filter.out")
        yield record


class FilterPairs(beam.PTransform):
    """Drop failures (unless kept), pairs outside --tables or the difficulty bounds, empty results,
    and whatever a custom predicate rejects."""

    def __init__(self, settings: FilterSettings):
        super().__init__()
        self.settings = settings._replace(tables=tuple(t.strip().lower() for t in settings.tables if t.strip()))

    def expand(self, records):
        return records | "Filter" >> beam.ParDo(_FilterFn(self.settings)).with_outputs(DEAD, main="records")


def parse_tables(text: Optional[str]) -> Sequence[str]:
    """``"a, B"`` → ``("a", "b")``."""
    return tuple(t.strip().lower() for t in (text or "").split(",") if t.strip())
