"""Report: per-stage funnel, rejection reasons and histograms, computed inside the pipeline.

The counts come from the PCollections themselves (combined with lifting, so cheap),
which makes the report exact on any runner — including Dataflow, where the
launcher does not wait for the job — and lets the job check its accounting
invariant at the end: records read = pairs written + dead letters + merged
duplicates. A mismatch fails the run loudly with the per-stage table.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from transforms.core.record import DeadLetter, Record
from transforms.kit.write import write_text_file

#: Pipeline steps in order, with the dead-letter stages each one owns.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read", ("read",)),
    ("synthesize", ("synthesize",)),  # adds pairs written from the schema (--synthesize_from_schema)
    ("normalize", ("parse", "safety", "normalize")),
    ("instantiate", ("instantiate",)),
    ("classify", ("classify",)),
    ("execute", ("execute",)),
    ("filter", ("filter",)),
    ("dedup", ("dedup",)),  # before questions: each distinct SQL gets one (issue 15)
    ("describe", ("describe", "llm")),  # questions for the representatives only
    ("evolve", ("evolve", "revalidate")),  # adds evolved pairs (--depth, --breadth), re-validated
    ("merge", ()),  # --dedup exact|question-only (or evolved pairs): merges again on the written questions
    ("decontaminate", ("decontaminate",)),  # final pairs that copy a benchmark item (--decontaminate)
    ("consistency", ("consistency",)),  # the round-trip check (--consistency)
    ("sample", ("sample",)),
    ("judge", ("judge",)),  # a model scores each final pair (--judge; --judge_min drops)
    ("evidence", ("evidence",)),  # notes on the questions' domain terms (--evidence)
    ("cot", ("cot",)),  # execution-voted reasoning traces (--cot), the last paid step
)


#: Steps that appear in the funnel only when they ran (the generators, --max_per_template).
OPTIONAL_STEPS = frozenset({"decontaminate", "synthesize", "evolve", "merge", "consistency", "sample", "cot", "judge", "evidence"})
#: Steps that merge duplicates: their ``merged`` column is measured.
MERGING_STEPS = frozenset({"dedup", "merge"})


class AccountingError(RuntimeError):
    """Records went missing between stages: the run must not pass as complete."""


def _histogram(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def build_report(counts: Mapping[str, int], options: Mapping[str, object]) -> dict:
    """Turn the raw counts (``out:<step>``, ``dups:<step>``, ``dead:<stage>:<reason>``, ``pairs:<field>:<value>``)
    into the report, and check that every stage accounts for its input."""
    dead_by_stage: Counter = Counter()
    reasons: dict[str, dict[str, int]] = {}
    for key, value in sorted(counts.items()):
        if key.startswith("dead:"):
            _, stage, reason = key.split(":", 2)
            dead_by_stage[stage] += value
            reasons.setdefault(stage, {})[reason] = value
    read_in = counts.get("out:read", 0) + dead_by_stage["read"]
    stages = []
    previous = read_in
    previous_dups = counts.get("dups:read", 0)
    problems = []
    for step, owned in STEPS:
        out = counts.get(f"out:{step}")
        if out is None and step in OPTIONAL_STEPS:  # a generator that was not asked for: no row
            continue
        if out is None:  # a step that did not run passes everything through
            out, dups = previous, previous_dups
        else:
            dups = counts.get(f"dups:{step}", 0)
        rejected = sum(dead_by_stage[s] for s in owned)
        added = counts.get(f"added:{step}", 0)  # records a step made (instances of a template)
        # Measured, not inferred from the other columns: the ``duplicates`` that dedup's
        # representatives carry beyond what its input already carried. A record dedup lost
        # would otherwise read as one more merge.
        merged = dups - previous_dups if step in MERGING_STEPS else 0
        row = {"stage": step, "in": previous, "out": out, "rejected": rejected}
        if added:
            row["added"] = added
        if step in MERGING_STEPS:
            row["merged"] = merged
        if previous + added != out + rejected + merged or merged < 0:
            problems.append(f"{step}: in {previous} + added {added} != out {out} + rejected {rejected} + merged {merged}")
        stages.append(row)
        previous, previous_dups = out, dups
    written = counts.get("out:written", previous)
    dead_total = sum(dead_by_stage.values())
    merged_total = sum(row.get("merged", 0) for row in stages)
    known = {s for _, owned in STEPS for s in owned}
    for stage in sorted(set(dead_by_stage) - known):
        problems.append(f"dead letters from unknown stage {stage!r}")
    added_total = sum(row.get("added", 0) for row in stages)
    if read_in + added_total != written + dead_total + merged_total:
        problems.append(
            f"records read {read_in} + added {added_total} != pairs written {written} + dead letters {dead_total}"
            f" + merged {merged_total}"
        )
    accounting = {
        "records_read": read_in,
        "pairs_written": written,
        "dead_letters": dead_total,
        "merged_duplicates": merged_total,
        "problems": problems,
    }
    if added_total:
        accounting["records_added"] = added_total
    return {
        "ok": not problems,
        "accounting": accounting,
        "stages": stages,
        "rejections": reasons,
        "difficulty": _histogram(counts, "pairs:difficulty:"),
        "concepts": _histogram(counts, "pairs:concept:"),
        "execution": _histogram(counts, "pairs:execution:"),
        "sources": _histogram(counts, "pairs:source:"),
        "question_sources": _histogram(counts, "pairs:question_source:"),
        "frequency": _histogram(counts, "pairs:frequency:"),
        "instantiate": _histogram(counts, "note:instantiate:"),
        "sample": _histogram(counts, "note:sample:"),
        **({"cot": found} if (found := _histogram(counts, "note:cot:")) else {}),  # --cot solutions, levels
        **({"decontaminate": found} if (found := _histogram(counts, "note:decontaminate:")) else {}),
        **generated_section(counts),
        **{section: found for section in ("judge", "evidence")  # --judge scores, --evidence written/none
           if (found := _histogram(counts, f"note:{section}:"))},
        "options": dict(sorted(options.items())),
    }


def generated_section(counts: Mapping[str, int]) -> dict:
    """``{"generated": ...}``: per-level, per-concept and per-technique accept rates of generated pairs.

    From ``gen:<dimension>:<metric>:<name>`` counts (``transforms.generate.generation``): ``created``
    records, ``written`` pairs, and ``dead.<stage>.<reason>`` rejections; what is left
    (created - written - rejected) was merged into another pair as a duplicate. Empty
    when nothing was generated. Also the generators' notes (personas, teachings, synthesis).

    >>> generated_section({"gen:level:created:simple": 4, "gen:level:written:simple": 1,
    ...                    "gen:level:dead.synthesize.sql_error:simple": 2})["generated"]["level"]["simple"]
    {'created': 4, 'written': 1, 'rejected': 2, 'merged': 1, 'accept_rate': 0.25, 'rejections': {'synthesize.sql_error': 2}}
    """
    table: dict[str, dict[str, dict]] = {}
    for key, value in sorted(counts.items()):
        if not key.startswith("gen:"):
            continue
        _, dimension, metric, name = key.split(":", 3)
        row = table.setdefault(dimension, {}).setdefault(name, {"created": 0, "written": 0, "rejected": 0,
                                                                "rejections": {}})
        if metric.startswith("dead."):
            row["rejected"] += value
            row["rejections"][metric[5:]] = value
        elif metric in ("created", "written"):
            row[metric] += value
    for rows in table.values():
        for row in rows.values():
            row["merged"] = max(0, row["created"] - row["written"] - row["rejected"])
            row["accept_rate"] = round(row["written"] / row["created"], 4) if row["created"] else None
            row["rejections"] = row.pop("rejections")
    notes = {section: _histogram(counts, f"note:{section}:") for section in ("personas", "teachings", "synthesize")}
    notes = {section: found for section, found in notes.items() if found}
    if not table and not notes:
        return {}
    return {"generated": {**table, **({"notes": notes} if notes else {})}}


def format_generated(report: Mapping) -> str:
    """Accept rates of generated pairs, one line per level / concept / technique (empty if none)."""
    lines = []
    for dimension, rows in (report.get("generated") or {}).items():
        if dimension == "notes":
            continue
        for name, row in rows.items():
            rate = f"{100 * row['accept_rate']:.0f}%" if row["accept_rate"] is not None else "-"
            top = ", ".join(f"{reason} {n}" for reason, n in sorted(row["rejections"].items(), key=lambda kv: -kv[1])[:3])
            lines.append(f"sqlpairs: {dimension} {name}: {row['written']}/{row['created']} kept ({rate})"
                         + (f"; rejected: {top}" if top else ""))
    return "\n".join(lines)


def format_stage_table(report: Mapping) -> str:
    """The per-stage funnel as a fixed-width text table (for logs and errors)."""
    lines = [f"{'stage':<12} {'in':>9} {'out':>9} {'rejected':>9} {'merged':>9} {'added':>9}"]
    for row in report["stages"]:
        lines.append(
            f"{row['stage']:<12} {row['in']:>9} {row['out']:>9} {row['rejected']:>9} {row.get('merged', ''):>9}"
            f" {row.get('added', ''):>9}"
        )
    return "\n".join(lines)


def _pair_keys(record: Record) -> Iterable[str]:
    yield "out:written"
    yield f"pairs:difficulty:{record.difficulty}"
    yield f"pairs:source:{record.source}"
    yield f"pairs:question_source:{record.question_source}"
    yield f"pairs:execution:{record.execution.status if record.execution else 'none'}"
    yield f"pairs:frequency:{frequency_bucket(record.frequency)}"
    for concept in record.concepts:
        yield f"pairs:concept:{concept}"


def frequency_bucket(frequency: int) -> str:
    """A power-of-ten bucket of how often a pair's query ran (``1``, ``2-9``, ``10-99``, ...).

    >>> frequency_bucket(1), frequency_bucket(7), frequency_bucket(250)
    ('1', '2-9', '100-999')
    """
    if frequency <= 1:
        return "1"
    low = 10 ** (len(str(frequency)) - 1)
    return f"{max(low, 2)}-{low * 10 - 1}"


#: The packages whose versions decide the output: the runner and the SQL parser.
VERSIONED_PACKAGES = ("apache-beam", "sqlglot", "sqlglotc")


def runtime_versions() -> dict[str, str]:
    """Python's and ``VERSIONED_PACKAGES``' versions in this process ("-" for one not installed).

    The report holds them twice, as the graph was built (the launcher) and as the report
    was written (a worker), so a Dataflow job whose workers run another Beam or sqlglot than
    its launcher shows it.

    >>> sorted(runtime_versions())
    ['apache-beam', 'python', 'sqlglot', 'sqlglotc']
    """
    import importlib.metadata
    import platform

    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "-"
    return versions


class _WriteReportFn(beam.DoFn):
    def __init__(self, path: str, options: Mapping[str, object], steps: Sequence[str] = ()):
        self.path, self.options, self.steps = path, dict(options), tuple(steps)
        self.launcher_versions = runtime_versions()  # built where the graph is: the launcher

    def process(self, counts: Sequence[tuple[str, int]]):
        # A step in the graph that output nothing has no count at all; it must read
        # as 0 (everything rejected), not as "did not run" (everything passed).
        zeros = {f"out:{step}": 0 for step in (*self.steps, "written")}
        report = build_report({**zeros, **dict(counts)}, self.options)
        report["versions"] = {"launcher": self.launcher_versions, "workers": runtime_versions()}
        write_text_file(self.path, json.dumps(report, indent=2, sort_keys=False) + "\n")
        if not report["ok"]:
            raise AccountingError(
                "accounting check failed: " + "; ".join(report["accounting"]["problems"]) + "\n"
                + format_stage_table(report)
            )
        yield self.path


def _step_keys(step: str):
    """``out:<step>`` once per record, and ``dups:<step>``: the duplicates merged into it so far."""
    key, dups = f"out:{step}", f"dups:{step}"

    def keys(record: Record):
        return {key: 1, dups: record.duplicates} if record.duplicates else (key,)

    return keys


def _dead_keys(dead: DeadLetter) -> tuple[str]:
    return (f"dead:{dead.stage}:{dead.reason}",)


def _note_keys(note: object) -> tuple[str]:
    return (str(note),)


class _CountInBundleFn(beam.DoFn):
    """Counts the report keys of each element in memory and emits ``(key, n)`` once per bundle.

    Why not ``Count.PerElement`` over a flatten of every step's keys: the flatten of
    PCollections made in different fused stages is materialized, so every record
    of every step would be encoded and decoded once more only to be counted (on a
    5,000-record log: 52k of the run's 70k element encodes). Counting inside the
    producing stage sends a few dozen ``(key, n)`` pairs per bundle instead; a bundle
    that fails and is retried discards its counts with its outputs.
    """

    def __init__(self, keys_of: Callable[[object], "Iterable[str] | Mapping[str, int]"]):
        self.keys_of = keys_of

    def start_bundle(self) -> None:
        self._counts: Counter = Counter()

    def process(self, element: object) -> Iterator:
        self._counts.update(self.keys_of(element))
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for key, n in sorted(self._counts.items()):
            yield WindowedValue((key, n), 0, [GlobalWindow()])
        self._counts = Counter()


class WriteReport(beam.PTransform):
    """Counts stage outputs, dead letters and final pairs; writes ``path`` as JSON.

    ``step_outputs`` maps a step name (see ``STEPS``) to that step's main output.
    """

    def __init__(self, path: str, options: Optional[Mapping[str, object]] = None):
        super().__init__()
        self.path, self.options = path, dict(options or {})

    def expand(self, inputs):
        step_outputs, dead, pairs = inputs["steps"], inputs["dead"], inputs["pairs"]
        counted = []
        counts_type = tuple[str, int]
        for step, pcoll in sorted(step_outputs.items()):
            counted.append(pcoll | f"Count{step.title()}" >> beam.ParDo(
                _CountInBundleFn(_step_keys(step))).with_output_types(counts_type))
        counted.append(dead | "CountDead" >> beam.ParDo(_CountInBundleFn(_dead_keys)).with_output_types(counts_type))
        counted.append(pairs | "CountPairs" >> beam.ParDo(_CountInBundleFn(_pair_keys)).with_output_types(counts_type))
        if inputs.get("notes") is not None:  # "note:<section>:<key>" and "added:<step>" strings from stages
            counted.append(inputs["notes"] | "CountNotes" >> beam.ParDo(
                _CountInBundleFn(_note_keys)).with_output_types(counts_type))
        return (
            counted
            | "AllCounts" >> beam.Flatten()
            | "SumEach" >> beam.CombinePerKey(sum)
            | "Together" >> beam.combiners.ToList()
            | "WriteReport" >> beam.ParDo(_WriteReportFn(self.path, self.options, sorted(step_outputs)))
        )


def dead_letter_sort_key(dead: DeadLetter) -> str:
    """Deterministic order of dead letters in their shards."""
    record_id = dead.record.id if dead.record is not None else ""
    return "\x00".join((dead.stage, dead.reason, dead.origin or "", record_id, dead.detail))
