"""Options to the graph's ``JobConfig``: every input, database, dialect and output checked before
anything runs (``resolve``); a user's mistake is a ``UserError``.

Each stage's settings come from ``pipeline.settings`` (one module per area); with it, this is
the only code that reads the parsed options or raises ``UserError`` (the stages below only
receive settings: ``tests/unit/test_config_boundary.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from typing import Optional, Sequence

from transforms.core.errors import UserError
from pipeline.options import OPTION_SPECS

LOG = logging.getLogger("sqlpairs")


def _check_patterns(name: str, value: Optional[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The patterns of ``--name`` and the files they match; a pattern that matches nothing is an error."""
    from transforms.core.vocab import split_patterns
    from transforms.kit.inputs import match_pattern

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
    from transforms.generate.generation import output_paths as generated_paths

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
    """Validate the options and build the graph's ``JobConfig``; raises ``UserError``.

    The database adapters raise their own ``BadDatabaseSetting`` for a ``--database``
    that cannot be used (they import nothing from ``transforms``); here it becomes the
    ``UserError`` the command line reports as one line, with the adapter's message.
    """
    from adapters.db import BadDatabaseSetting

    try:
        return _resolve(values)
    except BadDatabaseSetting as error:
        raise UserError(str(error)) from None


def _resolve(values: argparse.Namespace):
    """``resolve`` without the translation of the adapters' errors."""
    from adapters.db import DatabaseMap, DatabaseUnavailable, open_executor
    from pipeline.graph import JobConfig
    from pipeline.settings.generation import generation_settings
    from pipeline.settings.questions import question_settings
    from pipeline.settings.read import read_settings
    from pipeline.settings.training import training_settings
    from pipeline.settings.decontaminate import decontaminate_settings
    from transforms.validate.filter import FilterSettings, load_predicate, parse_tables
    from transforms.validate.instantiate import InstantiateSettings

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
    if values.decontaminate:  # benchmark files are inputs too: --output must not overwrite them
        read_files.extend(("decontaminate", path)
                          for path in _check_patterns("decontaminate", values.decontaminate)[1])
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

    questions = question_settings(values, dialect=source or target,
                                  database=values.database if validate == "execute" else None)
    training = training_settings(values, dialect=source or target, output=values.output,
                                 database=values.database if validate == "execute" else None)
    from pipeline.settings.prompt_schema import with_prompt_schema

    training = with_prompt_schema(training, values)  # --prompt_schema: the schema exported prompts show

    generation = generation_settings(values, database=values.database if validate == "execute" else None,
                                     dialect=source or target)
    from pipeline.settings.cot import cot_settings, with_sft_target

    cot = cot_settings(values, database=values.database if validate == "execute" else None, dialect=source or target)
    training = with_sft_target(values, training)

    from pipeline.settings.evidence import evidence_settings
    from pipeline.settings.judge import judge_settings

    executed_on = values.database if validate == "execute" else None
    judge = judge_settings(values, database=executed_on, dialect=source or target)
    evidence = evidence_settings(values, database=executed_on, dialect=source or target)

    report_options = {spec.name: getattr(values, spec.name) for spec in OPTION_SPECS}
    if report_options.get("database"):
        from adapters.db import redact

        report_options["database"] = redact(report_options["database"])
    report_options["validate"] = validate
    report_options["dialect"] = target
    return JobConfig(
        inputs=tuple(inputs),
        read=read_settings(values, dialect=source or target),
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
        cot=cot,
        decontaminate=decontaminate_settings(values, target_dialect=target, source_dialect=source),
        judge=judge,
        evidence=evidence,
    )


def _live_view_source(databases, password_env: Optional[str]) -> tuple[str, Optional[tuple[str, ...]]]:
    """Where ``--sql_logs pg_stat_statements`` reads the view, and whose statements it keeps.

    One URL: that database's statements. ``db_id=URL`` pairs: the statements of the
    databases named by the ids (read through the first URL; the view is cluster-wide).
    """
    from adapters.db import dialect_for_url
    from transforms.ingest.read_stat_statements import check_view

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
