"""Throughput of the model-backed stages against a model that takes 200 ms per request.

Usage::

    python bench/bench_llm.py [--stage questions|cot|judge|evidence|all] [--latency 0.2]
                              [--in-flight 8,32,64] [--rounds 25] [--cot-n 4] [--min-ratio 0.8]

For each stage and in-flight setting it starts the local fake model server
(``tests/fakes/llm_fake_server.py``, a separate process so its threads do not share our GIL)
with a fixed latency, and measures:

* ``questions``: ``NormalizeSql | WriteQuestions`` (``--llm openai``) on ``in_flight × rounds``
  distinct logged queries on Beam's FnApiRunner with ``--workers`` bundle threads
  (``direct_running_mode=multi_threading``; they share one LLM client and its
  ``max_in_flight`` pool, as a Dataflow worker's harness threads do) — the stage alone;
* ``cot``, ``judge``, ``evidence``: the whole job, ``sqlpairs run`` in a subprocess, on
  seed pairs with their questions (so no other stage asks the model) over Chinook
  (``--database``, SQLite by default), with ``--cot N`` / ``--judge --judge_min 2`` /
  ``--evidence`` and ``--llm openai --llm_max_in_flight IN_FLIGHT``: ``in_flight × rounds``
  requests, i.e. ``in_flight × rounds ÷ k`` pairs for ``k`` requests per pair. The server
  answers every prompt validly (``--solutions``: a ``--cot`` solution is the pair's own SQL,
  the judge gives 4s, the evidence names a table of the SQL), so every pair is kept and
  only the request machinery is measured.

Columns:

* req/pair: model requests ÷ pairs that reached the stage, from the job's report
  (``llm.stages.<stage>``; the server's count for ``questions``) — N for ``--cot N``, else 1;
* stage req/s: requests answered ÷ (last reply − first request) as the server saw them,
  i.e. the stage's steady throughput without pipeline start-up;
* % of ideal: that against in-flight ÷ latency (the target is ≥ 80 %);
* kept: pairs out of the stage ÷ pairs in (100 % when the replies are all valid);
* wall s: the whole run, start-up included (for the jobs: interpreter, checks and report too).

Exits 1 when a setting misses ``--min-ratio`` or a stage's requests per pair are not k.
With ``--workers 1`` the pipeline's own work on a batch (parsing, prompts, filters) cannot
overlap the next batch's requests, so at 64 in flight on a 2-core machine the question
stage reaches about two thirds of the ideal.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Optional

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from adapters.llm import LlmSettings  # noqa: E402
from transforms.core.record import new_record  # noqa: E402
from transforms.validate.normalize import NormalizeSql  # noqa: E402
from transforms.label.questions import QuestionSettings, WriteQuestions  # noqa: E402

STAGES = ("questions", "cot", "judge", "evidence")
#: Each job stage's options beyond the model's; ``{n}`` is ``--cot-n``.
JOB_STAGE_OPTIONS = {
    "cot": ["--cot", "{n}"],
    "judge": ["--judge", "--judge_min", "2"],
    "evidence": ["--evidence"],
}
#: Chinook's tracks: one distinct pair per track id, so a setting never runs out of pairs.
CHINOOK_TRACKS = 3503
DEFAULT_DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"


def _start_server(latency_s: float, solutions: Optional[pathlib.Path] = None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, str(REPO / "tests" / "fakes" / "llm_fake_server.py"), "--latency", str(latency_s)]
    if solutions is not None:
        command += ["--solutions", str(solutions)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    port = int(process.stdout.readline().strip())
    return process, f"http://127.0.0.1:{port}"


def _stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
        return json.loads(response.read())


def _row(stage: str, in_flight: int, latency_s: float, stats: dict, pairs: int, per_pair: float, kept: float,
         wall: float) -> dict:
    window = stats["last_reply"] - stats["first_arrival"]
    achieved = stats["calls"] / window
    ideal = in_flight / latency_s
    return {"stage": stage, "in_flight": in_flight, "requests": stats["calls"], "pairs": pairs,
            "per_pair": per_pair, "ideal": ideal, "achieved": achieved, "ratio": achieved / ideal,
            "kept": kept, "wall": wall}


def run_setting(in_flight: int, rounds: int, latency_s: float, workers: int = 1) -> dict:
    """The question stage alone at ``in_flight``: one pipeline run; returns the measurements."""
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
    return _row("questions", in_flight, latency_s, stats, count, stats["calls"] / count, 1.0, wall)


def seed_pairs(count: int) -> dict[str, str]:
    """``count`` distinct question → SQL pairs on Chinook (one per track), in a stable order.

    >>> list(seed_pairs(2).items())
    [('What is the name of track 1?', 'SELECT Name FROM Track WHERE TrackId = 1'), \
('What is the name of track 2?', 'SELECT Name FROM Track WHERE TrackId = 2')]
    """
    if count > CHINOOK_TRACKS:
        raise ValueError(f"{count} pairs asked for; Chinook has {CHINOOK_TRACKS} tracks (lower --rounds)")
    return {f"What is the name of track {i}?": f"SELECT Name FROM Track WHERE TrackId = {i}"
            for i in range(1, count + 1)}


def requests_per_pair(stage: str, cot_n: int) -> int:
    """k: the model requests one pair costs in ``stage``."""
    return cot_n if stage == "cot" else 1


def run_job_setting(stage: str, in_flight: int, rounds: int, latency_s: float, cot_n: int, database: str,
                    job_args: tuple[str, ...] = ()) -> dict:
    """The whole job with ``stage`` on, at ``in_flight``: one ``sqlpairs run``; returns the measurements."""
    per_pair = requests_per_pair(stage, cot_n)
    pairs = seed_pairs(math.ceil(in_flight * rounds / per_pair))
    with tempfile.TemporaryDirectory(prefix=f"bench-llm-{stage}-") as scratch:
        root = pathlib.Path(scratch)
        (root / "seeds.jsonl").write_text("".join(json.dumps({"question": q, "sql": s}) + "\n"
                                                  for q, s in pairs.items()), encoding="utf-8")
        (root / "solutions.json").write_text(json.dumps(pairs), encoding="utf-8")
        process, url = _start_server(latency_s, root / "solutions.json")
        try:
            stage_options = [option.format(n=cot_n) for option in JOB_STAGE_OPTIONS[stage]]
            command = [sys.executable, "-m", "pipeline", "run", "--seed_pairs", str(root / "seeds.jsonl"),
                       "--database", database, "--llm", "openai", "--llm_endpoint", url,
                       "--llm_max_in_flight", str(in_flight), "--llm_timeout_s", "30", "--llm_retries", "2",
                       "--html_report=false", "--progress=false", "--output", str(root / "out" / "pairs"),
                       *stage_options, *job_args]
            started = time.monotonic()
            job = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            wall = time.monotonic() - started
            if job.returncode != 0:
                raise RuntimeError(f"{stage} job exited {job.returncode}:\n{job.stderr[-3000:]}")
            stats = _stats(url)
        finally:
            process.terminate()
            process.wait()
        report = json.loads((root / "out" / "pairs-report.json").read_text(encoding="utf-8"))
    metered = report["llm"]["stages"][stage]
    row = next(r for r in report["stages"] if r["stage"] == stage)
    return _row(stage, in_flight, latency_s, stats, row["in"], metered["requests"] / max(1, metered["records"]),
                row["out"] / max(1, row["in"]), wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all",
                        help="questions: WriteQuestions alone; cot, judge, evidence: the whole job with that "
                             "option on; all: each in turn")
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    parser.add_argument("--in-flight", default="8,32,64", help="comma-separated --llm_max_in_flight values")
    parser.add_argument("--rounds", type=int, default=25, help="requests per setting = in-flight × rounds")
    parser.add_argument("--cot-n", type=int, default=4, help="--cot N: solutions (requests) per pair")
    parser.add_argument("--database", default=DEFAULT_DATABASE,
                        help="--database of the job stages: Chinook (SQLite copy under examples/ by default; "
                             "postgresql://postgres@127.0.0.1:5432/chinook works too)")
    parser.add_argument("--min-ratio", type=float, default=0.8, help="target fraction of in-flight ÷ latency")
    parser.add_argument("--workers", type=int, default=4,
                        help="questions: bundle-processing threads (direct_num_workers, multi_threading), sharing "
                             "one client per process like a Dataflow worker's harness threads (the job sets its own)")
    parser.add_argument("--job-args", default="", help="more options for the job stages' sqlpairs run, space-separated")
    args = parser.parse_args(argv)

    stages = STAGES if args.stage == "all" else (args.stage,)
    rows = []
    for stage in stages:
        for n in args.in_flight.split(","):
            if stage == "questions":
                rows.append(run_setting(int(n), args.rounds, args.latency, args.workers))
            else:
                rows.append(run_job_setting(stage, int(n), args.rounds, args.latency, args.cot_n, args.database,
                                            tuple(args.job_args.split())))
    print(f"model stages, {args.latency * 1000:.0f} ms per model request, FnApiRunner, one process; "
          f"questions: the stage alone, {args.workers} bundle threads sharing one LLM client; "
          f"cot (--cot {args.cot_n}), judge, evidence: the whole job (sqlpairs run)")
    print(f"{'stage':>9} {'in-flight':>9} {'requests':>9} {'pairs':>6} {'req/pair':>8} {'ideal req/s':>12} "
          f"{'stage req/s':>12} {'% of ideal':>11} {'kept':>6} {'wall s':>8} {'target':>7}")
    failed = False
    for row in rows:
        ok = row["ratio"] >= args.min_ratio and row["per_pair"] == requests_per_pair(row["stage"], args.cot_n)
        failed |= not ok
        print(f"{row['stage']:>9} {row['in_flight']:>9} {row['requests']:>9} {row['pairs']:>6} "
              f"{row['per_pair']:>8.2f} {row['ideal']:>12.1f} {row['achieved']:>12.1f} {row['ratio'] * 100:>10.1f}% "
              f"{row['kept'] * 100:>5.0f}% {row['wall']:>8.2f} {'ok' if ok else 'MISSED':>7}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
