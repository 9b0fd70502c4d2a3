"""Pipeline options: one table of our options, used by argparse, --help and metadata.json.

``OPTION_SPECS`` is the single source of truth. ``SqlPairsOptions`` registers every
entry with Beam's argparse (underscore names, as Beam and Flex Templates need), and
``templates/metadata.json`` is generated from the same table
(``python -m pipeline metadata``) — a test proves the two never drift.

Every Beam option (``--runner``, ``--direct_running_mode``, ``--direct_num_workers``,
``--project``, ...) passes through untouched.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NamedTuple, Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.core.vocab import DIFFICULTIES

DEDUP_STRATEGIES = ("sql-only", "exact", "question-only", "template", "none")
VALIDATE_MODES = ("execute", "parse", "none")
SQL_LOG_FORMATS = ("auto", "sql", "jsonl", "json", "csv", "parquet", "pg_csvlog", "defog", "pg_stat_statements")
WEIGHTS = ("none", "frequency")
LLM_BACKENDS = ("rules", "gemini", "openai")


def parse_bool(value: Any) -> bool:
    """Accept ``--flag``, ``--flag=true`` and ``--flag=false`` (Flex Templates pass values)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive number, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return number


def _context_mode(value: str) -> str:
    """A ``--context`` value; ``window:N`` needs N >= 1 (``none`` keeps no turn).

    >>> _context_mode("window:3")
    'window:3'
    >>> _context_mode("window:0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected none, full, last, segmented or window:N with N >= 1, got 'window:0'
    """
    if value in ("none", "full", "last", "segmented") or re.fullmatch(r"window:[1-9][0-9]*", value):
        return value
    raise argparse.ArgumentTypeError(f"expected none, full, last, segmented or window:N with N >= 1, got {value!r}")


class OptionSpec(NamedTuple):
    """One pipeline option: its flag, help text and how argparse should read it."""

    name: str
    help: str
    label: str
    default: Any = None
    type: Any = str
    choices: Optional[Sequence[str]] = None
    regex: Optional[str] = None
    flag: bool = False  # a boolean that may be given bare (--name) or as --name=true/false


