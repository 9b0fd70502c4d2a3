"""Model requests per written pair: a 10,000-line log, ``--llm openai``, against a local fake model server.

Usage::

    python bench/bench_llm_requests.py [--lines 10000] [--distinct 0.12] [--questions_per_sql 1]
                                       [--database postgresql://…/chinook] [-- JOB_ARGS...]

Writes a JSONL query log of ``--lines`` lines drawing on ``--distinct`` × lines distinct
SQL (``bench_chat``'s Chinook queries; every distinct query appears at least once, the
rest repeat with Zipf-like weights, and about 4 % of the distinct queries name a column
that does not exist, so they fail to execute), starts ``tests/fakes/llm_fake_server.py`` as a
subprocess, runs ``python -m pipeline run --sql_logs LOG --database URL --llm openai
--llm_endpoint …`` and prints the HTTP calls the server received, the report's ``llm``
requests and records for the questions stage, the distinct pairs written with a model
question, and requests ÷ (pairs × k). Target (issue 15): 1.0 — one request per distinct
validated pair and sample, none for a repeat or a failing query.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_chat import distinct_pool  # noqa: E402
from bench_execute import DEFAULT_DATABASE, _ensure_chinook, compile_project  # noqa: E402

FAILING = 0.04


def write_log(path: Path, lines: int, distinct: int, seed: int = 15) -> dict[str, int]:
    """A JSONL log: each distinct query once, then Zipf-like repeats, shuffled."""
    rng = random.Random(seed)
    pool = [sql for _, sql in distinct_pool(distinct, seed)]
    failing = set(rng.sample(range(len(pool)), int(len(pool) * FAILING)))
    pool = [sql.replace("SELECT ", "SELECT no_such_column, ", 1) if i in failing else sql for i, sql in enumerate(pool)]
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(pool))]
    drawn = list(range(len(pool))) + rng.choices(range(len(pool)), weights=weights, k=lines - len(pool))
    rng.shuffle(drawn)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for index in drawn:
            handle.write(json.dumps({"sql": pool[index], "user": "dashboard"}) + "\n")
    return {"lines": lines, "distinct": len(pool), "failing": len(failing)}


def _start_server() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "fakes" / "llm_fake_server.py"), "--latency", "0"],
                               stdout=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{int(process.stdout.readline().strip())}"


def _calls(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
        return int(json.loads(response.read())["calls"])


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    job_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--distinct", type=float, default=0.12, help="share of the lines that are distinct SQL")
    parser.add_argument("--questions_per_sql", type=int, default=1)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args(argv)
    _ensure_chinook(args.database)
    compile_project()
    # a directory of its own per run: two runs at once must never rewrite each other's log
    work_dir = Path(tempfile.mkdtemp(prefix="sqlpairs_bench_llm_requests-"))
    log = work_dir / "log.jsonl"
    shape = write_log(log, args.lines, int(args.lines * args.distinct))
    out = work_dir / "out" / "pairs"
    process, url = _start_server()
    try:
        command = [sys.executable, "-m", "pipeline", "run", "--sql_logs", str(log), "--database", args.database,
                   "--llm", "openai", "--llm_endpoint", url, "--llm_max_in_flight", "32",
                   "--questions_per_sql", str(args.questions_per_sql), "--output", str(out), "--html_report=false",
                   *job_args]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"bench_llm_requests: the job failed ({result.returncode}):\n{result.stderr[-3000:]}")
        calls = _calls(url)
    finally:
        process.terminate()
        process.wait()
    report = json.loads(Path(f"{out}-report.json").read_text(encoding="utf-8"))
    questions = report["llm"]["stages"]["questions"]
    pairs = [json.loads(line) for path in sorted(out.parent.glob("pairs-0*-of-*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    written = sum(1 for p in pairs if p["question_source"] == "llm")
    ratio = questions["requests"] / max(1, written * args.questions_per_sql)
    print(f"log: {shape['lines']} lines, {shape['distinct']} distinct SQL ({shape['failing']} fail to execute); "
          f"--questions_per_sql {args.questions_per_sql}")
    print(f"{'http calls':>10} {'requests':>8} {'retries':>7} {'repairs':>7} {'records':>7} {'pairs':>6} "
          f"{'req/(pairs*k)':>13} {'wall s':>7}  target")
    print(f"{calls:>10} {questions['requests']:>8} {questions['retries']:>7} {questions['repairs']:>7} "
          f"{questions.get('records', 0):>7} {written:>6} {ratio:>13.3f} {wall:>7.1f}  "
          f"{'PASS' if ratio <= 1.0 else 'FAIL'} (1.0)")


if __name__ == "__main__":
    main()
