"""Training data from the final pairs: DPO pairs from a weak model, SFT/DPO exports, their counts.

``WriteTrainingData`` is the one step the graph adds after the final pairs when any of
``--preference``, ``--format`` (beyond ``pairs``) or ``--stage_by`` is given:

* ``transforms.publish.preference.SamplePreferencePairs`` → the ``dpo`` set of the dataset folder,
  ``PREFIX-dataset/jsonl/dpo/train-NNNNN-of-NNNNN.jsonl`` (``{prompt, chosen, rejected, meta}``),
  and ``PREFIX-dpo-samples-…`` beside the pairs (every labelled sample per question, so other
  knobs can be tried without sampling again). The graph samples *before* it writes the pairs,
  so they carry the weak model's solve rate, and hands the stage's outputs to this step
  (``training_inputs``);
* ``transforms.publish.exports.WriteExports`` → the other formats, Parquet copies and staged sets;
* ``transforms.publish.reasoning_dpo.WriteReasoningDpo`` → the ``dpo-reasoning`` set (``--cot``'s traces);
* ``PREFIX-training-report.json``: the samples' label mix, how each question ended, pairs
  by kind, and rows per shard set — computed inside the pipeline, so it is exact on any
  runner. After a local run it is merged into ``PREFIX-report.json`` (``merge_training_report``).

With ``--context full`` the chat pairs carry no earlier turns (each conversation is stored
once, ``transforms.publish.conversations``); the graph then gives this step the conversations too,
and the DPO prompts and the formats rendered from a ``TrainingExample`` get each chat pair's
earlier turns back from them (``WithFullContext``), the same text a pair holding its context
would give. The ``pairs`` set and its copies stay the pairs as written.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam

from transforms.publish.conversations import WithFullContext
from transforms.publish.exports import (
    COT_FORMATS,
    DIFFICULTY_STAGES,
    EXAMPLE_FORMATS,
    FORMATS,
    PARQUET,
    ExportSettings,
    WriteExports,
    row_line,
    set_name,
    set_prefix,
)
from transforms.publish.preference import (
    LABELS,
    OUTCOMES,
    PreferenceOutputs,
    PreferenceSettings,
    samples_row,
)
from transforms.publish.reasoning_dpo import FORMAT as REASONING_DPO, WriteReasoningDpo
from transforms.kit.write import WriteJsonShards, write_text_file


class TrainingSettings(NamedTuple):
    """``exports`` always; ``preference`` with ``--preference``."""

    exports: ExportSettings
    preference: Optional[PreferenceSettings] = None


def training_paths(prefix: str) -> dict[str, str]:
    """Where the DPO pairs (a set of the dataset folder), the labelled samples and the training report go.

    >>> training_paths("out/p")["dpo"], training_paths("out/p")["samples"]
    ('out/p-dataset/jsonl/dpo/train', 'out/p-dpo-samples')
    """
    return {"dpo": set_prefix(prefix, "dpo"), "samples": f"{prefix}-dpo-samples",
            "report": f"{prefix}-training-report.json"}


# ---------------------------------------------------------------------------------------------
# The training report
# ---------------------------------------------------------------------------------------------


def _ordered(counts: Mapping[str, int], order: Sequence[str]) -> dict[str, int]:
    known = {k: counts[k] for k in order if k in counts}
    return {**known, **{k: v for k, v in sorted(counts.items()) if k not in known}}


def training_report(counts: Mapping[str, int], settings: TrainingSettings) -> dict[str, Any]:
    """The report section from ``preference:<kind>:<key>`` and ``export:<set>`` counts.

    >>> r = training_report({"preference:label:correct": 3, "preference:label:wrong_result": 1,
    ...     "preference:question:with_pairs": 1, "preference:pair:wrong_result": 1, "export:sft-chat": 4},
    ...     TrainingSettings(ExportSettings("out/p", formats=("pairs", "sft-chat"))))
    >>> r["exports"]["sets"], r["exports"]["formats"]
    ({'sft-chat': 4}, ['pairs', 'sft-chat'])
    """
    sections: dict[str, dict[str, int]] = {}
    sets: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for key, value in counts.items():
        parts = key.split(":")
        if parts[0] == "preference" and len(parts) == 3:
            sections.setdefault(parts[1], {})[parts[2]] = int(value)
        elif parts[0] == "export" and len(parts) == 3 and parts[1] == "skipped":
            skipped[parts[2]] = int(value)
        elif parts[0] == "export" and len(parts) == 2:
            sets[parts[1]] = int(value)
    exports = settings.exports
    set_order = [set_name(f, stage) for f in FORMATS for stage in (None, *DIFFICULTY_STAGES)]
    report: dict[str, Any] = {
        "exports": {
            "formats": list(exports.formats),
            "parquet": exports.parquet,
            "stage_by": exports.stage_by,
            "sample_rows": exports.schema.sample_rows,
            "prompt_schema": exports.schema.prompt.mode,
            "sets": _ordered(sets, set_order),
            "skipped": dict(sorted(skipped.items())),
        }
    }
    preference = settings.preference
    if preference is not None:
        labels = _ordered(sections.get("label", {}), LABELS)
        questions = _ordered(sections.get("question", {}), OUTCOMES)
        report["preference"] = {
            "weak_model": preference.weak_model,
            "samples_per_question": preference.samples,
            "knobs": preference.knobs._asdict(),
            "questions_sampled": sum(v for k, v in questions.items() if not k.startswith(("skipped_", "prompt_"))),
            "questions": questions,
            "samples": sum(labels.values()),
            "labels": labels,
            "pairs": sum(sections.get("pair", {}).values()),
            "pairs_by_negative": _ordered(sections.get("pair", {}), LABELS),
            "chosen": dict(sorted(sections.get("chosen", {}).items())),
            # Spider level / the weak solve rate's level, per graded pair (the HTML report's heatmap)
            "difficulty_vs_exec": dict(sorted(sections.get("difficulty_vs_exec", {}).items())),
        }
    return report


class _WriteTrainingReportFn(beam.DoFn):
    def __init__(self, path: str, settings: TrainingSettings):
        self.path, self.settings = path, settings

    def process(self, counts: Sequence[tuple[str, int]]):
        report = training_report(dict(counts), self.settings)
        write_text_file(self.path, json.dumps(report, indent=2) + "\n")
        yield self.path


def training_requested(options: Mapping[str, Any]) -> bool:
    """Whether the run's options asked for ``WriteTrainingData`` (so its report is this run's, not a stale one).

    >>> training_requested({"format": "pairs"}), training_requested({"format": "pairs", "stage_by": "difficulty"})
    (False, True)
    """
    formats = [f.strip() for f in str(options.get("format") or "pairs").split(",") if f.strip()]
    return bool(options.get("preference") or options.get("stage_by") or set(formats) - {"pairs"})


def merge_training_report(report_path: str, report: dict[str, Any]) -> dict[str, Any]:
    """Add ``PREFIX-training-report.json``'s sections to the main report (when this run wrote one)."""
    from apache_beam.io.filesystems import FileSystems

    if not training_requested(report.get("options") or {}):
        return report
    prefix = report_path[: -len("-report.json")] if report_path.endswith("-report.json") else report_path
    path = training_paths(prefix)["report"]
    try:
        if not FileSystems.exists(path):
            return report
        with FileSystems.open(path) as handle:
            extra = json.loads(handle.read().decode("utf-8"))
    except Exception:  # noqa: BLE001 - the report is informative; the data is already written
        return report
    for key in ("preference", "exports"):
        if key in extra:
            report[key] = extra[key]
    return report


