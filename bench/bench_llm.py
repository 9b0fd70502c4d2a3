"""Throughput of the question stage against a model that takes 200 ms per request.

Usage::

    python bench/bench_llm.py [--latency 0.2] [--in-flight 8,32,64] [--rounds 25] [--min-ratio 0.8]

For each in-flight setting it starts the local fake model server
(``tests/llm_fake_server.py``, a separate process so its threads do not share our GIL)
with a fixed latency, runs ``NormalizeSql | WriteQuestions`` (``--llm openai``) on
``in_flight × rounds`` distinct logged queries on Beam's FnApiRunner with ``--workers``
bundle threads (``direct_running_mode=multi_threading``; they share one LLM client and
its ``max_in_flight`` pool, as a Dataflow worker's harness threads do), and reports:

* stage req/s: requests answered ÷ (last reply − first request) as the server saw them,
  i.e. the stage's steady throughput without pipeline start-up;
* % of ideal: that against in-flight ÷ latency (the target is ≥ 80 %);
* wall s: the whole pipeline run, start-up included.

Exits 1 when a setting misses ``--min-ratio``. With ``--workers 1`` the pipeline's own
work on a batch (parsing, prompts, filters) cannot overlap the next batch's requests, so
at 64 in flight on a 2-core machine it reaches about two thirds of the ideal.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from adapters.llm import LlmSettings  # noqa: E402
from transforms.core.record import new_record  # noqa: E402
from transforms.normalize import NormalizeSql  # noqa: E402
from transforms.questions import QuestionSettings, WriteQuestions  # noqa: E402


def _start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "llm_fake_server.py"), "--latency", str(latency_s)],
        stdout=subprocess.PIPE, text=True,
    )
    port = int(process.stdout.readline().strip())
    return process, f"http://127.0.0.1:{port}"


def _stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
        return json.loads(response.read())


def run_setting(in_flight: int, rounds: int, latency_s: float, workers: int = 1) -> dict:
    """One pipeline run at ``in_flight``; returns the measurements."""
    process, url = _start_server(latency_s)
    try:
        count = in_flight * rounds
        records = [new_record(f"SELECT name FROM artist WHERE artist_id = {i}") for i in range(count)]
        settings = QuestionSettings(llm=LlmSettings(backend="openai", endpoint=url, max_in_flight=in_flight,
                                                    timeout_s=30, retries=2))
        started = time.monotonic()
        options = PipelineOptions(flags=[], direct_running_mode="multi_threading" if workers > 1 else "in_memory",
                                  direct_num_workers=workers)
        with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
            normalized = pipeline | beam.Create(records) | NormalizeSql("postgres", "postgres")
            out = normalized.records | WriteQuestions(settings)
            _ = out.records | beam.combiners.Count.Globally()
        wall = time.monotonic() - started
        stats = _stats(url)
    finally:
        process.terminate()
        process.wait()
    window = stats["last_reply"] - stats["first_arrival"]
    achieved = stats["calls"] / window
    ideal = in_flight / latency_s
    return {"in_flight": in_flight, "requests": stats["calls"], "ideal": ideal, "achieved": achieved,
            "ratio": achieved / ideal, "wall": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    parser.add_argument("--in-flight", default="8,32,64", help="comma-separated --llm_max_in_flight values")
    parser.add_argument("--rounds", type=int, default=25, help="requests per setting = in-flight × rounds")
    parser.add_argument("--min-ratio", type=float, default=0.8, help="target fraction of in-flight ÷ latency")
    parser.add_argument("--workers", type=int, default=4,
                        help="bundle-processing threads (direct_num_workers, multi_threading), sharing one client "
                             "per process like a Dataflow worker's harness threads")
    args = parser.parse_args(argv)

    rows = [run_setting(int(n), args.rounds, args.latency, args.workers) for n in args.in_flight.split(",")]
    print(f"question stage, {args.latency * 1000:.0f} ms per model request, FnApiRunner, one process, "
          f"{args.workers} bundle threads sharing one LLM client")
    print(f"{'in-flight':>9} {'requests':>9} {'ideal req/s':>12} {'stage req/s':>12} {'% of ideal':>11} "
          f"{'wall s':>8} {'target':>7}")
    failed = False
    for row in rows:
        ok = row["ratio"] >= args.min_ratio
        failed |= not ok
        print(f"{row['in_flight']:>9} {row['requests']:>9} {row['ideal']:>12.1f} {row['achieved']:>12.1f} "
              f"{row['ratio'] * 100:>10.1f}% {row['wall']:>8.2f} {'ok' if ok else 'MISSED':>7}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