OPTION_SPECS: tuple[OptionSpec, ...] = (
    # --- inputs -------------------------------------------------------------------
    OptionSpec("sql_logs", "SQL logs to read: a glob or comma-separated globs of .sql (statements split "
               "with sqlglot's tokenizer), .jsonl/.json, .csv or .parquet files, or PostgreSQL csvlog "
               "files with --sql_logs_format pg_csvlog, or exports of pg_stat_statements (CSV/JSONL with "
               "query, calls, ...; --sql_logs_format pg_stat_statements). Any Beam filesystem path (gs:// too). "
               "The word pg_stat_statements reads that view live from --database (a PostgreSQL URL).",
               "SQL log files"),
    OptionSpec("sql_logs_format", "Format of --sql_logs files; 'auto' picks by file extension.",
               "SQL log format", default="auto", choices=SQL_LOG_FORMATS),
    OptionSpec("sql_field", "Field (JSON/CSV/Parquet column) holding the SQL in --sql_logs and --seed_pairs.",
               "SQL field", default="sql"),
    OptionSpec("question_field", "Field holding a natural-language question, if the logs have one "
               "(--seed_pairs read 'question' when this is not given).",
               "Question field"),
    OptionSpec("db_id_field", "Field naming the database a logged query ran on (matched against "
               "--database db_id=URL entries; --seed_pairs read 'db_id' when this is not given).",
               "Database id field"),
    OptionSpec("max_sql_bytes", "Largest input item read, in bytes (one SQL statement, one JSON/CSV/Parquet "
               "record or one chat message), checked before parsing: a larger one is a dead letter "
               "(sql_too_long) and reading it never holds more than a bounded buffer.", "Input item byte cap",
               default=1_048_576, type=_positive_int),
    OptionSpec("chat_history", "Chat histories with an analytics agent: a glob of JSON arrays or JSONL of "
               "messages (Vercel AI SDK UIMessage parts or OpenAI tool_calls).", "Chat history files"),
    OptionSpec("tool_name", "Name of the agent tool whose 'sql' argument is extracted from chat histories.",
               "SQL tool name", default="db_query"),
    OptionSpec("include_failures", "Also read chat tool calls that ended in an error (as records with "
               "success: false, which the filter then drops unless --keep_failures). Without it they are "
               "dead letters of the read stage.", "Include failed tool calls",
               default=False, type=parse_bool, flag=True),
    OptionSpec("context", "Conversation context kept with chat pairs: last (the one turn before the question), "
               "none, window:N (the N >= 1 preceding turns), full (every earlier turn, stored once in "
               "PREFIX-conversations-*.jsonl; each pair names its extra.conversation_id and extra.turn, and its "
               "context is turns[:turn] there), or segmented (a model decides whether each question starts a new "
               "topic and rewrites follow-ups as standalone questions; needs --llm gemini|openai).",
               "Chat context", default="last", type=_context_mode,
               regex="^(none|full|last|segmented|window:[1-9][0-9]*)$"),
    OptionSpec("seed_pairs", "Existing question/SQL pairs: a glob of JSONL/CSV files; Defog sql-eval CSVs "
               "(columns question, query, db_name) are recognised and their alternatives expanded.",
               "Seed pair files"),
    OptionSpec("schema", "DDL files describing the database (a glob, parsed with sqlglot). Without it the "
               "schema is introspected from --database when one is given.", "Schema DDL files"),
    # --- parameterized logs -------------------------------------------------------------
    OptionSpec("seed", "Seed of every sampled choice (placeholder values, which pairs a template keeps): "
               "the same input, options and seed give the same output.", "Random seed", default=0, type=int,
               regex="^-?[0-9]+$"),
    OptionSpec("instances_per_template", "Queries made from each logged template with placeholders ($1, ?, "
               ":name, @var, ##Name##), each filled with real values sampled from --database.",
               "Instances per template", default=1, type=_positive_int, regex="^[1-9][0-9]*$"),
    OptionSpec("weight_by", "'frequency' gives often-run templates more instances (k x frequency / mean "
               "frequency) and prefers frequent pairs when --max_per_template cuts a template down.",
               "Weight by", default="none", choices=WEIGHTS),
    OptionSpec("max_per_template", "Keep at most this many distinct pairs per query template (same SQL with "
               "literals and placeholders masked), chosen by seeded sampling.", "Maximum pairs per template",
               type=_positive_int, regex="^[1-9][0-9]*$"),
    # --- databases ------------------------------------------------------------------
    OptionSpec("database", "Database(s) to validate against: a URL (sqlite:///path.db, duckdb:///path.duckdb, "
               "postgresql://user@host:port/db, mysql://user@host:port/db), or db_id=URL pairs separated by "
               "commas, or a URL containing {db_id}. Never put a password here: use --database_password_env.",
               "Database URL"),
    OptionSpec("database_password_env", "Name of an environment variable holding the database password "
               "(the password itself never appears on the command line, in records or in logs).",
               "Password environment variable", regex="^[A-Za-z_][A-Za-z0-9_]*$"),
    OptionSpec("source_dialect", "sqlglot dialect the input SQL is written in (postgres, mysql, sqlite, "
               "duckdb, tsql, bigquery, snowflake, ...). Default: the --dialect, else the database's.",
               "Source SQL dialect"),
    OptionSpec("dialect", "sqlglot dialect of the output SQL; input is transpiled when it differs from "
               "--source_dialect. Default: the database's dialect, else the source dialect, else postgres.",
               "Target SQL dialect"),
    OptionSpec("validate", "How to validate SQL: 'execute' runs it read-only on --database (the default "
               "when one is given), 'parse' only parses it (the default otherwise), 'none' skips checks "
               "beyond parsing needed for normalization.", "Validation mode", choices=VALIDATE_MODES),
    OptionSpec("timeout_s", "Per-query execution time limit in seconds, enforced by the database.",
               "Query timeout (s)", default=5.0, type=_positive_float),
    OptionSpec("max_rows", "Rows fetched per query at most (the result hash covers the capped rows).",
               "Row cap", default=10000, type=_positive_int),
    OptionSpec("max_result_bytes", "Bytes of result rows kept per query at most (their text size as hashed); "
               "rows past the cap are not kept and the result is marked truncated, so a worker holds at most "
               "--max_connections x this in results.", "Result byte cap", default=16_777_216,
               type=_positive_int),
    OptionSpec("max_connections", "Concurrent queries per worker process, and database connections open "
               "per worker process at most, over all databases together. Default: 4 per CPU core.",
               "Connections per worker", type=_positive_int),
    # --- LLM ---------------------------------------------------------------------------
    OptionSpec("llm", "Who writes questions for SQL that has none: 'rules' (offline, deterministic), "
               "'gemini' (Gemini via google-genai: Vertex AI with --llm_project, else the Gemini API with "
               "--llm_api_key_env) or 'openai' (any OpenAI-compatible /v1/chat/completions endpoint: OpenAI, "
               "vLLM, Ollama, llama.cpp server).", "Question writer", default="rules", choices=LLM_BACKENDS),
    OptionSpec("llm_model", "Model name. Default: gemini-2.5-flash for gemini, gpt-4o-mini for openai.",
               "LLM model"),
    OptionSpec("llm_endpoint", "Base URL of the model API: an OpenAI-compatible server "
               "(http://127.0.0.1:8080/v1), or a Gemini/Vertex AI endpoint or gateway. Default: the "
               "provider's public endpoint.", "LLM endpoint"),
    OptionSpec("llm_project", "Google Cloud project for Gemini on Vertex AI (credentials: Application "
               "Default Credentials, i.e. the worker's service account on Dataflow).", "Vertex AI project"),
    OptionSpec("llm_location", "Vertex AI location of the Gemini model (default: us-central1).",
               "Vertex AI location"),
    OptionSpec("llm_api_key_env", "Name of an environment variable holding the model API key, read on the "
               "workers (the key itself never appears on the command line, in records or in logs). Local "
               "servers need none.", "API key environment variable", regex="^[A-Za-z_][A-Za-z0-9_]*$"),
    OptionSpec("llm_temperature", "Sampling temperature of question writing.", "LLM temperature",
               default=0.7, type=_non_negative_float),
    OptionSpec("llm_max_in_flight", "Concurrent model requests per worker process; throughput approaches "
               "this number divided by the model's latency.", "LLM requests in flight", default=16,
               type=_positive_int),
    OptionSpec("llm_rpm", "Model calls per minute per worker process at most (evenly paced). Default: "
               "no limit beyond --llm_max_in_flight.", "LLM calls per minute", type=_positive_float),
    OptionSpec("llm_retries", "Retries of one model request on 429, 5xx, timeouts and unreadable replies, "
               "with exponential backoff from --llm_backoff_s.", "LLM retries", default=4, type=_non_negative_int),
    OptionSpec("llm_backoff_s", "First retry delay in seconds; doubles per retry up to 30 s (a server's "
               "Retry-After is honoured).", "LLM retry backoff (s)", default=1.0, type=_positive_float),
    OptionSpec("llm_timeout_s", "Time limit of one model request in seconds: connect, send and the whole reply "
               "(not each network read); a request past it is retried.", "LLM request timeout (s)",
               default=60.0, type=_positive_float),
    OptionSpec("llm_cache", "Directory or gs:// prefix caching model replies by (backend, model, prompt, "
               "parameters, sample): a re-run makes no model calls and writes identical output.", "LLM cache"),
    OptionSpec("llm_price_in", "Price in USD per million input tokens, for the report's cost estimate.",
               "Input token price (USD/1M)", default=0.0, type=_non_negative_float),
    OptionSpec("llm_price_out", "Price in USD per million output tokens, for the report's cost estimate.",
               "Output token price (USD/1M)", default=0.0, type=_non_negative_float),
    OptionSpec("questions_per_sql", "Candidate questions written per SQL query; the most central one is "
               "kept (OmniSQL's selection).", "Questions per SQL", default=1, type=_positive_int),
    OptionSpec("question_styles", "Comma-separated question styles, one picked per query from its id: "
               "formal, colloquial, imperative, interrogative, descriptive, concise, vague, metaphorical, "
               "conversational, or 'all'. Default: none (plain questions).", "Question styles",
               regex="^(all|[a-z]+(,[a-z]+)*)$"),
    # --- synthesis and evolution (need a model: --llm gemini|openai, and --database) -------
    OptionSpec("personas", "Personas generated per database from its schema ({role, perspective, styles}); "
               "synthesized questions are written in their voices. Written to PREFIX-personas.json, which you "
               "can edit and pass back with --personas_file.", "Personas", default=0, type=_non_negative_int,
               regex="^[0-9]+$"),
    OptionSpec("personas_file", "JSON personas to use instead of generating them: a list of {role, perspective, "
               "styles} (styles: 1 to 3 of the nine question styles; an optional db_id limits one to a database).",
               "Personas file"),
    OptionSpec("teachings", "JSON teachings (glossary terms, hints, guardrails) included in every generation "
               "prompt. Without it they are built from the schema, the logs' most frequent join/filter/aggregation "
               "patterns and the model, and written to PREFIX-teachings.json for you to edit and pass back.",
               "Teachings file"),
    OptionSpec("synthesize_from_schema", "New pairs written by the model from the schema: this many per persona x "
               "complexity level (simple, moderate, complex, highly complex) x curriculum concept (date functions, "
               "window functions, CTEs, ratios, NULL handling, string functions, ...). Every SQL is executed.",
               "Pairs per persona, level and concept", default=0, type=_non_negative_int, regex="^[0-9]+$"),
    OptionSpec("max_repairs", "Times a synthesized or evolved SQL that fails on the database goes back to the "
               "model with the error before it becomes a dead letter.", "SQL repair attempts", default=2,
               type=_non_negative_int, regex="^[0-9]+$"),
    OptionSpec("breadth", "Paraphrases per validated pair (Evol-Instruct in breadth): same SQL, questions in "
               "different styles; originals are kept. Needs --dedup exact.", "Paraphrases per pair", default=0,
               type=_non_negative_int, regex="^[0-9]+$"),
    OptionSpec("depth", "Harder pairs per validated pair (Evol-Instruct in depth): the model rewrites question "
               "and SQL with one of --depth_techniques; the new SQL must execute.", "Harder pairs per pair",
               default=0, type=_non_negative_int, regex="^[0-9]+$"),
    OptionSpec("depth_techniques", "Comma-separated in-depth techniques, spread over each pair's --depth "
               "rewrites: add-aggregation, add-filter, add-join, add-reasoning, hypothetical, add-window, "
               "add-cte, or 'all'.", "Depth techniques", default="all", regex="^(all|[a-z-]+(,[a-z-]+)*)$"),
    OptionSpec("consistency", "Round-trip check of every final pair: a model (--consistency_llm*) writes SQL for "
               "the question without seeing the pair's SQL; both run; the pair is kept only if the results "
               "match. The verdict and the model's SQL are recorded in extra.", "Round-trip consistency",
               default=False, type=parse_bool, flag=True),
    OptionSpec("consistency_llm", "Backend of the round-trip model (default: --llm). A different backend does "
               "not inherit --llm_model, --llm_endpoint or --llm_api_key_env.", "Consistency model backend",
               choices=LLM_BACKENDS),
    OptionSpec("consistency_llm_model", "Round-trip model name (default: --llm_model for the same backend, else "
               "the backend's default).", "Consistency model"),
    OptionSpec("consistency_llm_endpoint", "Base URL of the round-trip model's API (default: --llm_endpoint for "
               "the same backend).", "Consistency model endpoint"),
    OptionSpec("consistency_llm_api_key_env", "Name of an environment variable holding the round-trip model's "
               "API key (default: --llm_api_key_env for the same backend).",
               "Consistency API key environment variable", regex="^[A-Za-z_][A-Za-z0-9_]*$"),
    # --judge and --evidence (transforms/validate/judge.py, transforms/generate/evidence.py): once per final pair
    OptionSpec("judge", "Score every final pair with a judge model (--judge_llm*): question fluency, question-SQL "
               "alignment (every condition of the SQL asked for, nothing extra) and schema use, each 0-4, from the "
               "question, the SQL and the schema only. The scores are recorded in extra.judge (JSON text) with the "
               "judge's reason in extra.judge_reason; a pair the judge cannot score (no usable reply) is a dead "
               "letter. One request per final pair. Needs --database.", "Judge pairs",
               default=False, type=parse_bool, flag=True),
    OptionSpec("judge_min", "With --judge: a pair whose lowest score (of fluency, alignment and schema use) is "
               "under this becomes a dead letter (stage judge, reason below_min, the scores in its detail).",
               "Judge minimum score", choices=("0", "1", "2", "3", "4")),
    OptionSpec("judge_llm", "Backend of the judge model (default: --llm). A different backend does not inherit "
               "--llm_model, --llm_endpoint or --llm_api_key_env.", "Judge model backend", choices=LLM_BACKENDS),
    OptionSpec("judge_llm_model", "Judge model name (default: --llm_model for the same backend, else the "
               "backend's default).", "Judge model"),
    OptionSpec("judge_llm_endpoint", "Base URL of the judge model's API (default: --llm_endpoint for the same "
               "backend).", "Judge model endpoint"),
    OptionSpec("judge_llm_api_key_env", "Name of an environment variable holding the judge model's API key "
               "(default: --llm_api_key_env for the same backend).", "Judge API key environment variable",
               regex="^[A-Za-z_][A-Za-z0-9_]*$"),
    OptionSpec("evidence", "Write BIRD-style evidence for every final pair whose question relies on domain terms "
               "or vague values ('active customer refers to active = 1'): the --llm model reads the question, the "
               "SQL, the schema and the teachings; a question that needs none gets none. Stored as the pair's "
               "evidence and rendered into every export's prompt. Evidence that names nothing of the pair's "
               "schema or values, or that writes a query, makes the pair a dead letter (stage evidence). One "
               "request per final pair. Needs --database and --llm gemini|openai.", "Evidence",
               default=False, type=parse_bool, flag=True),
    # --cot (transforms/publish/cot.py): N execution-voted step-by-step solutions per final pair
    OptionSpec("cot", "Chain of thought, voted by execution (OmniSQL): a model (--cot_llm*) writes this many "
               "step-by-step solutions per final pair from the question and the schema prompt, never the pair's "
               "SQL, at --cot_temperature; each solution's SQL goes through the read-only guard and runs on "
               "--database, and its result is a vote. The pair is kept when the gold's result has more votes than "
               "any other result and at least --cot_min_valid solutions ran: it then carries reasoning (the "
               "shortest trace whose SQL gave the gold's result), extra.cot (JSON text: n, valid, solved, the "
               "votes per result hash), extra.cot_sql, extra.solve_rate and extra.exec_difficulty (the solve "
               "rate as a level: DataFlow's thresholds 2/5/9 of 10). Else it is a dead letter (stage cot, "
               "reason majority_disagrees with the vote table, or too_few_valid). N requests per final pair; "
               "0: off.", "Chain-of-thought solutions per pair", default=0, type=_non_negative_int,
               regex="^[0-9]+$"),
    OptionSpec("cot_min_valid", "With --cot: solutions that must have run (parsed, passed the guard, executed) "
               "for a pair's vote to count; fewer make the pair a dead letter (too_few_valid).",
               "Minimum valid solutions", default=3, type=_positive_int, regex="^[1-9][0-9]*$"),
    OptionSpec("cot_temperature", "With --cot: sampling temperature of the solutions, high enough for them to "
               "differ (OmniSQL's 0.8).", "Chain-of-thought temperature", default=0.8, type=_non_negative_float),
    OptionSpec("cot_llm", "Backend of the --cot model (default: --llm). A different backend does not inherit "
               "--llm_model, --llm_endpoint or --llm_api_key_env.", "Chain-of-thought model backend",
               choices=LLM_BACKENDS),
    OptionSpec("cot_llm_model", "The --cot model's name (default: --llm_model for the same backend, else the "
               "backend's default).", "Chain-of-thought model"),
    OptionSpec("cot_llm_endpoint", "Base URL of the --cot model's API (default: --llm_endpoint for the same "
               "backend).", "Chain-of-thought model endpoint"),
    OptionSpec("cot_llm_api_key_env", "Name of an environment variable holding the --cot model's API key "
               "(default: --llm_api_key_env for the same backend).", "Chain-of-thought API key environment variable",
               regex="^[A-Za-z_][A-Za-z0-9_]*$"),
    OptionSpec("cot_dpo_limit", "With --cot and --format dpo-reasoning: reasoning-level DPO pairs per kept pair "
               "(ExCoT), at most. Each pairs the kept trace (chosen) with one of the same vote's traces whose SQL "
               "gave another result, failed, or did not pass the guard (rejected), in that order, then by sample "
               "index; a vote with no such trace gives none. No extra request: the traces are the --cot "
               "solutions already written.", "Reasoning DPO pairs per pair", default=1, type=_positive_int,
               regex="^[1-9][0-9]*$"),
    OptionSpec("near_dup_threshold", "With --dedup exact or question-only: questions of one SQL whose word "
               "shingles have an estimated (MinHash) Jaccard similarity of at least this are merged as "
               "duplicates.", "Near-duplicate threshold", default=0.8, type=_fraction,
               regex="^(0?[.][0-9]+|1([.]0+)?)$"),
    # --- filtering and dedup ----------------------------------------------------------
    OptionSpec("dedup", "Duplicate merging: sql-only (same database and normalized SQL), exact (same "
               "question too), question-only, template (same SQL with literals masked), none.",
               "Dedup strategy", default="sql-only", choices=DEDUP_STRATEGIES),
    OptionSpec("keep_failures", "Keep records whose input marked them failed or whose execution failed "
               "(written with success: false) instead of dead-lettering them.", "Keep failures",
               default=False, type=parse_bool, flag=True),
    OptionSpec("tables", "Keep only pairs whose SQL references at least one of these tables "
               "(comma-separated, case-insensitive).", "Table filter"),
    OptionSpec("min_difficulty", "Drop pairs easier than this Spider hardness level.", "Minimum difficulty",
               choices=DIFFICULTIES),
    OptionSpec("max_difficulty", "Drop pairs harder than this Spider hardness level.", "Maximum difficulty",
               choices=DIFFICULTIES),
    OptionSpec("drop_empty_results", "Drop pairs whose executed SQL returned no rows.", "Drop empty results",
               default=False, type=parse_bool, flag=True),
    OptionSpec("filter", "A custom predicate package.module:function taking a record and returning True "
               "to keep it (the module must be importable on the workers).", "Custom filter",
               regex="^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"),
    # --decontaminate (transforms/select/decontaminate.py, transforms/sql/benchmark_index.py): benchmark items out
    OptionSpec("decontaminate", "Benchmark files to keep out of the output: a glob or comma-separated globs of "
               "Spider/BIRD .json (a list of {question, query|SQL, db_id}), Defog sql-eval .csv (question, query; "
               "alternatives expanded) or pairs .jsonl ({question, sql}, e.g. this job's own output); .gz/.bz2 "
               "read too. A final pair whose normalized SQL equals a benchmark item's SQL (normalized the same "
               "way, from SQLite for .json, the db_type or file name for .csv, the line's dialect or "
               "--source_dialect for .jsonl) becomes a dead letter (stage decontaminate, reason benchmark_sql), "
               "as does one whose question contains a benchmark question (reason benchmark_question, see "
               "--decontaminate_threshold); the detail names the item (file#id or file#position) and the "
               "score. Checked after dedup, before --consistency and --max_per_template. A file that matches "
               "nothing or cannot be read is refused before the run; benchmark SQL that cannot be parsed is "
               "counted in the report, and its question still checked.", "Benchmark files"),
    OptionSpec("decontaminate_threshold", "With --decontaminate: the word 8-gram containment of a benchmark "
               "question in a pair's question (the share of the benchmark question's 8-word sequences, "
               "case and punctuation ignored, that occur in the pair's question) at which the pair is a copy. "
               "A benchmark question under 8 words matches only the same words.", "Decontamination threshold",
               default=0.8, type=_fraction, regex="^(0?[.][0-9]+|1([.]0+)?)$"),
    # --- preference data and training exports ------------------------------------------
    OptionSpec("preference", "Build DPO preference pairs the SENSE way: a weak model (--weak_llm) writes --samples "
               "SQL queries per final pair; each is executed and labelled correct, wrong_result, exec_error, "
               "timeout or unparseable against the gold result; correct vs incorrect samples become the dpo "
               "set (PREFIX-dataset/jsonl/dpo/) {prompt, chosen, rejected, meta}. Each pair also gets "
               "extra.weak_solve_rate (correct / samples, unlabelled ones left out) and, unless --cot set them, "
               "extra.solve_rate and extra.exec_difficulty. Needs --database.",
               "Preference pairs",
               default=False, type=parse_bool, flag=True),
    OptionSpec("samples", "SQL queries sampled from the weak model per question (--preference).",
               "Samples per question", default=4, type=_positive_int, regex="^[1-9][0-9]*$"),
    OptionSpec("weak_llm", "The weak model of --preference: 'openai' (any OpenAI-compatible endpoint: a local "
               "llama.cpp/vLLM/Ollama server with --weak_llm_endpoint) or 'gemini'. Retries, timeouts, "
               "concurrency, rate and cache follow the --llm_* options.", "Weak model backend",
               choices=("openai", "gemini")),
    OptionSpec("weak_llm_model", "Weak model name (default: gemini-2.5-flash for gemini, gpt-4o-mini for openai).",
               "Weak model"),
    OptionSpec("weak_llm_endpoint", "Base URL of the weak model's API (http://127.0.0.1:8080/v1 for a local "
               "server).", "Weak model endpoint"),
    OptionSpec("weak_llm_project", "Google Cloud project for a Gemini weak model on Vertex AI.",
               "Weak model Vertex AI project"),
    OptionSpec("weak_llm_location", "Vertex AI location of a Gemini weak model (default: us-central1).",
               "Weak model Vertex AI location"),
    OptionSpec("weak_llm_api_key_env", "Name of an environment variable holding the weak model's API key (read "
               "on the workers; local servers need none).", "Weak model API key environment variable",
               regex="^[A-Za-z_][A-Za-z0-9_]*$"),
    OptionSpec("weak_temperature", "Sampling temperature of the weak model: high enough for its samples to "
               "differ, so its mistakes show.", "Weak model temperature", default=0.8, type=_non_negative_float),
    OptionSpec("weak_llm_price_in", "Price in USD per million input tokens of the weak model (report only).",
               "Weak model input price (USD/1M)", default=0.0, type=_non_negative_float),
    OptionSpec("weak_llm_price_out", "Price in USD per million output tokens of the weak model (report only).",
               "Weak model output price (USD/1M)", default=0.0, type=_non_negative_float),
    OptionSpec("dpo_neg_filter", "Which incorrect samples may be rejected answers: all, exec_error (did not "
               "run: error, timeout, unparseable) or wrong_result (ran, wrong rows).", "DPO negative filter",
               default="all", choices=("all", "exec_error", "wrong_result")),
    OptionSpec("dpo_neg_limit", "Negatives (= pairs) per question, the first by sample index; 0 keeps all. "
               "SENSE's released data used 1.", "DPO negatives per question", default=1,
               type=_non_negative_int, regex="^[0-9]+$"),
    OptionSpec("dpo_keep_gold", "Also use the gold SQL as a chosen answer (first), so questions the weak model "
               "never got right still give pairs.", "Keep gold as chosen", default=False, type=parse_bool,
               flag=True),
    OptionSpec("dpo_dedup", "Drop negatives (and positives) whose normalized SQL repeats an earlier one "
               "(SENSE's default; --dpo_dedup=false keeps repeats).", "Deduplicate DPO answers",
               default=True, type=parse_bool, flag=True),
    OptionSpec("format", "Comma-separated output formats: pairs (the records, always written), sft-chat "
               "({messages: [system: DDL of the referenced tables, user: question, assistant: SQL]}), "
               "prompt-completion (prompt and SQL apart, for completion-only loss), prompt-completion-chat "
               "(TRL's conversational prompt/completion: prompt [system, user] as in sft-chat, completion "
               "[assistant]), dpo and dpo-chat (with --preference; dpo-chat is TRL's conversational preference "
               "format, prompt [system, user] as in sft-chat), dpo-reasoning (with --cot: ExCoT's reasoning-level DPO "
               "pairs, a verified trace chosen over a trace whose SQL failed or gave another result, up to "
               "--cot_dpo_limit per pair), and parquet (a Parquet copy of every set listed). "
               "Sets go to PREFIX-dataset/<jsonl|parquet>/<set>/.", "Output formats", default="pairs",
               regex="^[a-z-]+(,[a-z-]+)*$"),
    OptionSpec("stage_by", "Also write one shard set per level for staged training, easiest first "
               "(sets pairs-easy, sft-chat-hard, ... in PREFIX-dataset/): difficulty (Spider's hardness of the "
               "SQL) or exec_difficulty (DataFlow's levels of how often a model's samples solved the question: "
               "the --cot solutions, else the --preference weak model's; needs --cot or --preference).",
               "Stage by", choices=("difficulty", "exec_difficulty")),
    OptionSpec("sft_target", "What the completions of sft-chat, prompt-completion and prompt-completion-chat "
               "hold: sql (the query), or reasoning (the pair's --cot reasoning, then its SQL in a ```sql block; "
               "the system message asks for steps, and the prompt ends in ### Answer). reasoning needs --cot.",
               "SFT target", default="sql", choices=("sql", "reasoning")),
    OptionSpec("sft_sample_rows", "Sample rows per table shown (as comments) under the DDL in sft-chat, "
               "prompt-completion and DPO prompts; read from --database.", "Sample rows in prompts",
               default=0, type=_non_negative_int, regex="^[0-9]+$"),
    OptionSpec("prompt_schema", "The schema shown in sft-chat, prompt-completion and DPO prompts: referenced "
               "(the tables the SQL reads, every column: the prompts as before), full (every table of the "
               "database, listed from --database or else from --schema, with its column comments), or noisy "
               "(OmniSQL style, so a model learns to pick tables: the referenced tables plus 1-4 distractor "
               "tables, foreign-key neighbours first, each with its key columns and a tenth to all of its "
               "other columns; each column comment dropped with probability 0.3; up to 3 values per column "
               "that match the question's words, read from the first 2,000 rows of each shown table of "
               "--database). Noisy choices are seeded per pair by its id and --seed.", "Schema in prompts",
               default="referenced", choices=("referenced", "noisy", "full")),
    OptionSpec("input_licenses", "Licenses of the inputs, as free text for the dataset card (e.g. 'query logs: "
               "internal; Chinook: MIT').", "Input licenses"),
    # --- output ------------------------------------------------------------------------
    OptionSpec("output", "Output prefix: PREFIX-00000-of-0000N.jsonl (pairs), "
               "PREFIX-rejects-00000-of-0000N.jsonl (dead letters), PREFIX-report.json, and PREFIX-dataset/ (a "
               "Hugging Face dataset folder: the card and one folder per set). Refused before the run "
               "if a file it would write is one of the inputs, or if it cannot be written.",
               "Output prefix"),
    OptionSpec("num_shards", "Number of output shards for pairs and for dead letters.", "Shards",
               default=1, type=_positive_int),
    OptionSpec("html_report", "Also write PREFIX-report.html (plots of the funnel, rejections, difficulty, "
               "concepts, tokens; ~2 s of matplotlib after the run). Local runs only.", "HTML report",
               default=True, type=parse_bool, flag=True),
    OptionSpec("record_timings", "Write each query's execution.elapsed_ms into the output. Off by default, "
               "because timings differ between runs and the output is otherwise byte-identical for the "
               "same input and options.", "Record timings", default=False, type=parse_bool, flag=True),
    OptionSpec("progress", "Print a progress line on stderr every few seconds during a local run (records read, "
               "pairs, dead letters, model requests, rate, elapsed time). Default: only when stderr is a terminal; "
               "SQLPAIRS_PROGRESS=1|0 decides otherwise.", "Progress lines", type=parse_bool, flag=True),
)

