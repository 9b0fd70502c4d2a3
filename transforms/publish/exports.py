"""Training exports: the final pairs as SFT chat, prompt/completion and DPO rows, JSONL or Parquet.

Formats (``--format``, several at once, comma-separated):

* ``pairs`` — the pipeline's own records (always written as ``PREFIX-NNNNN-of-NNNNN.jsonl``);
* ``sft-chat`` — ``{"id", "messages": [system, user, assistant], "meta"}``: the system message
  holds the DDL of the tables the SQL reads (``--sft_sample_rows`` adds sample rows as
  comments), the user message the question, the assistant message the SQL;
* ``prompt-completion`` — ``{"id", "prompt", "completion", "meta"}``: the same example with the
  prompt and the SQL kept apart, so a trainer computes the loss on the completion only and
  never packs two examples into one sequence (SQLCoder 2 found both mattered);
* ``prompt-completion-chat`` — ``{"id", "prompt": [system, user], "completion": [assistant],
  "meta"}``: TRL's conversational prompt/completion, the ``sft-chat`` messages split where the
  loss starts (so a chat template applies, and the loss is on the SQL only);
* ``dpo`` — ``{"id", "prompt", "chosen", "rejected", "meta"}`` from ``transforms.publish.preference``;
* ``dpo-chat`` — ``{"id", "prompt": [system, user], "chosen": [assistant], "rejected":
  [assistant], "meta"}``: TRL's conversational preference format; its system and user messages
  are the ``sft-chat`` messages of the same pair (built from the same ``TrainingExample``);
* ``dpo-reasoning`` — ``{"id", "prompt", "chosen", "rejected", "meta"}`` from the ``--cot``
  votes (ExCoT): a verified trace chosen over a trace of the same vote whose SQL failed or gave
  another result, written by ``transforms.publish.reasoning_dpo``;
* ``parquet`` — a Parquet copy (pyarrow, explicit schema) beside every JSONL set listed.

Every SQL in a training row is whitespace-normalized (``normalize_whitespace``): SQLCoder 2
measured that arbitrary indentation can cost half the completion tokens, and a DPO pair whose
chosen and rejected differ in layout teaches layout.

``--stage_by difficulty`` adds one shard set per Spider level (``pairs-easy``,
``sft-chat-hard``) for staged training from simple to complex; the full sets stay.

Where the sets go: ``PREFIX-dataset/`` is a self-contained Hugging Face dataset folder (the
card, ``README.md``, is written there after the run): ``jsonl/<set>/train-NNNNN-of-NNNNN.jsonl``
and, with ``parquet``, ``parquet/<set>/train-NNNNN-of-NNNNN.parquet`` — one folder per set and
per file type, nothing else in it, so ``pyarrow.dataset`` and ``datasets.load_dataset`` read a
set's folder directly, and the folder uploads to the Hub as it is. The pairs and dead letters
keep their ``PREFIX-…`` names; the pairs are written a second time, identical, as the ``pairs``
set, and the dead letters as the ``rejects`` set with each ``record`` as JSON text
(``WriteRejectsSet``).

All sets are sharded and byte-identical across runs: JSONL through ``WriteJsonShards``,
Parquet through ``WriteParquetShards`` below (same shard choice, rows sorted). Values are
schema-stable: Parquet files carry the explicit schemas below (``extra``, a map whose keys
vary from row to row, is its JSON text, a string every reader has a type for), and the card
declares every set's features (``card_schema``) so a shard where a column is all null or all
``[]`` is read with the same types as the others.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import zlib
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core.vocab import dialect_name
from transforms.core.record import Record, record_to_dict
from transforms.publish import schema_prompt
from transforms.sql import table_schema
from transforms.publish.sft_target import reasoning_fields
from transforms.kit.ddl_files import load_ddl
from transforms.kit.write import SPILL_CHARS, ExternalSorter, created_atomically, shard_name

_LOGGER = logging.getLogger(__name__)

#: Training formats ``--format`` accepts, plus the ``parquet`` modifier.
FORMATS = ("pairs", "sft-chat", "prompt-completion", "prompt-completion-chat", "dpo", "dpo-chat", "dpo-reasoning")
PARQUET = "parquet"
#: Formats rendered from a pair's ``TrainingExample`` (they need the tables' DDL).
EXAMPLE_FORMATS = ("sft-chat", "prompt-completion", "prompt-completion-chat")
#: Formats made from the weak model's DPO pairs (they need ``--preference``).
PREFERENCE_FORMATS = ("dpo", "dpo-chat")
#: Formats made from the ``--cot`` votes' traces (they need ``--cot``; ``transforms.publish.reasoning_dpo``).
COT_FORMATS = ("dpo-reasoning",)
#: The dead letters' set in the dataset folder (a copy of ``PREFIX-rejects-…``).
REJECTS = "rejects"
#: File types of the dataset folder: ``PREFIX-dataset/<kind>/<set>/train-NNNNN-of-NNNNN.<kind>``.
JSONL, PARQUET_KIND = "jsonl", "parquet"
#: What ``--stage_by`` can split by, and the stages of each, easiest first.
STAGE_BY = ("difficulty", "exec_difficulty")  # Spider's hardness, or the --cot solve rate's level
DIFFICULTY_STAGES = ("easy", "medium", "hard", "extra")

#: ``transforms.generate.synthesize.CURRICULUM``'s concepts as ``transforms.sql.concepts`` tags, so the
#: coverage of any data (logged or synthesized) can be measured against the curriculum.
#: ("filtering" has no tag: nearly every query filters.)
CURRICULUM_TAGS: Mapping[str, str] = {
    "aggregation": "aggregation", "ordering and limits": "order_limit", "grouping": "group_by", "joins": "join",
    "subqueries": "subquery", "date functions": "date_fn", "string functions": "string_fn",
    "NULL handling": "null_handling", "conditional logic": "case", "ratios": "ratio", "CTEs": "cte",
    "window functions": "window", "set operations": "set_op",
}
#: The curriculum's coverage targets: the share of pairs that should use each concept for the
#: data to teach it (SQLCoder 2: basic clauses common; date functions, window functions, CTEs,
#: ratios and NULL handling deliberately present). The shares are our reading of that
#: curriculum, not figures Defog published.
CURRICULUM_TARGETS: Mapping[str, float] = {
    "join": 0.30,
    "aggregation": 0.30,
    "group_by": 0.20,
    "order_limit": 0.20,
    "subquery": 0.10,
    "date_fn": 0.10,
    "case": 0.05,
    "cte": 0.05,
    "window": 0.05,
    "ratio": 0.05,
    "null_handling": 0.05,
    "string_fn": 0.05,
    "set_op": 0.03,
}



def curriculum_targets() -> Mapping[str, float]:
    """The concept coverage targets (concept tag → share of pairs) the reports compare against."""
    return CURRICULUM_TARGETS


# ---------------------------------------------------------------------------------------------
# Pure functions: SQL text, DDL, prompts and rows
# ---------------------------------------------------------------------------------------------


def normalize_whitespace(sql: str) -> str:
    """One space between tokens, none at the ends; quoted text and identifiers kept exactly.

    Comments are dropped (a ``--`` comment would otherwise swallow the rest of the line once
    line breaks are gone).

    >>> normalize_whitespace("SELECT  a,\\n\\t b  -- note\\nFROM t WHERE c = 'x  y'")
    "SELECT a, b FROM t WHERE c = 'x  y'"
    >>> normalize_whitespace('SELECT /* hint */ "my  col" FROM t ;')
    'SELECT "my  col" FROM t ;'
    """
    out: list[str] = []
    pending_space = False
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in ("'", '"', "`"):
            end = sql.find(char, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == char:  # doubled quote
                end = sql.find(char, end + 2)
            end = n if end == -1 else end + 1
            token = sql[i:end]
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
            pending_space = True
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            pending_space = True
            continue
        elif char.isspace():
            pending_space = True
            i += 1
            continue
        else:
            token = char
            i += 1
        if pending_space and out:
            out.append(" ")
        pending_space = False
        out.append(token)
    return "".join(out)


sample_value_text = table_schema.sample_value_text  # one rendering of sample values for prompts and exports


render_ddl = schema_prompt.render_ddl  # one DDL rendering for every prompt (``--prompt_schema`` adds notes)
render_schema = schema_prompt.render_schema


def _context_text(context: Sequence[str]) -> str:
    return "\n".join(f"- {' '.join(str(turn).split())}" for turn in context)


def training_prompt(question: str, schema: str, dialect: Optional[str], context: Sequence[str] = (),
                    evidence: Optional[str] = None) -> str:
    """The prompt of a prompt/completion or DPO row: task, schema DDL, question (its ``--evidence``
    after it, when it has any), then ``### SQL``.

    >>> print(training_prompt("How many artists?", "CREATE TABLE artist (id INT);", "sqlite"))
    ### Task
    Write one SQLite query that answers the question.
    <BLANKLINE>
    ### Database schema
    CREATE TABLE artist (id INT);
    <BLANKLINE>
    ### Question
    How many artists?
    <BLANKLINE>
    ### SQL
    """
    parts = [f"### Task\nWrite one {dialect_name(dialect)} query that answers the question.",
             f"### Database schema\n{schema}"]
    if context:
        parts.append(f"### Conversation so far\n{_context_text(context)}")
    parts.append(f"### Question\n{question.strip()}")
    if evidence:
        parts.append(f"### Evidence\n{evidence.strip()}")
    parts.append("### SQL\n")
    return "\n\n".join(parts)


def system_message(schema: str, dialect: Optional[str]) -> str:
    """The SFT system message: what to answer with, then the schema DDL."""
    return (f"You write {dialect_name(dialect)} queries that answer questions about this database. "
            f"Reply with one SQL query only.\n\n{schema}")


def user_message(question: str, context: Sequence[str] = (), evidence: Optional[str] = None) -> str:
    """The question, after the earlier turns of its conversation when it has any, and its
    ``--evidence`` when it has any.

    >>> user_message("How many active customers?", evidence="active refers to active = 1")
    'How many active customers?\\n\\nEvidence: active refers to active = 1'
    """
    text = question.strip() + (f"\n\nEvidence: {evidence.strip()}" if evidence else "")
    if not context:
        return text
    return f"Earlier in this conversation:\n{_context_text(context)}\n\n{text}"


class TrainingExample(NamedTuple):
    """One pair's training view: everything every format is rendered from."""

    id: str
    system: str
    user: str
    prompt: str
    completion: str
    meta: Mapping[str, Any]


