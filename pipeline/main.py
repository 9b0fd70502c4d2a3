"""Entry point: ``sqlpairs run [options]`` (also ``python -m pipeline run``): run the job, report, exit.

The command line's grammar is ``pipeline.arguments``, the checks that turn options into the
graph's ``JobConfig`` are ``pipeline.config``, progress lines are ``pipeline.progress``.

A user's mistake — a missing input, a bad URL, an unknown value, an unreachable
database, an output that cannot be written or would overwrite an input — is
reported as one line on stderr with exit status 2, before any pipeline starts;
never as a traceback.
"""

from __future__ import annotations

import difflib
import gc
import json
import logging
import os
import re
import sys
import time
from typing import Any, Optional, Sequence

from pipeline.arguments import COMMANDS, TOP_HELP, options_parser, parse_run_options
from pipeline.config import resolve
from transforms.core.errors import UserError
from pipeline.options import OPTION_SPECS, parse_bool
from pipeline.progress import PROGRESS_INTERVAL_S, ProgressPrinter, RunProgress, progress_runner, wants_progress

LOG = logging.getLogger("sqlpairs")

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


#: The Beam release whose data plane ``send_whole_elements_only`` was checked against
#: (constraints.txt pins it; tests/job/test_runner_threads.py fails when they differ, so an
#: upgrade re-checks whether the workaround is still needed).
WHOLE_ELEMENTS_CHECKED_ON_BEAM = "2.77.0"


def send_whole_elements_only() -> None:
    """Turn off the timed flush of Beam's gRPC data streams, which can tear or drop elements.

    With ``--direct_running_mode multi_threading`` the in-process runner talks to its SDK
    harness over gRPC, and Beam (``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS``, 1000 ms, not
    settable from the options in that mode) gives every data stream a timer thread that
    flushes the buffer each second *while the bundle's thread is still writing into it*
    (``data_plane.TimeBasedBufferingClosableOutputStream``; nothing locks writes against
    it). Two things follow, both seen here on 2.77.0 (tests/job/test_runner_threads.py):

    - a flush in the middle of an element sends half of it in one chunk; the next stage
      decodes chunks apart and fails (``Unknown type tag``, ``UnicodeDecodeError``);
    - elements written between the flush's ``get()`` and ``_clear()`` are cleared unsent:
      records vanish with no error at all.

    0 is Beam's own "no timed flush": streams then flush at element boundaries only (at
    10 MB, and when the bundle ends), which is all a batch run on this runner needs, since
    it reads a stage's output only once the bundle is done. Both the runner's data service
    and the harness read the constant when a run starts, so set it before ``run()``.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


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
    from transforms.publish.report import AccountingError, format_stage_table

    beam_args = _beam_args(rest)
    if config.questions is not None and not any(a.startswith("--direct_running_mode") for a in rest):
        # Model calls wait on the network: with several bundle threads sharing one client,
        # the next batch's requests go out while the last batch's replies are applied.
        beam_args += ["--direct_running_mode=multi_threading", "--direct_num_workers=4"]
    beam_options = PipelineOptions(beam_args)
    if beam_options.view_as(StandardOptions).runner == "FnApiRunner":
        send_whole_elements_only()  # our multi_threading runs, and a user's --direct_running_mode too
    if config.questions or config.generation or (config.training and config.training.preference):
        _repair_beam_memory_probe()
    config = config._replace(spread_records=_has_several_workers(beam_options))
    started = time.monotonic()
    printer = None
    local_runner = None
    if wants_progress(values) and beam_options.view_as(StandardOptions).runner == "FnApiRunner":
        progress = RunProgress()
        local_runner = progress_runner(progress)
        printer = ProgressPrinter(progress, started, PROGRESS_INTERVAL_S, sys.stderr)
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
        from transforms.label.questions import llm_usage

        llm = llm_usage(result, config.questions)
    elif config.generation is not None:  # --llm rules with a --consistency_llm model
        from transforms.label.questions import QuestionSettings, llm_usage

        llm = llm_usage(result, QuestionSettings(llm=config.generation.consistency_llm or config.generation.llm))
    elif config.cot is not None or config.judge is not None:  # --llm rules with a --cot_llm or --judge_llm model
        from transforms.label.questions import QuestionSettings, llm_usage

        model = config.cot.llm if config.cot is not None else config.judge.llm
        llm = llm_usage(result, QuestionSettings(llm=model))
    if config.training is not None and config.training.preference is not None:
        from transforms.publish.preference import weak_llm_usage

        llm = weak_llm_usage(result, config.training.preference, llm)
    report = _finish_report(report_path, elapsed, llm=llm, html=values.html_report)
    if llm is not None:
        from transforms.label.questions import format_usage

        print(format_usage(llm), file=sys.stderr)
    if report is not None:
        print(format_stage_table(report), file=sys.stderr)
        if report.get("generated"):
            from transforms.publish.report import format_generated

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

    from transforms.kit.write import write_text_file

    try:
        with FileSystems.open(path) as handle:
            report = json.loads(handle.read().decode("utf-8"))
    except Exception:  # noqa: BLE001 - the report is informative; the data is already written
        LOG.warning("could not read the report at %s", path)
        return None
    report["elapsed_s"] = round(elapsed_s, 3)
    if llm is not None:
        report["llm"] = llm
    from transforms.publish.report_html import write_report_pages

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
        print(TOP_HELP)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "run":
            options = rest[: rest.index("--")] if "--" in rest else rest
            if "-h" in options or "--help" in options:
                options_parser("sqlpairs run").print_help()
                return 0
            return run(rest)
        if command == "metadata":
            if rest:
                raise UserError(f"metadata takes no options (got {rest[0]})")
            from pipeline.metadata import metadata_json

            print(metadata_json())
            return 0
        match = difflib.get_close_matches(command, COMMANDS, n=1)
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
