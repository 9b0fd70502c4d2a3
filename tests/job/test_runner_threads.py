"""Beam's in-process runner with several bundle threads passes every element on, whole.

Model jobs run on ``FnApiRunner`` with ``direct_running_mode=multi_threading`` (pipeline/main.py).
In that mode Beam 2.77's gRPC data streams are flushed by a timer thread each second while
a bundle's thread is still writing; that tears elements in two (the next stage fails to decode
them) or clears them unsent (they vanish, no error). ``pipeline.main.send_whole_elements_only``
turns the timed flush off. These tests start from Beam's own setting (1000 ms), apply it as
``run`` does, and check that a stage writing for several seconds on four threads loses nothing.

Without the workaround ``test_every_element_crosses_the_stage_boundary`` fails in nearly every
run on the 2-core CI machine: a decode error (``Unknown type tag``, ``UnicodeDecodeError``,
``Invalid PaneInfoEncoding``) or a count a few hundred short.
"""

from __future__ import annotations

import sys
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.main import WHOLE_ELEMENTS_CHECKED_ON_BEAM, main, send_whole_elements_only
from tests.conftest import REPO

THREADS = 4
PER_BUNDLE = 40_000
#: A pause every so many elements: each bundle then writes for ~2 s, past Beam's 1 s flush timer.
PAUSE_EVERY, PAUSE_S = 100, 0.005


class _WriteForSeconds(beam.DoFn):
    """One seed → ``PER_BUNDLE`` small keyed elements, written over a couple of seconds."""

    def process(self, seed: int):
        for i in range(PER_BUNDLE):
            if i % PAUSE_EVERY == 0:
                time.sleep(PAUSE_S)  # lets the flush timer (and the other bundles) run mid-bundle
            yield f"{seed}-{i}", (seed, i, "x" * 20)


@pytest.fixture
def beam_default_flush(monkeypatch):
    """Beam's own timed flush (1000 ms) whatever an earlier test set; restored afterwards."""
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1000)


@pytest.fixture
def frequent_thread_switches():
    """Switch threads every 10 µs (Python's default is 5 ms), so the race shows in every run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def test_every_element_crosses_the_stage_boundary(beam_default_flush, frequent_thread_switches):
    send_whole_elements_only()
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_threading",
                               f"--direct_num_workers={THREADS}"])
    with beam_test_pipeline.TestPipeline(options=options) as pipeline:
        written = (
            pipeline
            | beam.Create(list(range(THREADS)))
            | "OneSeedPerThread" >> beam.Reshuffle()
            | beam.ParDo(_WriteForSeconds())
        )
        # GroupByKey moves every element (nothing is combined before it) to the next stage.
        keys = written | beam.GroupByKey() | beam.Map(lambda kv: (kv[0], len(list(kv[1]))))
        distinct = keys | "CountKeys" >> beam.combiners.Count.Globally()
        total = keys | "Sizes" >> beam.Values() | "SumSizes" >> beam.CombineGlobally(sum)
        assert_that(distinct, equal_to([THREADS * PER_BUNDLE]), label="EveryKeyArrived")
        assert_that(total, equal_to([THREADS * PER_BUNDLE]), label="EachOnce")


def test_a_local_run_turns_the_timed_flush_off(beam_default_flush, tmp_path, capsys):
    code = main(["run", "--seed_pairs", str(REPO / "examples" / "seed_pairs.jsonl"),
                 "--database", f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}",
                 "--output", str(tmp_path / "pairs"), "--html_report=false", "--progress=false",
                 "--direct_running_mode=multi_threading", f"--direct_num_workers={THREADS}"])
    assert code == 0, capsys.readouterr().err[-2000:]
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0


def test_the_workaround_was_checked_on_the_installed_beam():
    """An upgrade must re-check it: run the first test with ``send_whole_elements_only`` removed."""
    assert beam.__version__ == WHOLE_ELEMENTS_CHECKED_ON_BEAM