def example_meta(record: Record) -> dict[str, Any]:
    """The ``meta`` of a row made from ``record``: where it came from and how hard it is."""
    return {
        "db_id": record.db_id,
        "difficulty": record.difficulty,
        "concepts": list(record.concepts),
        "source": record.source,
        "question_source": record.question_source,
        "exec_difficulty": record.extra.get("exec_difficulty"),  # --cot: how often its solutions solved it
    }


def training_example(record: Record, schema: str) -> TrainingExample:
    """The training view of a pair whose referenced tables render as ``schema``."""
    sql = normalize_whitespace(record.normalized_sql or record.sql)
    question = record.question or ""
    return TrainingExample(
        id=record.id,
        system=system_message(schema, record.dialect),
        user=user_message(question, record.context, record.evidence),
        prompt=training_prompt(question, schema, record.dialect, record.context, record.evidence),
        completion=sql,
        meta=example_meta(record),
    )


def sft_chat_row(example: TrainingExample) -> dict[str, Any]:
    """``{"id", "messages": [system, user, assistant], "meta"}``."""
    return {
        "id": example.id,
        "messages": [
            {"role": "system", "content": example.system},
            {"role": "user", "content": example.user},
            {"role": "assistant", "content": example.completion},
        ],
        "meta": dict(example.meta),
    }


