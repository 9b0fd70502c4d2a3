"""Entry point: ``sqlpairs run [options]`` (also ``python -m pipeline run``).

A user's mistake — a missing input, a bad URL, an unknown value, an unreachable
database, an output that cannot be written or would overwrite an input — is
reported as one line on stderr with exit status 2, before any pipeline starts;
never as a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence

from pipeline.errors import UserError
from pipeline.options import OPTION_NAMES, OPTION_SPECS, SqlPairsOptions, parse_bool

LOG = logging.getLogger("sqlpairs")

_DESCRIPTION = """\
Turn SQL query logs, chat histories with an analytics agent and existing question/SQL
pairs into validated, deduplicated, difficulty-labelled text-to-SQL training data.
Without --runner the job runs locally on Beam's in-process FnApiRunner (no download,
no network)."""

_USAGE = ("%(prog)s --output PREFIX [--sql_logs GLOB] [--chat_history GLOB] [--seed_pairs GLOB]\n"
          "                    [--database URL] [options] [Beam options]")

_BEAM_PASS_THROUGH = """\
Beam pass-through:
  Every Apache Beam pipeline option is accepted and handed to Beam unchanged;
  any other option is an error, and no name may be abbreviated. Common ones:
    --runner RUNNER          FnApiRunner (in-process, the default), DataflowRunner
    --direct_running_mode M  in_memory (default), multi_threading, multi_processing
    --direct_num_workers N   local workers (0: one per core)
    --project, --region, --temp_location, --staging_location, --job_name
                             where a Dataflow job runs and keeps its files
    --sdk_container_image, --setup_file, --requirements_file
                             what the Dataflow workers run
    --experiments, --max_num_workers, --machine_type, --service_account_email
  All of them:
  https://beam.apache.org/releases/pydoc/current/apache_beam.options.pipeline_options.html"""

#: Placeholders that say what a value is, where the option's name alone does not.
_METAVARS = {"output": "PREFIX", "sql_logs": "GLOB", "chat_history": "GLOB", "seed_pairs": "GLOB",
             "schema": "GLOB", "database": "URL", "personas_file": "FILE", "teachings": "FILE",
             "filter": "MODULE:FUNCTION", "llm_endpoint": "URL", "weak_llm_endpoint": "URL",
             "consistency_llm_endpoint": "URL", "llm_cache": "DIR", "tool_name": "NAME", "context": "MODE",
             "format": "LIST", "question_styles": "LIST", "depth_techniques": "LIST", "input_licenses": "TEXT"}

#: Options every run needs, though argparse must not enforce them (Beam re-parses our options).
_REQUIRED = ("output",)


_COMMANDS = ("run", "metadata")