# ---------------------------------------------------------------------------------------------
# The graph step
# ---------------------------------------------------------------------------------------------


def renders_context(settings: TrainingSettings) -> bool:
    """Whether any export of ``settings`` shows a pair's earlier chat turns (a format rendered
    from a ``TrainingExample``, ``dpo-chat``, ``dpo-reasoning``), so ``--context full`` must
    rebuild them. The ``dpo`` prompts get theirs inside ``SamplePreferencePairs``.

    >>> renders_context(TrainingSettings(ExportSettings("o", formats=("pairs",), parquet=True)))
    False
    >>> renders_context(TrainingSettings(ExportSettings("o", formats=("pairs", "prompt-completion"))))
    True
    """
    return any(f in (*EXAMPLE_FORMATS, *COT_FORMATS, "dpo-chat") for f in settings.exports.formats)


def training_inputs(pairs: beam.PCollection, conversations: Optional[beam.PCollection] = None,
                    preference: Optional[PreferenceOutputs] = None) -> dict[str, beam.PCollection]:
    """``WriteTrainingData``'s input: the pairs, the conversations (``--context full``) and the
    outputs of a ``SamplePreferencePairs`` already applied to those pairs (its ``records``)."""
    inputs = {"pairs": pairs}
    if conversations is not None:
        inputs["conversations"] = conversations
    if preference is not None:
        inputs.update(dpo=preference.pairs, dpo_samples=preference.samples, dpo_notes=preference.notes)
    return inputs