def prompt_completion_row(example: TrainingExample) -> dict[str, Any]:
    """``{"id", "prompt", "completion", "meta"}``."""
    return {"id": example.id, "prompt": example.prompt, "completion": example.completion, "meta": dict(example.meta)}


def chat_prompt(example: TrainingExample) -> list[dict[str, str]]:
    """The ``[system, user]`` messages of ``example``: ``sft-chat``'s first two, exactly."""
    return sft_chat_row(example)["messages"][:2]


def assistant(content: str) -> list[dict[str, str]]:
    """One assistant turn, as TRL's conversational formats hold a completion."""
    return [{"role": "assistant", "content": content}]


def prompt_completion_chat_row(example: TrainingExample) -> dict[str, Any]:
    """``{"id", "prompt": [system, user], "completion": [assistant], "meta"}`` (TRL's conversational
    prompt/completion): ``sft-chat``'s messages, split where the loss starts.

    >>> example = TrainingExample("r1", "SYS", "Q?", "P", "SELECT 1", {})
    >>> row = prompt_completion_chat_row(example)
    >>> row["prompt"] + row["completion"] == sft_chat_row(example)["messages"]
    True
    """
    return {"id": example.id, "prompt": chat_prompt(example), "completion": assistant(example.completion),
            "meta": dict(example.meta)}


def dpo_chat_row(example: TrainingExample, dpo: Mapping[str, Any]) -> dict[str, Any]:
    """A DPO pair in TRL's conversational preference format, its prompt the pair's ``sft-chat``
    system and user messages.

    >>> example = TrainingExample("r1", "SYS", "Q?", "P", "SELECT 1", {})
    >>> row = dpo_chat_row(example, {"id": "d1", "prompt": "P", "chosen": "SELECT 1", "rejected": "SELECT 2",
    ...                              "meta": {"record_id": "r1"}})
    >>> [m["role"] for m in row["prompt"]], row["chosen"], row["rejected"][0]["content"]
    (['system', 'user'], [{'role': 'assistant', 'content': 'SELECT 1'}], 'SELECT 2')
    """
    return {"id": dpo["id"], "prompt": chat_prompt(example), "chosen": assistant(dpo["chosen"]),
            "rejected": assistant(dpo["rejected"]), "meta": dict(dpo["meta"])}


def row_line(row: Mapping[str, Any]) -> str:
    """One JSONL line (key order as built, UTF-8 kept)."""
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def stage_of(row_meta: Mapping[str, Any], stage_by: str) -> Optional[str]:
    """The stage a row belongs to (its difficulty, or its execution difficulty), or None when it has none."""
    if stage_by in STAGE_BY:
        value = row_meta.get(stage_by)
        return value if value in DIFFICULTY_STAGES else None
    raise ValueError(f"unknown --stage_by {stage_by!r}")


def set_name(fmt: str, stage: Optional[str] = None) -> str:
    """The name of a shard set in the reports and the dataset card (``sft-chat-easy``), and its folder."""
    return f"{fmt}-{stage}" if stage else fmt


def dataset_dir(output: str) -> str:
    """The Hugging Face dataset folder of an output prefix: the card and one folder per set.

    >>> dataset_dir("out/p"), dataset_dir("gs://b/runs/p")
    ('out/p-dataset', 'gs://b/runs/p-dataset')
    """
    return f"{output}-dataset"