OPTION_NAMES = tuple(spec.name for spec in OPTION_SPECS)

#: ``--help``'s sections in order: (title, the first option of the section in ``OPTION_SPECS``).
HELP_SECTIONS: tuple[tuple[str, str], ...] = (
    ("inputs", "sql_logs"),
    ("parameterized logs", "seed"),
    ("database and validation", "database"),
    ("questions and model", "llm"),
    ("synthesis and evolution", "personas"),
    ("filters and dedup", "dedup"),
    ("preference pairs and training exports", "preference"),
    ("output", "output"),
)


def option_sections() -> list[tuple[str, list[OptionSpec]]]:
    """``OPTION_SPECS`` cut into ``HELP_SECTIONS`` (every option in exactly one, in table order).

    >>> [(title, len(specs) > 0) for title, specs in option_sections()][:2]
    [('inputs', True), ('parameterized logs', True)]
    """
    starts = {first: title for title, first in HELP_SECTIONS}
    sections: list[tuple[str, list[OptionSpec]]] = []
    for spec in OPTION_SPECS:
        if spec.name in starts:
            sections.append((starts[spec.name], []))
        sections[-1][1].append(spec)
    return sections


class SqlPairsOptions(PipelineOptions):
    """The sqlpairs job's own options (see ``OPTION_SPECS``)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        for title, specs in option_sections():
            group = parser.add_argument_group(title) if hasattr(parser, "add_argument_group") else parser
            for spec in specs:
                _add_option(group, spec)


def _add_option(group: Any, spec: OptionSpec) -> None:
    """Register one option with argparse (a switch takes no value, or true/false after =)."""
    help_text = spec.help
    if spec.default not in (None, False):
        help_text += f" (default: {spec.default})"
    kwargs: dict[str, Any] = {"dest": spec.name, "default": spec.default, "help": help_text}
    if spec.flag:
        kwargs.update(nargs="?", const=True, type=spec.type)
    else:
        kwargs["type"] = spec.type
        if spec.choices:
            kwargs["choices"] = spec.choices
    group.add_argument(f"--{spec.name}", **kwargs)