class WriteTrainingData(beam.PTransform):
    """Final pairs → DPO pairs (with ``--preference``), training exports and the training report.

    Applied to the pairs, or to ``training_inputs(...)``: with ``--context full`` the conversations
    (``transforms.ingest.conversations.ReadConversations``), whose earlier turns are joined back to
    each chat pair for the prompts that show them; with ``--preference``, the weak model's outputs,
    which the graph samples before it writes the pairs (the pairs are then its graded ``records``).
    """

    def __init__(self, settings: TrainingSettings):
        super().__init__()
        self.settings = settings

    def expand(self, inputs):
        settings = self.settings
        exports = settings.exports
        inputs = inputs if isinstance(inputs, dict) else {"pairs": inputs}
        pairs, conversations = inputs["pairs"], inputs.get("conversations")
        paths = training_paths(exports.output)
        notes = []
        dpo = None
        if settings.preference is not None:
            if "dpo" not in inputs:
                raise ValueError("--preference: apply SamplePreferencePairs first and pass its outputs "
                                 "(training_inputs)")
            preference = PreferenceOutputs(inputs["dpo"], inputs["dpo_samples"], inputs["dpo_notes"], pairs)
            dpo = preference.pairs
            notes.append(preference.notes)
            dpo | "WriteDpoPairs" >> WriteJsonShards(paths["dpo"], exports.num_shards, row_line, lambda r: r["id"])
            notes.append(dpo | "CountDpo" >> beam.Map(lambda _: "export:dpo"))
            preference.samples | "WriteDpoSamples" >> WriteJsonShards(
                paths["samples"], exports.num_shards, lambda q: row_line(samples_row(q)), lambda q: q.record_id)
        with_context = pairs
        if conversations is not None and renders_context(settings):
            with_context = {"pairs": pairs, "conversations": conversations} | "WithFullContext" >> WithFullContext()
        exported = {"pairs": pairs}
        if dpo is not None:
            exported["dpo"] = dpo
        if with_context is not pairs:
            exported["with_context"] = with_context
        notes.append(exported | "WriteExports" >> WriteExports(exports))
        if REASONING_DPO in exports.formats:  # --cot's losing traces against its kept one (ExCoT)
            notes.append(with_context | "WriteReasoningDpo" >> WriteReasoningDpo(exports))
        return (
            notes
            | "AllTrainingNotes" >> beam.Flatten()
            | "CountTrainingNotes" >> beam.combiners.Count.PerElement()
            | "TrainingTogether" >> beam.combiners.ToList()
            | "WriteTrainingReport" >> beam.ParDo(_WriteTrainingReportFn(paths["report"], settings))
        )


# ---------------------------------------------------------------------------------------------
# The ``--format`` parser
# ---------------------------------------------------------------------------------------------


def parse_formats(value: Optional[str]) -> tuple[tuple[str, ...], bool]:
    """``--format``: the formats listed (``pairs`` always first) and whether Parquet copies are wanted.

    >>> parse_formats("sft-chat,parquet"), parse_formats(None), parse_formats("parquet")
    ((('pairs', 'sft-chat'), True), (('pairs',), False), (('pairs',), True))
    >>> parse_formats("dpo-chat,prompt-completion-chat")
    (('pairs', 'prompt-completion-chat', 'dpo-chat'), False)
    """
    names = [n.strip() for n in (value or "pairs").split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS and n != PARQUET]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; expected {', '.join(FORMATS)} and/or {PARQUET}")
    formats = ["pairs"] + [f for f in FORMATS if f in names and f != "pairs"]
    return tuple(formats), PARQUET in names
