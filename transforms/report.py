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
from typing import Iterable, Mapping, Optional, Sequence

import apache_beam as beam

from pipeline.record import DeadLetter, Record
from transforms.write import write_text_file

#: Pipeline steps in order, with the dead-letter stages each one owns.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read", ("read",)),
    ("normalize", ("parse", "safety", "normalize")),
    ("classify", ("classify",)),
    ("describe", ("describe",)),
    ("execute", ("execute",)),
    ("filter", ("filter",)),
    ("dedup", ("dedup",)),
)


class AccountingError(RuntimeError):
    """Records went missing between stages: the run must not pass as complete."""


def _histogram(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def build_report(counts: Mapping[str, int], options: Mapping[str, object]) -> dict:
    """Turn the raw counts (``out:<step>``, ``dead:<stage>:<reason>``, ``pairs:<field>:<value>``)
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
    problems = []
    for step, owned in STEPS:
        out = counts.get(f"out:{step}")
        if out is None:  # a step that did not run passes everything through
            out = previous
        rejected = sum(dead_by_stage[s] for s in owned)
        merged = previous - out - rejected if step == "dedup" else 0
        row = {"stage": step, "in": previous, "out": out, "rejected": rejected}
        if step == "dedup":
            row["merged"] = merged
        if previous != out + rejected + merged or merged < 0:
            problems.append(f"{step}: in {previous} != out {out} + rejected {rejected} + merged {merged}")
        stages.append(row)
        previous = out
    written = counts.get("out:written", previous)
    dead_total = sum(dead_by_stage.values())
    merged_total = sum(row.get("merged", 0) for row in stages)
    known = {s for _, owned in STEPS for s in owned}
    for stage in sorted(set(dead_by_stage) - known):
        problems.append(f"dead letters from unknown stage {stage!r}")
    if read_in != written + dead_total + merged_total:
        problems.append(
            f"records read {read_in} != pairs written {written} + dead letters {dead_total} + merged {merged_total}"
        )
    return {
        "ok": not problems,
        "accounting": {
            "records_read": read_in,
            "pairs_written": written,
            "dead_letters": dead_total,
            "merged_duplicates": merged_total,
            "problems": problems,
        },
        "stages": stages,
        "rejections": reasons,
        "difficulty": _histogram(counts, "pairs:difficulty:"),
        "concepts": _histogram(counts, "pairs:concept:"),
        "execution": _histogram(counts, "pairs:execution:"),
        "sources": _histogram(counts, "pairs:source:"),
        "question_sources": _histogram(counts, "pairs:question_source:"),
        "options": dict(sorted(options.items())),
    }


def format_stage_table(report: Mapping) -> str:
    """The per-stage funnel as a fixed-width text table (for logs and errors)."""
    lines = [f"{'stage':<10} {'in':>9} {'out':>9} {'rejected':>9} {'merged':>9}"]
    for row in report["stages"]:
        lines.append(
            f"{row['stage']:<10} {row['in']:>9} {row['out']:>9} {row['rejected']:>9} {row.get('merged', ''):>9}"
        )
    return "\n".join(lines)


def _pair_keys(record: Record) -> Iterable[str]:
    yield "out:written"
    yield f"pairs:difficulty:{record.difficulty}"
    yield f"pairs:source:{record.source}"
    yield f"pairs:question_source:{record.question_source}"
    yield f"pairs:execution:{record.execution.status if record.execution else 'none'}"
    for concept in record.concepts:
        yield f"pairs:concept:{concept}"


class _WriteReportFn(beam.DoFn):
    def __init__(self, path: str, options: Mapping[str, object]):
        self.path, self.options = path, dict(options)

    def process(self, counts: Sequence[tuple[str, int]]):
        report = build_report(dict(counts), self.options)
        write_text_file(self.path, json.dumps(report, indent=2, sort_keys=False) + "\n")
        if not report["ok"]:
            raise AccountingError(
                "accounting check failed: " + "; ".join(report["accounting"]["problems"]) + "\n"
                + format_stage_table(report)
            )
        yield self.path


class WriteReport(beam.PTransform):
    """Counts stage outputs, dead letters and final pairs; writes ``path`` as JSON.

    ``step_outputs`` maps a step name (see ``STEPS``) to that step's main output.
    """

    def __init__(self, path: str, options: Optional[Mapping[str, object]] = None):
        super().__init__()
        self.path, self.options = path, dict(options or {})

    def expand(self, inputs):
        step_outputs, dead, pairs = inputs["steps"], inputs["dead"], inputs["pairs"]
        keyed = []
        for step, pcoll in sorted(step_outputs.items()):
            keyed.append(pcoll | f"Key{step.title()}" >> beam.Map(lambda _, s=step: f"out:{s}").with_output_types(str))
        keyed.append(
            dead
            | "KeyDead" >> beam.Map(lambda d: f"dead:{d.stage}:{d.reason}").with_output_types(str)
        )
        keyed.append(pairs | "KeyPairs" >> beam.FlatMap(_pair_keys).with_output_types(str))
        return (
            keyed
            | "AllCounts" >> beam.Flatten()
            | "CountEach" >> beam.combiners.Count.PerElement()
            | "Together" >> beam.combiners.ToList()
            | "WriteReport" >> beam.ParDo(_WriteReportFn(self.path, self.options))
        )


def dead_letter_sort_key(dead: DeadLetter) -> str:
    """Deterministic order of dead letters in their shards."""
    record_id = dead.record.id if dead.record is not None else ""
    return "\x00".join((dead.stage, dead.reason, dead.origin or "", record_id, dead.detail))
