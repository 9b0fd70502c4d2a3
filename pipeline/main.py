"""Entry point: ``sqlpairs run [options]`` (also ``python -m pipeline run``).

A user's mistake — a missing input, a bad URL, an unknown value, an unreachable
database, an output that cannot be written or would overwrite an input — is
reported as one line on stderr with exit status 2, before any pipeline starts;
never as a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

from pipeline.errors import UserError
from pipeline.options import OPTION_SPECS, SqlPairsOptions, parse_bool

LOG = logging.getLogger("sqlpairs")

_DESCRIPTION = """\
Turn SQL query logs, chat histories with an analytics agent and existing question/SQL
pairs into validated, deduplicated, difficulty-labelled text-to-SQL training data.

Every Apache Beam option passes through as well (--runner, --direct_running_mode,
--direct_num_workers, --project, --region, --temp_location, ...). Without --runner the
job runs locally on Beam's in-process FnApiRunner (no download, no network)."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def _options_parser(prog: str) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=prog, description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    SqlPairsOptions._add_argparse_args(parser)
    return parser


def _check_patterns(name: str, value: Optional[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The patterns of ``--name`` and the files they match; a pattern that matches nothing is an error."""
    from apache_beam.io.filesystems import FileSystems

    from transforms.read import split_patterns

    patterns = split_patterns(value)
    files: list[str] = []
    for pattern in patterns:
        if "://" not in pattern and os.path.isdir(pattern):  # else read as one unreadable "file"
            raise UserError(f"--{name} {pattern!r} is a directory: give a file pattern such as "
                            f"{os.path.join(pattern, '*')!r}")
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
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
            context="full" if values.context == "segmented" else values.context,  # the model segments later
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


def _ensure_local_parent(prefix: str) -> None:
    if "://" not in prefix:
        parent = os.path.dirname(os.path.abspath(prefix))
        os.makedirs(parent, exist_ok=True)


def run(argv: Sequence[str], prog: str = "sqlpairs run") -> int:
    """Parse, validate, build and run the job; returns the exit status."""
    parser = _options_parser(prog)
    values, rest = parser.parse_known_args(list(argv))
    unknown = [a for a in rest if a.startswith("--")]
    config = resolve(values)
    _ensure_local_parent(config.output)

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.graph import build, output_paths
    from transforms.report import AccountingError, format_stage_table

    beam_args = _beam_args(rest)
    if config.questions is not None and not any(a.startswith("--direct_running_mode") for a in rest):
        # Model calls wait on the network: with several bundle threads sharing one client,
        # the next batch's requests go out while the last batch's replies are applied.
        beam_args += ["--direct_running_mode=multi_threading", "--direct_num_workers=4"]
    beam_options = PipelineOptions(beam_args)
    try:
        beam_options.view_as(SqlPairsOptions)
    except SystemExit:
        raise UserError(f"unrecognised options: {' '.join(unknown)}") from None
    config = config._replace(spread_records=_has_several_workers(beam_options))
    started = time.monotonic()
    pipeline = beam.Pipeline(options=beam_options)
    build(pipeline, config)
    try:
        # FnApiRunner runs the whole job inside run(); Dataflow fails in wait_until_finish.
        result = pipeline.run()
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

    write_report_pages(path, report, html=html)  # adds the training report; writes the HTML page and dataset card
    write_text_file(path, json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``sqlpairs <command>``: ``run`` the job, or print the Flex Template ``metadata``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # sqlglot warns on every statement it can only keep as an opaque Command; those
    # statements are dead letters with a reason already, so the warnings are noise.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    beam_errors = logging.getLogger("apache_beam.runners.common")
    if not any(isinstance(f, _QuietAccountingFailure) for f in beam_errors.filters):
        beam_errors.addFilter(_QuietAccountingFailure())
    top = argparse.ArgumentParser(
        prog="sqlpairs",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n  run        run the job (see 'sqlpairs run --help')\n"
        "  metadata   print templates/metadata.json generated from the options",
    )
    top.add_argument("command", choices=("run", "metadata"), help="what to do")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "run":
            if any(a in ("-h", "--help") for a in rest):
                _options_parser("sqlpairs run").print_help()
                return 0
            return run(rest)
        if command == "metadata":
            from pipeline.metadata import metadata_json

            print(metadata_json())
            return 0
        raise UserError(f"unknown command {command!r} (expected run or metadata)")
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