def set_folder(fmt: str, stage: Optional[str] = None, kind: str = JSONL) -> str:
    """A set's folder relative to the dataset folder: ``<kind>/<set name>``.

    >>> set_folder("sft-chat", "hard"), set_folder("pairs", kind="parquet")
    ('jsonl/sft-chat-hard', 'parquet/pairs')
    """
    return f"{kind}/{set_name(fmt, stage)}"


def set_prefix(output: str, fmt: str, stage: Optional[str] = None, kind: str = JSONL) -> str:
    """Where one shard set's files go (``shard_name`` adds ``-NNNNN-of-NNNNN.<kind>``).

    >>> set_prefix("out/p", "pairs"), set_prefix("out/p", "sft-chat", "hard", "parquet")
    ('out/p-dataset/jsonl/pairs/train', 'out/p-dataset/parquet/sft-chat-hard/train')
    """
    return f"{dataset_dir(output)}/{set_folder(fmt, stage, kind)}/train"


# ---------------------------------------------------------------------------------------------
# Parquet schemas (explicit, so empty shards and all-null columns still have types)
# ---------------------------------------------------------------------------------------------

_STRINGS = pa.list_(pa.string())
_EXAMPLE_META = pa.struct([("db_id", pa.string()), ("difficulty", pa.string()), ("concepts", _STRINGS),
                           ("source", pa.string()), ("question_source", pa.string()),
                           ("exec_difficulty", pa.string())])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
DPO_META = pa.struct([
    ("record_id", pa.string()), ("db_id", pa.string()), ("difficulty", pa.string()),
    ("exec_difficulty", pa.string()), ("concepts", _STRINGS), ("question", pa.string()), ("neg_kind", pa.string()),
    ("sample_index", pa.int64()), ("rejected_error", pa.string()), ("chosen_source", pa.string()),
    ("chosen_sample_index", pa.int64()), ("weak_model", pa.string()),
])
REASONING_DPO_META = pa.struct([
    ("record_id", pa.string()), ("db_id", pa.string()), ("difficulty", pa.string()),
    ("exec_difficulty", pa.string()), ("concepts", _STRINGS), ("question", pa.string()), ("neg_kind", pa.string()),
    ("sample_index", pa.int64()), ("rejected_error", pa.string()), ("chosen_sample_index", pa.int64()),
    ("cot_model", pa.string()),
])
#: Arrow type of every ``Record`` field (a test fails when a field is added without one).
PAIR_FIELD_TYPES: Mapping[str, pa.DataType] = {
    "id": pa.string(), "question": pa.string(), "sql": pa.string(), "context": _STRINGS, "success": pa.bool_(),
    "db_id": pa.string(), "dialect": pa.string(), "source": pa.string(), "question_source": pa.string(),
    "origin": pa.string(), "normalized_sql": pa.string(), "sql_fingerprint": pa.string(),
    "template_fingerprint": pa.string(), "tables": _STRINGS, "difficulty": pa.string(), "concepts": _STRINGS,
    "execution": pa.struct([("status", pa.string()), ("row_count", pa.int64()), ("columns", _STRINGS),
                            ("result_hash", pa.string()), ("error", pa.string()), ("elapsed_ms", pa.float64()),
                            ("truncated", pa.bool_())]),
    "duplicates": pa.int64(), "frequency": pa.int64(),
    "parameters": pa.list_(pa.struct([("name", pa.string()), ("position", pa.int64()), ("type", pa.string()),
                                      ("default", pa.string()), ("value", pa.string())])),
    "parent_id": pa.string(), "evolution": pa.string(), "persona": pa.string(),
    "extra": pa.string(),  # JSON text of the map: its keys vary by row, and a map has no datasets/pandas type
    "reasoning": pa.string(),
    "evidence": pa.string(),
}
_CHAT = pa.list_(_MESSAGE)
SCHEMAS: Mapping[str, pa.Schema] = {
    "pairs": pa.schema([(name, PAIR_FIELD_TYPES[name]) for name in Record._fields if name in PAIR_FIELD_TYPES]),
    "sft-chat": pa.schema([("id", pa.string()), ("messages", pa.list_(_MESSAGE)), ("meta", _EXAMPLE_META)]),
    "prompt-completion": pa.schema([("id", pa.string()), ("prompt", pa.string()), ("completion", pa.string()),
                                    ("meta", _EXAMPLE_META)]),
    "prompt-completion-chat": pa.schema([("id", pa.string()), ("prompt", _CHAT), ("completion", _CHAT),
                                         ("meta", _EXAMPLE_META)]),
    "dpo-chat": pa.schema([("id", pa.string()), ("prompt", _CHAT), ("chosen", _CHAT), ("rejected", _CHAT),
                           ("meta", DPO_META)]),
    "dpo": pa.schema([("id", pa.string()), ("prompt", pa.string()), ("chosen", pa.string()),
                      ("rejected", pa.string()), ("meta", DPO_META)]),
    "dpo-reasoning": pa.schema([("id", pa.string()), ("prompt", pa.string()), ("chosen", pa.string()),
                                ("rejected", pa.string()), ("meta", REASONING_DPO_META)]),
}


