"""Progress lines of a local run: the job's own Beam counters, finished bundles and running ones,
printed every few seconds on stderr (``--progress``, or when stderr is a terminal).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections import Counter
from typing import Any, Iterable, Mapping

from pipeline.options import parse_bool

LOG = logging.getLogger("sqlpairs")

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

    from transforms.kit.stage import NAMESPACE

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


def progress_runner(progress: RunProgress) -> Any:
    """Beam's ``FnApiRunner``, telling ``progress`` each bundle's result and where bundles run."""
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    class ProgressFnApiRunner(FnApiRunner):
        def _execute_bundle(self, runner_execution_context, bundle_context_manager, bundle_input):
            progress.watch(runner_execution_context.worker_handler_manager)
            result = super()._execute_bundle(runner_execution_context, bundle_context_manager, bundle_input)
            progress.add_finished(result.process_bundle.monitoring_infos)
            return result

    return ProgressFnApiRunner()


class ProgressPrinter(threading.Thread):
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
