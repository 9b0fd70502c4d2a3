"""``--format dpo-reasoning``: DPO pairs at the reasoning level from the ``--cot`` votes (ExCoT).

Snowflake's ExCoT (arXiv 2503.19988) trains on preference pairs of chains of thought whose
SQL was executed: a trace whose query gave the right result is chosen over one whose query
failed or gave another result. ``--cot`` already samples N traces per pair and runs each
trace's SQL, so the pairs cost nothing more: ``transforms.publish.cot`` keeps, on every pair it
keeps, up to ``--cot_dpo_limit`` of the vote's losing traces in ``extra["cot_rejected"]``
(chosen deterministically: a wrong result first, then a failed query, then an unparseable
one; by sample index), and this module renders them.

Each row is ``{"id", "prompt", "chosen", "rejected", "meta"}``:

* ``prompt`` — the prompt of the pair's ``--sft_target reasoning`` prompt/completion example,
  exactly (task, schema DDL as ``--prompt_schema`` renders it, question, evidence, then
  ``### Answer``), whatever ``--sft_target`` the other sets use;
* ``chosen`` — that example's completion: the kept trace, then its SQL in a ```` ```sql ````
  block (``transforms.publish.sft_target.reasoning_completion``);
* ``rejected`` — a losing trace rendered the same way, its SQL whitespace-normalized;
* ``meta`` — ``record_id``, ``db_id``, ``difficulty``, ``exec_difficulty``, ``concepts``,
  ``question``, ``neg_kind`` (``wrong_result``, ``exec_error``, ``timeout`` or
  ``unparseable``), ``sample_index`` and ``chosen_sample_index`` (the traces' sample
  indices in the vote), ``rejected_error`` (why its SQL failed; empty for a wrong result)
  and ``cot_model``.

A pair whose vote had no losing trace (all N solutions agreed with the gold) gives no row.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional

import apache_beam as beam

from transforms.core.record import Record, content_id
from transforms.publish.exports import (
    ExportSettings,
    SchemaLookup,
    SchemaSource,
    TrainingExample,
    normalize_whitespace,
    row_line,
    training_example,
    write_set,
)
from transforms.publish.sft_target import reasoning_completion, reasoning_fields

#: The set's name in ``--format``, the dataset folder and the reports.
FORMAT = "dpo-reasoning"
#: The key of ``extra`` where ``transforms.publish.cot`` keeps the losing traces.
REJECTED_KEY = "cot_rejected"


def rejected_of(record: Record) -> tuple[Optional[int], list[dict[str, Any]]]:
    """The kept trace's sample index and the losing traces ``transforms.publish.cot`` stored on ``record``.

    >>> rejected_of(Record("r", "Q", "S", extra={"cot_rejected": '{"chosen": 2, "traces": [{"index": 0}]}'}))
    (2, [{'index': 0}])
    >>> rejected_of(Record("r", "Q", "S"))
    (None, [])
    """
    text = record.extra.get(REJECTED_KEY)
    if not text:
        return None, []
    stored = json.loads(text)
    return stored.get("chosen"), list(stored.get("traces") or [])


def reasoning_dpo_rows(example: TrainingExample, record: Record) -> list[dict[str, Any]]:
    """The rows of one pair: ``example`` (its ``--sft_target reasoning`` rendering) chosen over each losing trace.

    >>> record = Record("r1", "How many artists?", "SELECT COUNT(*) FROM artist", db_id="music",
    ...                 reasoning="Count the rows.", extra={"cot_model": "openai:m", "exec_difficulty": "easy",
    ...                 "cot_rejected": json.dumps({"chosen": 1, "traces": [{"index": 3, "kind": "exec_error",
    ...                 "reasoning": "Count names.", "sql": "SELECT  COUNT(nam) FROM artist", "detail": "no column"}]})})
    >>> example = TrainingExample("r1", "SYS", "Q", "P ### Answer\\n", "Count the rows.\\n\\n```sql\\nSELECT 1\\n```", {})
    >>> [row] = reasoning_dpo_rows(example, record)
    >>> row["prompt"], row["rejected"].splitlines()[-2], row["meta"]["neg_kind"], row["meta"]["chosen_sample_index"]
    ('P ### Answer\\n', 'SELECT COUNT(nam) FROM artist', 'exec_error', 1)
    """
    chosen_index, traces = rejected_of(record)
    rows = []
    for trace in traces:
        kind = str(trace.get("kind") or "")
        rejected = reasoning_completion(str(trace.get("reasoning") or ""), normalize_whitespace(str(trace["sql"])))
        if rejected == example.completion:  # never a pair that prefers a text over itself
            continue
        meta = {
            "record_id": record.id,
            "db_id": record.db_id,
            "difficulty": record.difficulty,
            "exec_difficulty": record.extra.get("exec_difficulty"),
            "concepts": list(record.concepts),
            "question": record.question,
            "neg_kind": kind,
            "sample_index": trace.get("index"),
            "rejected_error": "" if kind == "wrong_result" else str(trace.get("detail") or ""),
            "chosen_sample_index": chosen_index,
            "cot_model": record.extra.get("cot_model"),
        }
        rows.append({"id": content_id(FORMAT, record.id, trace.get("index"), rejected), "prompt": example.prompt,
                     "chosen": example.completion, "rejected": rejected, "meta": meta})
    return rows


class _ReasoningDpoRowsFn(beam.DoFn):
    """Kept ``--cot`` pair → its ``dpo-reasoning`` rows, the prompt rendered as every export renders it."""

    def __init__(self, source: SchemaSource):
        self.source = source

    def setup(self) -> None:
        self._lookup = SchemaLookup(self.source)

    def process(self, record: Record) -> Iterator[dict[str, Any]]:
        if not (record.question and record.reasoning and record.extra.get(REJECTED_KEY)):
            return
        example = training_example(record, self._lookup.schema_text(record))
        example = example._replace(**reasoning_fields(example.system, example.prompt, example.completion, record))
        yield from reasoning_dpo_rows(example, record)

    def teardown(self) -> None:
        lookup = getattr(self, "_lookup", None)
        if lookup is not None:
            lookup.close()


def _row_key(row: dict[str, Any]) -> str:
    return row["id"]


def _row_meta(row: dict[str, Any]) -> Any:
    return row["meta"]


def _identity(row: Any) -> Any:
    return row


class WriteReasoningDpo(beam.PTransform):
    """Final pairs (with their earlier turns, under ``--context full``) → the ``dpo-reasoning`` set,
    its Parquet copy and staged sets as ``settings`` asks; outputs the ``export:<set>`` counts."""

    def __init__(self, settings: ExportSettings):
        super().__init__()
        self.settings = settings

    def expand(self, records):
        s = self.settings
        rows = records | "ReasoningDpoRows" >> beam.ParDo(_ReasoningDpoRowsFn(s.schema))
        counts = write_set(rows, label="ExportDpoReasoning", output=s.output, fmt=FORMAT, num_shards=s.num_shards,
                           to_row=_identity, to_line=row_line, sort_key=_row_key, parquet=s.parquet,
                           stage_by=s.stage_by, meta_of=_row_meta)
        return counts | "ReasoningDpoCounts" >> beam.Flatten(pipeline=records.pipeline)