#: Dead letters as the dataset's ``rejects`` set holds them (``dead_letter_row``): strings only,
#: ``record`` the rejected record's JSON text, so shards whose records differ in which fields are
#: null, or which hold no record at all, still read with one type in any reader.
DEAD_LETTER_SCHEMA = pa.schema([("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                                ("origin", pa.string()), ("record", pa.string())])


def extra_text(extra: Mapping[str, str]) -> str:
    """``extra`` as the Parquet ``pairs`` set holds it: JSON text, keys sorted (deterministic).

    >>> extra_text({"b": "2", "a": "x"}), extra_text({})
    ('{"a": "x", "b": "2"}', '{}')
    """
    return json.dumps(dict(sorted(extra.items())), ensure_ascii=False, separators=(", ", ": "))


def pair_row(record: Record) -> dict[str, Any]:
    """A pair as a Parquet row of the ``pairs`` schema (``extra`` as JSON text)."""
    row = record_to_dict(record)
    row["extra"] = extra_text(row.get("extra") or {})
    return row


def dead_letter_row(dead: Any, record_timings: bool = False) -> dict[str, str]:
    """A dead letter as the ``rejects`` set holds it: every value a string, ``record`` the JSON text
    of the rejected record (``"null"`` when the input never became one), a missing origin ``""``.

    So every shard has the same types whatever it holds: a reader that infers types from one
    file (``load_dataset("json", data_files=…)``, ``pyarrow.dataset``) reads them all.

    >>> from transforms.core.record import DeadLetter
    >>> dead_letter_row(DeadLetter("read", "not_utf8", "byte 0x9c", None, None))
    {'stage': 'read', 'reason': 'not_utf8', 'detail': 'byte 0x9c', 'origin': '', 'record': 'null'}
    """
    from transforms.core.record import record_to_json, without_timings

    record = dead.record
    if record is not None and not record_timings:
        record = without_timings(record)
    return {"stage": dead.stage, "reason": dead.reason, "detail": dead.detail or "", "origin": dead.origin or "",
            "record": record_to_json(record) if record is not None else "null"}


class WriteRejectsSet(beam.PTransform):
    """Dead letters → the dataset folder's ``rejects`` set (JSONL, and Parquet with ``parquet``).

    ``PREFIX-rejects-…`` keep the record as an object; here it is its JSON text, so
    ``load_dataset("json", data_files=…)`` and ``pyarrow.dataset`` read every shard with one
    schema without being told it (an object's inferred type changes with which fields are null).
    """

    def __init__(self, output: str, num_shards: int, parquet: bool = False, record_timings: bool = False):
        super().__init__()
        self.output, self.num_shards, self.parquet, self.record_timings = output, num_shards, parquet, record_timings

    def expand(self, dead):
        from transforms.publish.report import dead_letter_sort_key
        from transforms.kit.write import WriteJsonShards

        record_timings = self.record_timings

        def to_row(letter):
            return dead_letter_row(letter, record_timings)

        written = [dead | "Jsonl" >> WriteJsonShards(set_prefix(self.output, REJECTS), self.num_shards,
                                                      lambda letter: row_line(to_row(letter)), dead_letter_sort_key)]
        if self.parquet:
            written.append(dead | "Parquet" >> WriteParquetShards(
                set_prefix(self.output, REJECTS, kind=PARQUET_KIND), self.num_shards, to_row, dead_letter_sort_key,
                DEAD_LETTER_SCHEMA))
        return written | "RejectsFiles" >> beam.Flatten()


def card_schema(name: str, kind: str = JSONL) -> tuple[pa.Schema, tuple[str, ...]]:
    """The Arrow schema the dataset card declares for a set of format ``name`` (or ``rejects``) and
    the top-level columns it declares as JSON (``extra`` in JSONL, an object whose keys vary).

    >>> card_schema("pairs")[1], card_schema("pairs", "parquet")[1], card_schema("rejects")[1]
    (('extra',), (), ())
    """
    if name == REJECTS:
        return DEAD_LETTER_SCHEMA, ()
    return SCHEMAS[name], ("extra",) if name == "pairs" and kind == JSONL else ()


#: Rows per Parquet row group (and per batch held in memory while a shard is written).
PARQUET_BATCH_ROWS = 10_000


def _write_parquet(sink: Any, rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> None:
    """Stream ``rows`` into ``sink`` as Parquet, ``PARQUET_BATCH_ROWS`` per row group (keys outside
    ``schema`` raise, never vanish)."""
    names = set(schema.names)
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        batch: list[Mapping[str, Any]] = []
        for row in rows:
            unknown = set(row) - names
            if unknown:
                raise ValueError(f"row has columns the Parquet schema lacks: {', '.join(sorted(unknown))}")
            batch.append(row)
            if len(batch) >= PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def parquet_bytes(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> bytes:
    """One Parquet file holding ``rows``, in memory."""
    buffer = io.BytesIO()
    _write_parquet(buffer, rows, schema)
    return buffer.getvalue()


def write_parquet_file(path: str, rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> None:
    """Write ``rows`` to ``path`` as Parquet with bounded memory, atomically, on any Beam filesystem.

    The file is built in a local temporary file first (Parquet's writer needs ``tell``, which
    an upload stream to ``gs://`` may not offer), then copied 1 MB at a time.
    """
    with tempfile.TemporaryFile(prefix="sqlpairs-parquet-") as local:
        _write_parquet(local, rows, schema)
        local.seek(0)
        with created_atomically(path) as handle:
            for chunk in iter(lambda: local.read(1 << 20), b""):
                handle.write(chunk)


class _WriteParquetShardFn(beam.DoFn):
    def __init__(self, prefix: str, num_shards: int, schema: pa.Schema, spill_chars: int = SPILL_CHARS):
        self.prefix, self.num_shards, self.schema = prefix, num_shards, schema
        self.spill_chars = spill_chars

    def process(self, element: tuple[int, Iterable[Optional[tuple[str, str, dict]]]]):
        index, items = element
        sorter = ExternalSorter(self.spill_chars)  # bounded memory: sorted runs spill to local disk
        try:
            for item in items:
                if item is not None:
                    sorter.add(item)
            path = shard_name(self.prefix, index, self.num_shards, ".parquet")
            write_parquet_file(path, (row for _, _, row in sorter.sorted()), self.schema)
        finally:
            sorter.close()
        yield path


class WriteParquetShards(beam.PTransform):
    """Elements → ``num_shards`` sorted Parquet files (the twin of ``WriteJsonShards``).

    An element goes to the shard its ``sort_key`` hashes to (CRC-32, as for JSONL, so the
    Parquet and JSONL shards of a set hold the same rows); rows are sorted by the key and
    then by their JSON text; shards that receive nothing are written empty.
    """

    def __init__(self, prefix: str, num_shards: int, to_row: Callable[[Any], dict], sort_key: Callable[[Any], str],
                 schema: pa.Schema, spill_chars: int = SPILL_CHARS):
        super().__init__()
        self.prefix, self.num_shards, self.schema = prefix, num_shards, schema
        self.to_row, self.sort_key = to_row, sort_key
        self.spill_chars = spill_chars

    def expand(self, elements):
        num_shards, to_row, sort_key = self.num_shards, self.to_row, self.sort_key

        def keyed(element):
            key, row = sort_key(element), to_row(element)
            tie = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
            return zlib.crc32(key.encode("utf-8")) % num_shards, (key, tie, row)

        rows = elements | "ToRow" >> beam.Map(keyed)
        empty = elements.pipeline | "AllShards" >> beam.Create([(i, None) for i in range(num_shards)], reshuffle=False)
        return (
            (rows, empty)
            | "WithEmptyShards" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(
                _WriteParquetShardFn(self.prefix, num_shards, self.schema, self.spill_chars))
        )


# ---------------------------------------------------------------------------------------------
# The schema of the referenced tables, on the worker
# ---------------------------------------------------------------------------------------------


class SchemaSource(NamedTuple):
    """Where table descriptions come from: ``--schema`` DDL files and/or the database."""

    patterns: tuple[str, ...] = ()
    dialect: Optional[str] = None
    database: Optional[str] = None  # the --database spec, when queries are executed
    database_settings: Mapping[str, Any] = {}  # timeout_s, max_rows, password_env
    sample_rows: int = 0
    prompt: schema_prompt.PromptSchemaSettings = schema_prompt.PromptSchemaSettings()  # --prompt_schema

    @property
    def available(self) -> bool:
        return bool(self.patterns or self.database)


class SchemaLookup:
    """The tables a record's SQL reads, described once per worker.

    DDL files are parsed at construction; a live database is asked once per (URL, table)
    for columns (``table_schema.introspect_table``) and, with ``sample_rows``, for that many
    rows (``SELECT * FROM t LIMIT n``, read-only through the Executor contract). Failures
    only leave a table out: a schema is context, not a requirement.
    """

    def __init__(self, source: SchemaSource):
        self.source = source
        self._ddl = load_ddl(source.patterns, source.dialect)
        self._live: dict[tuple[str, str], Optional[table_schema.Table]] = {}
        self._executors = None
        self._databases = None
        if source.database:
            from adapters.db import DatabaseMap
            from transforms.kit.executors import ExecutorSet

            self._databases = DatabaseMap.parse(source.database)
            self._executors = ExecutorSet(dict(source.database_settings, max_connections=1))
        self._prompt = schema_prompt.PromptSchema(source.prompt, self._ddl, self._live_table,
                                                  lambda url: self._executors.get(url))

    def _live_table(self, url: str, name: str) -> Optional[table_schema.Table]:
        key = (url, table_schema.table_key(name))
        if key not in self._live:
            try:
                executor = self._executors.get(url)
                table = table_schema.introspect_table(executor, name)
                if table is not None:
                    table = table._replace(samples=self._samples(executor, name))
                self._live[key] = table
            except Exception as error:  # noqa: BLE001 - the schema is context, not a requirement
                _LOGGER.warning("cannot describe table %s: %s", name, type(error).__name__)
                self._live[key] = None
        return self._live[key]

    def _samples(self, executor: Any, name: str) -> tuple[tuple[str, ...], ...]:
        count = self.source.sample_rows
        if count <= 0:
            return ()
        from sqlglot import exp

        dialect = getattr(executor, "dialect", None) or "postgres"
        try:
            sql = exp.select("*").from_(exp.to_table(name, dialect=dialect)).limit(count).sql(dialect=dialect)
            _, rows = executor.fetch_rows(sql)
        except Exception as error:  # noqa: BLE001 - samples are optional
            _LOGGER.debug("no sample rows for %s: %s", name, error)
            return ()
        return tuple(tuple(sample_value_text(v) for v in row) for row in rows[:count])

    def tables(self, record: Record) -> list[table_schema.Table]:
        """The described tables among ``record.tables``, in the record's order, each once."""
        url = self._databases.url_for(record.db_id) if self._databases is not None else None
        live = (lambda name: self._live_table(url, name)) if url is not None else None
        return table_schema.collect_tables(record.tables, self._ddl, live)

    def schema_text(self, record: Record) -> str:
        """The DDL of the record's tables (and others, by ``--prompt_schema``), as the prompts show it."""
        url = self._databases.url_for(record.db_id) if self._databases is not None else None
        return self._prompt.text(record.id, record.question or "", self.tables(record), url, self.source.sample_rows)

    def close(self) -> None:
        if self._executors is not None:
            self._executors.close()


# ---------------------------------------------------------------------------------------------
# Beam: records → examples → shard sets
# ---------------------------------------------------------------------------------------------


class _ToExampleFn(beam.DoFn):
    """Pair → ``TrainingExample`` (pairs without a question are counted, not exported)."""

    SKIPPED = "skipped"

    def __init__(self, source: SchemaSource, sft_target: str = "sql"):
        self.source = source
        self.sft_target = sft_target

    def setup(self) -> None:
        self._lookup = SchemaLookup(self.source)

    def process(self, record: Record) -> Iterator:
        if not record.question:
            yield beam.pvalue.TaggedOutput(self.SKIPPED, "export:skipped:no_question")
            return
        example = training_example(record, self._lookup.schema_text(record))
        if self.sft_target == "reasoning" and record.reasoning:  # the --cot trace, then its SQL fenced
            example = example._replace(**reasoning_fields(example.system, example.prompt, example.completion, record))
        yield example

    def teardown(self) -> None:
        lookup = getattr(self, "_lookup", None)
        if lookup is not None:
            lookup.close()


def _stage_filter(stage_by: str, stage: str, meta_of: Callable[[Any], Mapping[str, Any]]):
    def keep(element: Any) -> bool:
        return stage_of(meta_of(element), stage_by) == stage

    return keep


def write_set(elements, *, label: str, output: str, fmt: str, num_shards: int, to_row: Callable[[Any], dict],
              to_line: Callable[[Any], str], sort_key: Callable[[Any], str], parquet: bool, stage_by: Optional[str],
              meta_of: Callable[[Any], Mapping[str, Any]], full_jsonl: bool = True) -> list:
    """Write ``elements`` as format ``fmt``: the full set and, with ``stage_by``, one set per stage.

    ``full_jsonl=False`` leaves the full set's JSONL to someone else (the graph writes the
    canonical pairs, ``transforms.publish.training`` the DPO pairs) and its count to them too.
    Returns PCollections of ``export:<set name>`` strings, one per row of each set written
    here, for the training report.
    """
    from transforms.kit.write import WriteJsonShards

    counts = []
    sets: list[tuple[Optional[str], Any]] = [(None, elements)]
    if stage_by:
        for stage in DIFFICULTY_STAGES:
            staged = elements | f"{label}_{stage}_Select" >> beam.Filter(_stage_filter(stage_by, stage, meta_of))
            sets.append((stage, staged))
    for stage, members in sets:
        jsonl = full_jsonl or stage is not None
        if not (jsonl or parquet):
            continue
        name = set_name(fmt, stage)
        step = f"{label}_{stage or 'all'}"
        if jsonl:
            members | f"{step}_Jsonl" >> WriteJsonShards(set_prefix(output, fmt, stage), num_shards, to_line, sort_key)
        if parquet:
            members | f"{step}_Parquet" >> WriteParquetShards(
                set_prefix(output, fmt, stage, PARQUET_KIND), num_shards, to_row, sort_key, SCHEMAS[fmt])
        if stage is not None or full_jsonl:
            counts.append(members | f"{step}_Count" >> beam.Map(lambda _, n=name: f"export:{n}"))
    return counts


class ExportSettings(NamedTuple):
    """What ``WriteExports`` writes, resolved from ``--format``, ``--stage_by`` and ``--sft_sample_rows``."""

    output: str
    num_shards: int = 1
    formats: tuple[str, ...] = ("pairs",)
    parquet: bool = False
    stage_by: Optional[str] = None
    schema: SchemaSource = SchemaSource()
    record_timings: bool = False
    sft_target: str = "sql"  # or "reasoning": the --cot trace, then the SQL fenced (transforms.publish.sft_target)


def _pair_line(record_timings: bool) -> Callable[[Record], str]:
    from transforms.core.record import record_to_json, without_timings

    if record_timings:
        return record_to_json
    return lambda record: record_to_json(without_timings(record))


def _pair_row(record_timings: bool) -> Callable[[Record], dict]:
    from transforms.core.record import without_timings

    if record_timings:
        return pair_row
    return lambda record: pair_row(without_timings(record))


def _record_key(record: Record) -> str:
    return record.id


def _record_meta(record: Record) -> Mapping[str, Any]:
    return {"difficulty": record.difficulty, "exec_difficulty": record.extra.get("exec_difficulty")}


def _row_meta(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return row["meta"]


def _row_key(row: Mapping[str, Any]) -> str:
    return row["id"]


def _identity(row: Any) -> Any:
    return row


def _label(fmt: str) -> str:
    return "Export" + "".join(part.title() for part in fmt.split("-"))


def _dpo_chat_rows(joined: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[dict[str, Any]]:
    """One record's DPO pairs in the conversational format (none when the record has no example)."""
    _, groups = joined
    # one example per record id; sorted, so a duplicated id would still pick the same one every run
    examples = sorted(groups["examples"], key=lambda example: (example.system, example.user))
    if examples:
        for dpo in groups["dpo"]:
            yield dpo_chat_row(examples[0], dpo)


class WriteExports(beam.PTransform):
    """``{"pairs": records, "dpo": dpo rows or None, "with_context": records}`` → the shard sets
    ``settings`` names.

    ``with_context`` (optional; default ``pairs``) are the same pairs with each chat pair's
    earlier turns in ``context`` (``--context full`` keeps them out of the pairs and stores
    each conversation once; ``transforms.publish.conversations.WithFullContext`` puts them back): the
    formats rendered from a ``TrainingExample`` are made from them, the ``pairs`` copies from
    ``pairs``.

    The full JSONL sets of ``pairs`` (the graph) and ``dpo`` (``transforms.publish.training``) are
    written elsewhere; this adds their Parquet copies and staged sets, and every set of the
    other formats (``dpo-chat`` joins each DPO pair to its record's ``TrainingExample`` by
    record id, so its prompt is that pair's ``sft-chat`` system and user messages). Outputs the
    ``export:<set>`` strings the training report counts.
    """

    def __init__(self, settings: ExportSettings):
        super().__init__()
        self.settings = settings

    def expand(self, inputs):
        s = self.settings
        records, dpo = inputs["pairs"], inputs.get("dpo")
        counts = []
        common = dict(output=s.output, num_shards=s.num_shards, parquet=s.parquet, stage_by=s.stage_by)
        if "pairs" in s.formats and (s.parquet or s.stage_by):
            counts += write_set(records, label="ExportPairs", fmt="pairs", to_row=_pair_row(s.record_timings),
                                to_line=_pair_line(s.record_timings), sort_key=_record_key,
                                meta_of=_record_meta, full_jsonl=False, **common)
        wanted = [f for f in EXAMPLE_FORMATS if f in s.formats]
        dpo_chat = "dpo-chat" in s.formats and dpo is not None
        if wanted or dpo_chat:
            with_context = inputs.get("with_context", records)  # --context full: earlier turns joined back
            to_examples = _ToExampleFn(s.schema, s.sft_target)
            examples = with_context | "ToTrainingExamples" >> beam.ParDo(to_examples).with_outputs(
                _ToExampleFn.SKIPPED, main="examples")
            counts.append(examples[_ToExampleFn.SKIPPED])
            builders = {"sft-chat": sft_chat_row, "prompt-completion": prompt_completion_row,
                        "prompt-completion-chat": prompt_completion_chat_row}
            for fmt in wanted:
                label = _label(fmt)
                rows = examples.examples | f"{label}_Rows" >> beam.Map(builders[fmt])
                counts += write_set(rows, label=label, fmt=fmt, to_row=_identity, to_line=row_line,
                                    sort_key=_row_key, meta_of=_row_meta, **common)
        if "dpo" in s.formats and dpo is not None:
            counts += write_set(dpo, label="ExportDpo", fmt="dpo", to_row=_identity, to_line=row_line,
                                sort_key=_row_key, meta_of=_row_meta, full_jsonl=False, **common)
        if dpo_chat:
            rows = {"examples": examples.examples | "ExamplesByRecord" >> beam.Map(lambda e: (e.id, e)),
                    "dpo": dpo | "DpoByRecord" >> beam.Map(lambda r: (r["meta"]["record_id"], r))}
            chat = rows | "JoinDpoAndExamples" >> beam.CoGroupByKey() | "DpoChatRows" >> beam.FlatMap(_dpo_chat_rows)
            counts += write_set(chat, label=_label("dpo-chat"), fmt="dpo-chat", to_row=_identity, to_line=row_line,
                                sort_key=_row_key, meta_of=_row_meta, **common)
        if not counts:
            return records.pipeline | "NoExports" >> beam.Create([], reshuffle=False)
        return counts | "AllExportCounts" >> beam.Flatten()