_TOP_HELP = f"""\
usage: sqlpairs run --output PREFIX [--sql_logs GLOB] [--chat_history GLOB] [--seed_pairs GLOB]
                    [--database URL] [options] [Beam options]
       sqlpairs metadata

{_DESCRIPTION}

commands:
  run        run the job; 'sqlpairs run --help' lists every option, by section
  metadata   print templates/metadata.json, generated from the same option table

example (the bundled Chinook sample):
  sqlpairs run --sql_logs examples/chinook_queries.sql --chat_history examples/chat_history.json \\
      --seed_pairs examples/seed_pairs.jsonl --database sqlite:///examples/chinook.sqlite \\
      --output out/chinook"""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def _is_switch(action: argparse.Action) -> bool:
    """A boolean option given bare (``--keep_failures``) or as ``--name=true|false``."""
    return bool(action.option_strings) and action.nargs == "?" and action.const is True


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` as a user reads it: switches as switches, the required output marked."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if _is_switch(action):
            name = action.option_strings[-1]
            return f"{name}=false" if action.default is True else name
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        return f"Required. {text}" if action.dest in _REQUIRED else text


def _options_parser(prog: str) -> argparse.ArgumentParser:
    """Our options, one group per ``--help`` section; prefixes of names are not accepted."""
    parser = _OneLineParser(prog=prog, usage=_USAGE, description=_DESCRIPTION, epilog=_BEAM_PASS_THROUGH,
                            formatter_class=_HelpFormatter, allow_abbrev=False)
    SqlPairsOptions._add_argparse_args(parser)
    for action in parser._actions:
        if action.option_strings and not action.choices and not _is_switch(action):
            action.metavar = _metavar(action)
    return parser


def _metavar(action: argparse.Action) -> Optional[str]:
    """A short placeholder: ``N`` for a count, ``X`` for a number, ``VAR`` for a variable's name."""
    kind = getattr(action.type, "__name__", "")
    if action.dest in _METAVARS:
        return _METAVARS[action.dest]
    for suffix, metavar in (("_env", "VAR"), ("_field", "FIELD"), ("_model", "MODEL"), ("_project", "PROJECT"),
                            ("_location", "LOCATION"), ("dialect", "DIALECT")):
        if action.dest.endswith(suffix):
            return metavar
    if kind in ("int", "_positive_int", "_non_negative_int"):
        return "N"
    if kind in ("float", "_positive_float", "_non_negative_float", "_fraction"):
        return "X"
    return None  # argparse's default: the name in capitals


def _beam_options_parser() -> argparse.ArgumentParser:
    """Every option Beam itself knows, built from its ``PipelineOptions`` subclasses as
    ``PipelineOptions.get_all_options`` does (ours left out); a bad value is a ``UserError``."""
    from apache_beam.options import pipeline_options
    from apache_beam.options.pipeline_options import PipelineOptions

    base = getattr(pipeline_options, "_BeamArgumentParser", None)  # knows add_value_provider_argument
    if base is None:  # pragma: no cover - a Beam without it registers its options with plain argparse
        base = type("BeamArgumentParser", (argparse.ArgumentParser,),
                    {"add_value_provider_argument": argparse.ArgumentParser.add_argument})

    class BeamParser(base):  # type: ignore[misc, valid-type]
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UserError(message)

    parser = BeamParser(allow_abbrev=False, add_help=False, conflict_handler="resolve")
    classes: dict[str, type] = {}
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if not issubclass(cls, SqlPairsOptions):
            classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # type: ignore[attr-defined]
    return parser


def unknown_option_message(token: str, known: Iterable[str]) -> str:
    """The error for the first argument neither we nor Beam understand, with the nearest known name.

    >>> unknown_option_message("--databse=x", ["--database", "--dedup"])
    'unknown option --databse (did you mean --database?)'
    >>> unknown_option_message("out/x", ["--output"])
    "unexpected argument 'out/x' (options are written --name value or --name=value)"
    """
    if not token.startswith("-"):
        return f"unexpected argument {token!r} (options are written --name value or --name=value)"
    name = token.split("=", 1)[0]
    match = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown option {name}" + (f" (did you mean {match[0]}?)" if match else "")


def given_options(argv: Sequence[str]) -> frozenset[str]:
    """Our options named on the command line.

    A token starting with ``--`` is always an option to argparse (a value that looks like
    one must be written ``--name=--value``), so presence is read off the tokens.

    >>> sorted(given_options(["--preference", "--samples=3", "--filter=--x", "--project", "p", "--seed", "-1"]))
    ['filter', 'preference', 'samples', 'seed']
    """
    given = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
            if name in OPTION_NAMES:
                given.add(name)
    return frozenset(given)


class Needs(NamedTuple):
    """Options that do something only with another option: given without it, they are refused."""

    options: tuple[str, ...]
    needs: str  # what to add, as the user writes it (and why)
    met: Callable[[argparse.Namespace], bool]


def _formats_with_prompts(values: argparse.Namespace) -> bool:
    """Whether an export shows tables in a prompt (where ``--sft_sample_rows`` puts rows)."""
    from transforms.exports import EXAMPLE_FORMATS, PREFERENCE_FORMATS
    from transforms.training import parse_formats

    try:
        formats, _ = parse_formats(values.format)
    except ValueError:
        return True  # --format's own error is clearer
    return bool(values.preference) or any(f in (*EXAMPLE_FORMATS, *PREFERENCE_FORMATS) for f in formats)


def _near_dup_applies(values: argparse.Namespace) -> bool:
    from transforms.near_dup import applies

    return applies(values.dedup)


def _writes_questions(values: argparse.Namespace) -> bool:
    return values.llm != "rules"


def _uses_model(values: argparse.Namespace) -> bool:
    return values.llm != "rules" or bool(values.consistency) or bool(values.preference)


def _with_prefix(*prefixes: str) -> tuple[str, ...]:
    return tuple(name for name in OPTION_NAMES if name.startswith(prefixes))


#: What each option needs, read off the code that uses it: ``question_settings`` reads the
#: ``--llm`` model only for a model backend; the round-trip model inherits ``--llm``'s project,
#: location and prices (``consistency_llm_settings``); the weak model shares only the request
#: machinery (``model_settings(values, "weak_llm")``); personas feed synthesis only; teachings
#: feed synthesis, evolution and the round trip; rows in prompts need an export with a prompt.
NEEDS: tuple[Needs, ...] = (
    Needs(("samples", *_with_prefix("weak_", "dpo_")), "--preference (it shapes the weak model's DPO pairs)",
          lambda v: bool(v.preference)),
    Needs(_with_prefix("consistency_llm"), "--consistency (it is the round-trip check's model)",
          lambda v: bool(v.consistency)),
    Needs(("llm_model", "llm_endpoint", "llm_api_key_env", "llm_temperature", "questions_per_sql"),
          "a model that writes questions: --llm gemini or --llm openai (--llm rules reads none of it)",
          _writes_questions),
    Needs(("llm_project", "llm_location", "llm_price_in", "llm_price_out"),
          "a model: --llm gemini|openai or --consistency (--llm rules reads none of it)",
          lambda v: _writes_questions(v) or bool(v.consistency)),
    Needs(("llm_max_in_flight", "llm_rpm", "llm_retries", "llm_backoff_s", "llm_timeout_s", "llm_cache"),
          "a model: --llm gemini|openai, --consistency or --preference", _uses_model),
    Needs(("database_password_env", "timeout_s", "max_rows", "max_result_bytes", "max_connections"),
          "--database (it applies to the queries run there)", lambda v: bool(v.database)),
    Needs(("sft_sample_rows",), "an export with a prompt: --format sft-chat, prompt-completion... or --preference",
          _formats_with_prompts),
    Needs(("personas_file",), "--synthesize_from_schema (only synthesized questions are written in personas' voices)",
          lambda v: bool(v.synthesize_from_schema)),
    Needs(("teachings",), "a generator that reads it: --synthesize_from_schema, --depth, --breadth or --consistency",
          lambda v: bool(v.synthesize_from_schema or v.depth or v.breadth or v.consistency)),
    Needs(("depth_techniques",), "--depth", lambda v: bool(v.depth)),
    Needs(("max_repairs",), "--synthesize_from_schema or --depth (the stages that repair SQL)",
          lambda v: bool(v.synthesize_from_schema or v.depth)),
    Needs(("near_dup_threshold",), "--dedup exact or --dedup question-only", _near_dup_applies),
    Needs(("tool_name", "include_failures", "context"), "--chat_history", lambda v: bool(v.chat_history)),
    Needs(("sql_logs_format",), "--sql_logs", lambda v: bool(v.sql_logs)),
    Needs(("sql_field", "question_field", "db_id_field"), "--sql_logs or --seed_pairs",
          lambda v: bool(v.sql_logs or v.seed_pairs)),
)


def check_needs(values: argparse.Namespace, given: Iterable[str]) -> None:
    """Refuse an option given on the command line that nothing would read (see ``NEEDS``)."""
    given = set(given)
    for rule in NEEDS:
        for name in rule.options:
            if name in given and not rule.met(values):
                raise UserError(f"--{name} needs {rule.needs}")


def parse_run_options(argv: Sequence[str], prog: str = "sqlpairs run") -> tuple[argparse.Namespace, list[str]]:
    """Our options and the Beam options (to hand to Beam); raises ``UserError`` for anything else.

    An unknown option used to reach Beam, which only logged "Discarding unparseable args"
    and ran with the defaults: a misspelled ``--databse`` gave a run without a database.
    """
    parser = _options_parser(prog)
    values, rest = parser.parse_known_args(list(argv))
    beam = _beam_options_parser()
    _, unknown = beam.parse_known_args(rest)
    if unknown:
        known = [s for p in (parser, beam) for a in p._actions for s in a.option_strings if s.startswith("--")]
        raise UserError(unknown_option_message(unknown[0], known))
    check_needs(values, set_options(values, argv))
    return values, rest


def set_options(values: argparse.Namespace, argv: Sequence[str]) -> frozenset[str]:
    """Our options named on the command line with a value other than their default.

    A Flex Template launch may pass a parameter's ``defaultValue`` from metadata.json
    although the user set nothing; such a value changes nothing, so it is never refused.
    """
    defaults = {spec.name: spec.default for spec in OPTION_SPECS}
    return frozenset(name for name in given_options(argv) if getattr(values, name) != defaults[name])


def _check_patterns(name: str, value: Optional[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The patterns of ``--name`` and the files they match; a pattern that matches nothing is an error."""
    from transforms.read import match_pattern, split_patterns

    patterns = split_patterns(value)
    files: list[str] = []
    for pattern in patterns:
        if "://" not in pattern and os.path.isdir(pattern):  # else read as one unreadable "file"
            raise UserError(f"--{name} {pattern!r} is a directory: give a file pattern such as "
                            f"{os.path.join(pattern, '*')!r}")
        try:
            matched = match_pattern(pattern).files  # ** spans directories; broken links are dead letters
        except Exception as error:  # noqa: BLE001 - a filesystem error is the user's to fix
            raise UserError(f"--{name} {pattern!r}: {error}") from None
        if not matched:
            raise UserError(f"--{name} {pattern!r} matches no file")
        files.extend(metadata.path for metadata in matched)
    return tuple(patterns), tuple(files)


def _existing_file(path: Optional[str]) -> tuple[str, ...]:
    """``path`` if it names an existing file, else nothing (the option's own check reports a missing one)."""
    if not path:
        return ()
    from apache_beam.io.filesystems import FileSystems

    try:
        return tuple(metadata.path for metadata in FileSystems.match([path])[0].metadata_list)
    except Exception:  # noqa: BLE001 - reported by the option's own check
        return ()


def check_output_writable(prefix: str) -> None:
    """Refuse an output prefix the job could not write, before anything runs.

    Otherwise the failure is a long traceback from the writer after the whole job ran.
    A local prefix needs its directory, or the nearest existing directory above it (the
    run creates the rest), to take a new file: one is created there and removed. Other
    filesystems (``gs://``...) are only checked to be known to Beam: a real check would
    cost a request and need credentials the launcher may not have.
    """
    if "://" in prefix:
        from apache_beam.io.filesystems import FileSystems

        try:
            FileSystems.get_filesystem(prefix)
        except ValueError as error:
            raise UserError(f"--output {prefix!r}: {error}") from None
        return
    if not os.path.basename(prefix):
        raise UserError(f"--output {prefix!r} names a directory: give a file prefix inside it, such as "
                        f"{os.path.join(prefix, 'pairs')!r}")
    directory = os.path.dirname(os.path.abspath(prefix))
    while not os.path.lexists(directory):
        directory = os.path.dirname(directory)
    if not os.path.isdir(directory):
        raise UserError(f"--output {prefix!r}: {directory!r} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".sqlpairs-write-check-", dir=directory)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise UserError(f"--output {prefix!r}: cannot create files in {directory!r}: "
                        f"{error.strerror or error}") from None


def _local_names(path: str) -> set[str]:
    """Where a local file is: its path with the directory resolved, and its target if it is a link."""
    absolute = os.path.abspath(path)
    return {os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute)),
            os.path.realpath(absolute)}


def overwritten_input(prefix: str, inputs: Sequence[tuple[str, str]],
                      kept: Sequence[str] = ()) -> Optional[tuple[str, str]]:
    """The first ``(option, file)`` of ``inputs`` that a job writing to ``prefix`` would overwrite.

    Every file the job writes is named ``PREFIX-…`` (pairs and dead-letter shards, the
    report, exports, generated personas and teachings, their temporary files), so an
    input there may be replaced while it is read. Local paths are compared with links
    resolved; ``kept`` are output names the job reads instead of writing (a
    ``--personas_file PREFIX-personas.json`` passed back is not regenerated).

    >>> overwritten_input("gs://b/in/o", [("sql_logs", "gs://b/in/o-00000-of-00001.jsonl")])
    ('sql_logs', 'gs://b/in/o-00000-of-00001.jsonl')
    >>> overwritten_input("gs://b/in/o", [("sql_logs", "gs://b/in/other.jsonl"), ("schema", "gs://b/in/o.sql")])
    """
    local = "://" not in prefix
    if local:
        directory = os.path.realpath(os.path.dirname(os.path.abspath(prefix)))
        stem = os.path.join(directory, os.path.basename(prefix)) + "-"
        kept_names = set().union(*(_local_names(name) for name in kept)) if kept else set()
    else:
        stem = prefix + "-"
        kept_names = set(kept)
    for option, path in inputs:
        if local != ("://" not in path):
            continue
        names = _local_names(path) if local else {path}
        if any(name.startswith(stem) for name in names) and not names & kept_names:
            return option, path
    return None


def _check_inputs_not_overwritten(values: argparse.Namespace, inputs: Sequence[tuple[str, str]]) -> None:
    from transforms.generation import output_paths as generated_paths

    files = list(inputs)
    kept = []
    for option, generated in (("personas_file", "personas"), ("teachings", "teachings")):
        given = _existing_file(getattr(values, option))
        files.extend((option, path) for path in given)
        if given:
            kept.append(generated_paths(values.output)[generated])  # read, so not written
    clash = overwritten_input(values.output, files, kept)
    if clash:
        option, path = clash
        raise UserError(f"--output {values.output!r} would overwrite the input {path} (--{option}): the job writes "
                        f"{values.output}-*; choose another prefix")


def _check_dialect(name: str, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    from sqlglot.dialects.dialect import Dialect

    try:
        Dialect.get_or_raise(value)
    except ValueError:
        raise UserError(f"--{name} {value!r} is not a sqlglot dialect (e.g. postgres, mysql, sqlite, tsql)") from None
    return value.lower()


def resolve(values: argparse.Namespace):
    """Validate the options and build the graph's ``JobConfig``; raises ``UserError``."""
    from adapters.db import DatabaseMap, DatabaseUnavailable, open_executor
    from pipeline.graph import JobConfig
    from transforms.filter import FilterSettings, load_predicate, parse_tables
    from transforms.instantiate import InstantiateSettings
    from transforms.questions import SEGMENT_CONTEXT
    from transforms.read import ReadSettings

    if not values.output:
        raise UserError("--output PREFIX is required (e.g. --output out/pairs)")
    check_output_writable(values.output)
    inputs = []
    read_files: list[tuple[str, str]] = []
    for kind in ("sql_logs", "chat_history", "seed_pairs"):
        if kind == "sql_logs" and (values.sql_logs or "").strip() == "pg_stat_statements":
            inputs.append(("pg_stat_statements", ()))  # the live view: its URL comes from --database below
            continue
        patterns, files = _check_patterns(kind, getattr(values, kind))
        read_files.extend((kind, path) for path in files)
        if patterns:
            inputs.append((kind, patterns))
    if not inputs and not values.synthesize_from_schema:
        raise UserError("nothing to read: give --sql_logs, --chat_history and/or --seed_pairs "
                        "(or --synthesize_from_schema N with --database)")
    if values.schema:
        read_files.extend(("schema", path) for path in _check_patterns("schema", values.schema)[1])
    _check_inputs_not_overwritten(values, read_files)

    databases = None
    if values.database:
        databases = DatabaseMap.parse(values.database)
    validate = values.validate or ("execute" if databases else "parse")
    if validate == "execute" and databases is None:
        raise UserError("--validate execute needs --database")
    if values.database_password_env and values.database_password_env not in os.environ:
        raise UserError(f"--database_password_env {values.database_password_env}: that variable is not set")
    view_databases = None
    if inputs[:1] == [("pg_stat_statements", ())]:
        view_url, view_databases = _live_view_source(databases, values.database_password_env)
        inputs[0] = ("pg_stat_statements", (view_url,))

    target = _check_dialect("dialect", values.dialect)
    source = _check_dialect("source_dialect", values.source_dialect)
    if target is None:
        target = (databases.dialect() if databases else None) or source or "postgres"

    if values.min_difficulty and values.max_difficulty:
        from pipeline.options import DIFFICULTIES

        if DIFFICULTIES.index(values.min_difficulty) > DIFFICULTIES.index(values.max_difficulty):
            raise UserError("--min_difficulty is harder than --max_difficulty: nothing could pass")
    if values.filter:
        try:
            load_predicate(values.filter)
        except Exception as error:  # noqa: BLE001
            raise UserError(f"--filter {values.filter}: {type(error).__name__}: {error}") from None

    if validate == "execute":
        settings = dict(timeout_s=values.timeout_s, max_rows=values.max_rows,
                        max_result_bytes=values.max_result_bytes)
        if values.database_password_env:
            settings["password"] = os.environ[values.database_password_env]
        for url in databases.known_urls():
            try:
                executor = open_executor(url, **settings)
                try:
                    executor.check()
                finally:
                    executor.close()
            except DatabaseUnavailable as error:
                raise UserError(f"database unavailable: {error}") from None

    from transforms.questions import question_settings

    questions = question_settings(values, dialect=source or target,
                                  database=values.database if validate == "execute" else None)
    from transforms.training import training_settings

    training = training_settings(values, dialect=source or target, output=values.output,
                                 database=values.database if validate == "execute" else None)

    from transforms.generation import generation_settings

    generation = generation_settings(values, database=values.database if validate == "execute" else None,
                                     dialect=source or target)

    report_options = {spec.name: getattr(values, spec.name) for spec in OPTION_SPECS}
    if report_options.get("database"):
        from adapters.db import redact

        report_options["database"] = redact(report_options["database"])
    report_options["validate"] = validate
    report_options["dialect"] = target
    return JobConfig(
        inputs=tuple(inputs),
        read=ReadSettings(
            format=values.sql_logs_format,
            sql_field=values.sql_field,
            question_field=values.question_field,
            db_id_field=values.db_id_field,
            tool_name=values.tool_name,
            include_failures=values.include_failures,
            # segmented: the model decides later, from a bounded window of the turns before each question
            context=SEGMENT_CONTEXT if values.context == "segmented" else values.context,
            dialect=source or target,
            max_sql_bytes=values.max_sql_bytes,
        ),
        target_dialect=target,
        source_dialect=source,
        database=values.database if validate == "execute" else None,
        skip_reason=f"not executed (--validate {validate})",
        timeout_s=values.timeout_s,
        max_rows=values.max_rows,
        max_result_bytes=values.max_result_bytes,
        max_connections=values.max_connections,
        password_env=values.database_password_env,
        filter=FilterSettings(
            keep_failures=values.keep_failures,
            tables=tuple(parse_tables(values.tables)),
            min_difficulty=values.min_difficulty,
            max_difficulty=values.max_difficulty,
            drop_empty_results=values.drop_empty_results,
            custom=values.filter,
        ),
        dedup=values.dedup,
        output=values.output,
        num_shards=values.num_shards,
        record_timings=values.record_timings,
        report_options=report_options,
        questions=questions,
        instantiate=InstantiateSettings(seed=values.seed, instances_per_template=values.instances_per_template,
                                        weight_by=values.weight_by, max_per_template=values.max_per_template),
        view_databases=view_databases,
        training=training,
        generation=generation,
        near_dup_threshold=values.near_dup_threshold,
    )


def _live_view_source(databases, password_env: Optional[str]) -> tuple[str, Optional[tuple[str, ...]]]:
    """Where ``--sql_logs pg_stat_statements`` reads the view, and whose statements it keeps.

    One URL: that database's statements. ``db_id=URL`` pairs: the statements of the
    databases named by the ids (read through the first URL; the view is cluster-wide).
    """
    from adapters.db import dialect_for_url
    from transforms.read_stat_statements import check_view

    if databases is None or databases.template:
        raise UserError("--sql_logs pg_stat_statements reads the view of --database: give one postgresql:// URL "
                        "(or db_id=URL pairs naming databases of one server)")
    urls = databases.known_urls()
    if any(dialect_for_url(url) != "postgres" for url in urls):
        raise UserError("--sql_logs pg_stat_statements needs a PostgreSQL --database (postgresql://...)")
    problem = check_view(urls[0], password_env)
    if problem:
        raise UserError(problem)
    return urls[0], None if databases.default else tuple(db_id for db_id, _ in databases.by_id)


def _beam_args(rest: Sequence[str]) -> list[str]:
    """Beam's options, with a runner that never downloads Prism.

    Without ``--runner`` (or with ``DirectRunner``, which would first try to fetch
    the Prism binary) the job runs on Beam's in-process ``FnApiRunner``, which also
    honours ``--direct_running_mode`` and ``--direct_num_workers``.
    """
    args: list[str] = []
    runner = None
    items = iter(rest)
    for arg in items:
        if arg == "--runner":
            runner = next(items, None)
        elif arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        else:
            args.append(arg)
    if runner in (None, "DirectRunner", "SwitchingDirectRunner"):
        runner = "FnApiRunner"
    return args + [f"--runner={runner}"]


def _has_several_workers(beam_options) -> bool:
    """False only for Beam's in-process runner with one worker (the default local run)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = str(beam_options.view_as(StandardOptions).runner or "")
    if runner not in ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner"):
        return True
    workers = beam_options.view_as(DirectOptions).direct_num_workers
    if workers == 0:  # Beam's "one per core"
        workers = os.cpu_count() or 1
    return (workers or 1) > 1


#: Seconds between two progress lines of a local run.
PROGRESS_INTERVAL_S = 5.0


def wants_progress(values: argparse.Namespace, stream: Any = None) -> bool:
    """Progress lines: as asked (``--progress``, else ``SQLPAIRS_PROGRESS=1|0``), else only on a terminal.

    >>> import io
    >>> wants_progress(argparse.Namespace(progress=True), io.StringIO())
    True
    """
    asked = getattr(values, "progress", None)
    if asked is None and os.environ.get("SQLPAIRS_PROGRESS", "").strip():
        try:
            asked = parse_bool(os.environ["SQLPAIRS_PROGRESS"])
        except argparse.ArgumentTypeError:
            asked = None
    if asked is None:
        stream = sys.stderr if stream is None else stream
        asked = bool(getattr(stream, "isatty", lambda: False)())
    return bool(asked)


def progress_line(counts: Mapping[str, int], elapsed_s: float) -> str:
    """One progress line from the job's counters (``read.out``, ``<stage>.rejected.<reason>``, ...).

    "pairs" are those past dedup (the last stage before the writers, which write at the end).

    >>> progress_line({"read.out": 90, "read.rejected.sql_too_long": 10, "parse.rejected.syntax": 5,
    ...                "dedup.out": 40, "llm.questions.requests": 7, "llm.questions.calls": 9}, 10.0)
    'sqlpairs: 10 s: 100 records read (10/s), 40 pairs, 15 dead letters, 7 model requests'
    """
    read = counts.get("read.out", 0) + sum(v for k, v in counts.items() if k.startswith("read.rejected."))
    dead = sum(v for k, v in counts.items() if ".rejected." in k)
    pairs = counts.get("sample.out", counts.get("dedup.out", 0))
    requests = sum(v for k, v in counts.items() if k.startswith("llm.") and k.endswith(".requests"))
    rate = read / elapsed_s if elapsed_s > 0 else 0.0
    return (f"sqlpairs: {elapsed_s:.0f} s: {read} records read ({rate:.0f}/s), {pairs} pairs, "
            f"{dead} dead letters, {requests} model requests")


def _job_counters(monitoring_infos: Iterable[Any]) -> Counter:
    """The job's own counters (namespace ``sqlpairs``) in Beam monitoring infos, by name."""
    from apache_beam.runners.portability.portable_metrics import from_monitoring_infos

    from transforms.common import NAMESPACE

    totals: Counter = Counter()
    for key, value in from_monitoring_infos(monitoring_infos, user_metrics_only=True)[0].items():
        if key.metric.namespace == NAMESPACE:
            totals[key.metric.name] += int(value or 0)
    return totals


class RunProgress:
    """The job's counters while a local run runs, from Beam's own metrics.

    Beam's ``FnApiRunner`` returns metrics only when the whole job is done, and a local
    job is mostly one long fused bundle; so the totals are the counters of the bundles
    that finished (as the runner receives them) plus those of the bundles the in-process
    SDK worker is running now (``BundleProcessor.monitoring_infos()``, what Beam answers a
    progress request with). Each total only grows: between a bundle's end and the runner
    receiving its result, it is counted in neither. Reading Beam's internals is best effort:
    if they change, the lines show the finished bundles only; the job is never affected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished: Counter = Counter()
        self._managers: list[Any] = []
        self._highest: Counter = Counter()

    def watch(self, worker_handler_manager: Any) -> None:
        with self._lock:
            if all(manager is not worker_handler_manager for manager in self._managers):
                self._managers.append(worker_handler_manager)

    def add_finished(self, monitoring_infos: Iterable[Any]) -> None:
        counts = _job_counters(monitoring_infos)
        with self._lock:
            self._finished.update(counts)

    def _running_bundles(self) -> list[Any]:
        processors = []
        with self._lock:
            managers = list(self._managers)
        for manager in managers:
            for handlers in list(getattr(manager, "_cached_handlers", {}).values()):
                for handler in list(handlers):
                    cache = (getattr(handler, "bundle_processor_cache", None)  # in_memory
                             or getattr(getattr(handler, "worker", None), "_bundle_processor_cache", None))
                    for entry in list(getattr(cache, "active_bundle_processors", {}).values()):
                        processors.append(entry[1])
        return processors

    def totals(self) -> Counter:
        """The counters so far (each the highest value seen)."""
        with self._lock:
            totals = Counter(self._finished)
        for processor in self._running_bundles():
            try:
                totals.update(_job_counters(processor.monitoring_infos()))
            except Exception:  # noqa: BLE001 - a bundle changing under us: read it next time
                continue
        with self._lock:
            for name, value in totals.items():
                self._highest[name] = max(self._highest[name], value)
            return Counter(self._highest)


def _progress_runner(progress: RunProgress) -> Any:
    """Beam's ``FnApiRunner``, telling ``progress`` each bundle's result and where bundles run."""
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    class ProgressFnApiRunner(FnApiRunner):
        def _execute_bundle(self, runner_execution_context, bundle_context_manager, bundle_input):
            progress.watch(runner_execution_context.worker_handler_manager)
            result = super()._execute_bundle(runner_execution_context, bundle_context_manager, bundle_input)
            progress.add_finished(result.process_bundle.monitoring_infos)
            return result

    return ProgressFnApiRunner()


class _ProgressPrinter(threading.Thread):
    """Prints ``progress_line`` every ``interval_s`` seconds until stopped."""

    def __init__(self, progress: RunProgress, started: float, interval_s: float, stream: Any) -> None:
        super().__init__(name="sqlpairs-progress", daemon=True)
        self.progress, self.started, self.interval_s, self.stream = progress, started, interval_s, stream
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                line = progress_line(self.progress.totals(), time.monotonic() - self.started)
                print(line, file=self.stream, flush=True)
            except Exception:  # noqa: BLE001 - progress is informative; never fail the run
                LOG.debug("progress line failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=self.interval_s + 1)


def _repair_beam_memory_probe() -> None:
    """Stop RunInference's "Resource module is not available" warning at its cause.

    ``apache_beam.ml.inference.base`` imports the standard ``resource`` module in one
    ``try`` with its torch-only ``ModelManager``; without torch both are set to None, and
    every model load then logs that warning on the root logger (twice per model run). The
    module is there: hand it back, so Beam measures memory as it means to.
    """
    try:
        import resource

        from apache_beam.ml.inference import base
    except ImportError:  # a platform without resource: Beam's warning is then true
        return
    if getattr(base, "resource", resource) is None:
        base.resource = resource


def _ensure_local_parent(prefix: str) -> None:
    if "://" not in prefix:
        parent = os.path.dirname(os.path.abspath(prefix))
        os.makedirs(parent, exist_ok=True)


def run(argv: Sequence[str], prog: str = "sqlpairs run") -> int:
    """Parse, validate, build and run the job; returns the exit status."""
    values, rest = parse_run_options(argv, prog)
    config = resolve(values)
    _ensure_local_parent(config.output)

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.graph import build, output_paths
    from transforms.report import AccountingError, format_stage_table

    beam_args = _beam_args(rest)
    if config.questions is not None and not any(a.startswith("--direct_running_mode") for a in rest):
        # Model calls wait on the network: with several bundle threads sharing one client,
        # the next batch's requests go out while the last batch's replies are applied.
        beam_args += ["--direct_running_mode=multi_threading", "--direct_num_workers=4"]
    beam_options = PipelineOptions(beam_args)
    if config.questions or config.generation or (config.training and config.training.preference):
        _repair_beam_memory_probe()
    config = config._replace(spread_records=_has_several_workers(beam_options))
    started = time.monotonic()
    printer = None
    local_runner = None
    if wants_progress(values) and beam_options.view_as(StandardOptions).runner == "FnApiRunner":
        progress = RunProgress()
        local_runner = _progress_runner(progress)
        printer = _ProgressPrinter(progress, started, PROGRESS_INTERVAL_S, sys.stderr)
    pipeline = beam.Pipeline(runner=local_runner, options=beam_options)
    build(pipeline, config)
    try:
        # FnApiRunner runs the whole job inside run(); Dataflow fails in wait_until_finish.
        if printer is not None:
            printer.start()
        try:
            result = pipeline.run()
        finally:
            if printer is not None:
                printer.stop()
        runner = beam_options.get_all_options().get("runner") or ""
        if "Dataflow" in str(runner) and not parse_bool(os.environ.get("SQLPAIRS_WAIT", "false")):
            LOG.info("submitted to Dataflow; not waiting for the job")
            return 0
        result.wait_until_finish()
    except Exception as error:
        if isinstance(error, AccountingError) or _ACCOUNTING_FAILED in str(error):
            print(f"sqlpairs: error: {_accounting_message(error)}", file=sys.stderr)
            return 1
        raise
    elapsed = time.monotonic() - started
    report_path = output_paths(config.output)["report"]
    llm = None
    if config.questions is not None:
        from transforms.questions import llm_usage

        llm = llm_usage(result, config.questions)
    elif config.generation is not None:  # --llm rules with a --consistency_llm model
        from transforms.questions import QuestionSettings, llm_usage

        llm = llm_usage(result, QuestionSettings(llm=config.generation.consistency_llm or config.generation.llm))
    if config.training is not None and config.training.preference is not None:
        from transforms.preference import weak_llm_usage

        llm = weak_llm_usage(result, config.training.preference, llm)
    report = _finish_report(report_path, elapsed, llm=llm, html=values.html_report)
    if llm is not None:
        from transforms.questions import format_usage

        print(format_usage(llm), file=sys.stderr)
    if report is not None:
        print(format_stage_table(report), file=sys.stderr)
        if report.get("generated"):
            from transforms.report import format_generated

            rates = format_generated(report)
            if rates:
                print(rates, file=sys.stderr)
        accounting = report["accounting"]
        print(
            f"sqlpairs: {accounting['pairs_written']} pairs, {accounting['dead_letters']} dead letters, "
            f"{accounting['merged_duplicates']} duplicates merged from {accounting['records_read']} records "
            + (f"+ {accounting['records_added']} created " if accounting.get("records_added") else "")
            + f"in {elapsed:.1f} s -> {config.output}-*",
            file=sys.stderr,
        )
    return 0


_ACCOUNTING_FAILED = "accounting check failed"


def _accounting_message(error: BaseException) -> str:
    """The accounting failure and its stage table, without the runner's wrapping.

    Beam re-raises a DoFn's exception with `` [while running 'Step']`` appended (and
    remote runners wrap it in their own text); the user needs the problems and the table.
    """
    text = str(error)
    start = text.find(_ACCOUNTING_FAILED)
    text = text[start:] if start >= 0 else text
    return re.sub(r" \[while running '[^']*'\]", "", text).rstrip()


class _QuietAccountingFailure(logging.Filter):
    """Beam logs a DoFn's exception with its traceback before re-raising it; an accounting
    failure is reported once instead, by ``run``, as a message with the stage table."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _ACCOUNTING_FAILED not in record.getMessage()


def _finish_report(path: str, elapsed_s: float, llm: Optional[dict[str, Any]] = None,
                   html: bool = True) -> Optional[dict[str, Any]]:
    """Add the wall time (and the model usage and cost, from Beam metrics) to the report (local runs only)."""
    from apache_beam.io.filesystems import FileSystems

    from transforms.write import write_text_file

    try:
        with FileSystems.open(path) as handle:
            report = json.loads(handle.read().decode("utf-8"))
    except Exception:  # noqa: BLE001 - the report is informative; the data is already written
        LOG.warning("could not read the report at %s", path)
        return None
    report["elapsed_s"] = round(elapsed_s, 3)
    if llm is not None:
        report["llm"] = llm
    from transforms.report_html import write_report_pages

    defaults = {spec.name: spec.default for spec in OPTION_SPECS}
    write_report_pages(path, report, html=html, defaults=defaults)  # adds the training report; writes the HTML page and dataset card
    write_text_file(path, json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``sqlpairs <command>``: ``run`` the job, or print the Flex Template ``metadata``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # sqlglot warns on every statement it can only keep as an opaque Command; those
    # statements are dead letters with a reason already, so the warnings are noise.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    # in_memory runs log a DoFn's exception from runners.common, multi_threading ones from sdk_worker
    for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker"):
        beam_errors = logging.getLogger(name)
        if not any(isinstance(f, _QuietAccountingFailure) for f in beam_errors.filters):
            beam_errors.addFilter(_QuietAccountingFailure())
    if not argv or argv[0] in ("-h", "--help"):
        print(_TOP_HELP)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "run":
            options = rest[: rest.index("--")] if "--" in rest else rest
            if "-h" in options or "--help" in options:
                _options_parser("sqlpairs run").print_help()
                return 0
            return run(rest)
        if command == "metadata":
            if rest:
                raise UserError(f"metadata takes no options (got {rest[0]})")
            from pipeline.metadata import metadata_json

            print(metadata_json())
            return 0
        match = difflib.get_close_matches(command, _COMMANDS, n=1)
        raise UserError(f"unknown command {command!r}" + (f" (did you mean {match[0]}?)" if match else
                                                          " (expected run or metadata)"))
    except UserError as error:
        print(f"sqlpairs: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sqlpairs: interrupted", file=sys.stderr)
        return 130


#: Allocations between two young-generation collections in the command-line process (Python's
#: default is 700). A run allocates millions of short-lived objects (JSON values, records,
#: sqlglot trees); at the default, ~800 collections cost ~0.3 s of a 10k-call chat job.
_GC_YOUNG_THRESHOLD = 50_000


def cli() -> None:
    """The ``sqlpairs`` console script and ``python -m pipeline``: ``main``, tuned for a one-shot process.

    - The objects loaded so far (Beam, sqlglot, our modules: ~190k tracked by the
      collector) are frozen out of its sight and young collections run less often, so
      the run does not walk them again and again (~0.2–0.4 s of GC on a 10k-call chat job).
    - Once ``main`` has returned, every output file is closed and every pool shut down
      (the pipeline has finished), so the process leaves with ``os._exit`` after
      flushing: the interpreter's own teardown, freeing every object one by one, took
      ~0.5 s of a 10k-call chat job. A failure (an exception) still exits the usual way.

    Tests call ``main`` directly, so none of this touches a test process.
    """
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, _GC_YOUNG_THRESHOLD), *older)
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``sqlpairs metadata | head -1``) loses nothing of ours
            pass
    os._exit(code)


if __name__ == "__main__":
    cli()
