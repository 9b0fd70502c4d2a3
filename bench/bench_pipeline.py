"""Throughput and memory of the deterministic path at 10k, 100k (and 1M) logged queries.

Usage::

    python bench/bench_pipeline.py [--sizes 10k,100k] [--big] [--workers 2] [--postgres auto|skip]

One command, one table. For each size it generates a realistic log over Chinook
(``bench/gen_logs.py``, seed 7; cached under ``bench/results/``) and runs the real
command line — ``python -m pipeline run --sql_logs LOG --validate parse --dialect
postgres --html_report=false`` (the project byte-compiled first, as ``pip install``
would; the HTML report's plots are a separate ~2 s) — read → normalize → classify → describe (rules) → dedup → write, on
Beam's in-process runner, in a fresh process. It reports:

* ``wall s`` and ``rec/s`` — wall-clock time and records per second;
* ``CPU s`` and ``rec/CPU-s`` — user+system CPU of the run (all its processes), and
  records per CPU-second, i.e. **per core**: the number to size Dataflow workers
  with (it does not depend on how busy the machine was);
* ``µs/rec`` — CPU microseconds per record; equal values across sizes mean cost
  grows linearly; ``marginal µs/rec`` subtracts the fixed start-up cost (measured
  on a 100-record log) and is the cost of one more record;
* ``peak RSS MB`` — the largest resident set of any process of the run
  (``getrusage`` of the child; with ``--workers`` the largest worker process too,
  from ``/proc/PID/status`` VmHWM);
* ``raw sqlglot`` — ``parse_one(sql).sql()`` on the same statements in one loop,
  per CPU-second: the ceiling for a pipeline that must parse and print every
  statement; ``% of raw`` is the pipeline's rec/CPU-s against it.

``--postgres auto`` adds a 100k run with ``--validate execute`` against the
PostgreSQL Chinook database at 127.0.0.1:5432 (loaded from
``shared/data/chinook/Chinook_PostgreSql.sql`` when missing), skipped with a note
when the server is not reachable; with ``--workers`` a second one on N workers,
where queries with 1,000 or more records run apart from the grouping. ``--big``
adds 1M (about 10 minutes per core).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple, Optional, Sequence

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
CHINOOK_SQL = REPO.parent / "shared" / "data" / "chinook" / "Chinook_PostgreSql.sql"
PG_URL = "postgresql://postgres@127.0.0.1:5432/chinook"
SEED = 7

sys.path.insert(0, str(HERE))
import gen_logs  # noqa: E402 - the generator next to this file


class Run(NamedTuple):
    label: str
    records: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    worker_rss_mb: Optional[float]
    pairs: Optional[int]
    dead: Optional[int]


def parse_size(text: str) -> int:
    """``10k`` → 10000, ``1M`` → 1000000."""
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def size_label(count: int) -> str:
    return f"{count // 1_000_000}M" if count >= 1_000_000 else f"{count // 1000}k" if count >= 1000 else str(count)


def log_file(count: int) -> pathlib.Path:
    """The generated log of ``count`` queries (made once, then reused: generation is deterministic)."""
    path = RESULTS / f"logs-{size_label(count)}-seed{SEED}.jsonl"
    if not path.exists():
        written = gen_logs.write(gen_logs.generate(count, SEED), str(path), "jsonl")
        print(f"generated {written} queries -> {path}", file=sys.stderr)
    return path


class _TreeMemory:
    """Polls ``/proc`` for the peak resident set (VmHWM) of every descendant of a process."""

    def __init__(self, root_pid: int, interval_s: float = 0.2):
        self.root, self.interval = root_pid, interval_s
        self.peaks: dict[int, int] = {}  # pid -> VmHWM kB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        if os.path.isdir("/proc"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _children(self) -> dict[int, int]:
        parents = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as handle:
                        fields = handle.read().rsplit(b")", 1)[1].split()
                    parents[int(entry.name)] = int(fields[1])
                except (OSError, IndexError, ValueError):
                    continue
        return parents

    def _descendants(self) -> set[int]:
        parents, found, frontier = self._children(), set(), {self.root}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
            found |= frontier
        return found

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self._descendants():
                try:
                    with open(f"/proc/{pid}/status") as handle:
                        for line in handle:
                            if line.startswith("VmHWM:"):
                                self.peaks[pid] = max(self.peaks.get(pid, 0), int(line.split()[1]))
                except OSError:
                    continue

    def largest_descendant_mb(self) -> Optional[float]:
        return max(self.peaks.values()) / 1024 if self.peaks else None


def run_pipeline(label: str, log: pathlib.Path, records: int, extra: Sequence[str], workdir: pathlib.Path) -> Run:
    """One ``python -m pipeline run`` in a fresh process, measured."""
    out = workdir / label.replace(" ", "_") / "out"
    command = [sys.executable, "-m", "pipeline", "run", "--sql_logs", str(log), "--dialect", "postgres",
               "--output", str(out), "--html_report=false", *extra]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with _TreeMemory(process.pid) as memory:
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{label}: the pipeline failed ({process.returncode}):\n{stderr[-3000:]}")
    report_path = out.parent / "out-report.json"
    pairs = dead = None
    if report_path.exists():
        accounting = json.loads(report_path.read_text())["accounting"]
        pairs, dead = accounting["pairs_written"], accounting["dead_letters"]
    worker_mb = memory.largest_descendant_mb()
    return Run(label, records, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, worker_mb, pairs, dead)


def raw_sqlglot_rate(log: pathlib.Path, limit: int) -> tuple[float, int]:
    """Statements per CPU-second of ``parse_one(sql, read="postgres").sql("postgres")`` over the log's SQL."""
    import logging

    import sqlglot

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    statements = []
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            statements.append(json.loads(line)["sql"])
            if len(statements) >= limit:
                break
    started = time.process_time()
    for sql in statements:
        try:
            sqlglot.parse_one(sql, read="postgres").sql("postgres")
        except Exception:  # noqa: BLE001 - garbage lines cost what they cost
            pass
    return len(statements) / (time.process_time() - started), len(statements)


def stage_functions_child(log: str) -> None:
    """(In a child process) the per-record work of the fused read → normalize → classify →
    describe stage as plain function calls, streaming through the log: what a worker does
    per record, without Beam. Prints ``{"records": N, "cpu_s": S}``."""
    import logging

    from transforms.sql.concepts import concept_tags
    from transforms.sql.hardness import spider_hardness
    from transforms.sql import trees
    from transforms.sql.normalize import Rejection, normalize_cached
    from transforms.sql.question_rules import describe_sql

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    records = 0
    stages = {"read": 0.0, "normalize": 0.0, "classify": 0.0, "describe": 0.0}
    clock = time.perf_counter
    started = time.process_time()
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            records += 1
            t0 = clock()
            sql = json.loads(line)["sql"]
            t1 = clock()
            stages["read"] += t1 - t0
            result = normalize_cached(sql, "postgres", "postgres")
            if isinstance(result, Rejection):  # rejected queries cost what they cost
                stages["normalize"] += clock() - t1
                continue
            tree = trees.tree_for(result.sql, "postgres")
            t2 = clock()
            spider_hardness(tree)
            concept_tags(tree)
            t3 = clock()
            describe_sql(tree)
            stages["describe"] += clock() - t3
            stages["normalize"] += t2 - t1
            stages["classify"] += t3 - t2
    print(json.dumps({"records": records, "cpu_s": time.process_time() - started, "stages": stages}))


def run_stage_functions(log: pathlib.Path) -> tuple[int, float, float]:
    """``stage_functions_child`` in a fresh process: (records, CPU s of the loop, peak RSS MB)."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_pipeline; bench_pipeline.stage_functions_child({str(log)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit("the stage-function run failed")
    result = json.loads(output.strip().splitlines()[-1])
    STAGE_SECONDS[log.name] = (result["records"], result["stages"])
    return result["records"], result["cpu_s"], usage.ru_maxrss / 1024


#: per log file: (records, seconds spent in each stage function), filled by run_stage_functions
STAGE_SECONDS: dict[str, tuple[int, dict[str, float]]] = {}


def format_stage_rates() -> str:
    """Records/s of each stage's own function (wall time of the calls, one core)."""
    lines = [f"{'per stage (no Beam)':<24} {'log':<22} " + " ".join(f"{name:>10}" for name in
                                                                      ("read", "normalize", "classify", "describe"))]
    for name, (records, stages) in STAGE_SECONDS.items():
        rates = " ".join(f"{records / max(stages[k], 1e-9):>10.0f}" for k in ("read", "normalize", "classify", "describe"))
        lines.append(f"{'records/s':<24} {name:<22} {rates}")
    return "\n".join(lines)


def postgres_ready() -> Optional[str]:
    """None when the Chinook database answers (loading it if absent), else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'chinook'").fetchone()
    except Exception as error:  # noqa: BLE001
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable ({type(error).__name__})"
    if not exists:
        if not CHINOOK_SQL.exists() or not shutil.which("psql"):
            return "database chinook is missing and cannot be loaded here"
        print("loading Chinook into PostgreSQL ...", file=sys.stderr)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-v", "ON_ERROR_STOP=1",
                        "-f", str(CHINOOK_SQL)], check=True, stdout=subprocess.DEVNULL)
    for _ in range(60):  # another process may still be loading it
        try:
            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                if conn.execute("SELECT count(*) FROM track").fetchone()[0] > 0:
                    return None
        except Exception:  # noqa: BLE001
            pass
        time.sleep(2)
    return "database chinook has no tracks (still loading?)"


def format_table(runs: Sequence[Run], raw_rate: float, fixed_cpu_s: float) -> str:
    header = (f"{'run':<24} {'records':>9} {'wall s':>8} {'rec/s':>7} {'CPU s':>8} {'rec/CPU-s':>9} "
              f"{'µs/rec':>7} {'marginal µs/rec':>15} {'% of raw':>8} {'peak RSS MB':>11} {'worker RSS MB':>13} "
              f"{'pairs':>8} {'dead':>6}")
    lines = [header, "-" * len(header)]
    for run in runs:
        per_cpu = run.records / run.cpu_s
        marginal = (run.cpu_s - fixed_cpu_s) / run.records * 1e6 if run.records > 1000 else float("nan")
        worker = f"{run.worker_rss_mb:.0f}" if run.worker_rss_mb is not None else "-"
        lines.append(
            f"{run.label:<24} {run.records:>9} {run.wall_s:>8.1f} {run.records / run.wall_s:>7.0f} {run.cpu_s:>8.1f} "
            f"{per_cpu:>9.0f} {run.cpu_s / run.records * 1e6:>7.0f} {marginal:>15.0f} {per_cpu / raw_rate:>8.0%} "
            f"{run.peak_rss_mb:>11.0f} {worker:>13} {run.pairs if run.pairs is not None else '-':>8} "
            f"{run.dead if run.dead is not None else '-':>6}"
        )
    lines.append(f"{'raw sqlglot parse+gen':<24} {'':>9} {'':>8} {'':>7} {'':>8} {raw_rate:>9.0f}")
    return "\n".join(lines)


def format_functions(rows: Sequence[tuple[str, int, float, float]], raw_rate: Optional[float] = None) -> str:
    """The stage functions without Beam: the per-core ceiling of the job's own code."""
    lines = [f"{'stage functions, no Beam':<24} {'records':>9} {'CPU s':>8} {'rec/CPU-s':>9} {'µs/rec':>7} "
             f"{'% of raw':>8} {'peak RSS MB':>11}"]
    for label, records, cpu_s, rss_mb in rows:
        share = f"{records / cpu_s / raw_rate:>8.0%}" if raw_rate else f"{'-':>8}"
        lines.append(f"{'functions ' + label:<24} {records:>9} {cpu_s:>8.1f} {records / cpu_s:>9.0f} "
                     f"{cpu_s / records * 1e6:>7.0f} {share} {rss_mb:>11.0f}")
    return "\n".join(lines)


def compile_project() -> None:
    """Byte-compile the job's packages first, as ``pip install`` does: a run must not pay for
    compiling them (it would where PYTHONDONTWRITEBYTECODE is set, as on our CI machines)."""
    import compileall

    root = pathlib.Path(__file__).resolve().parent.parent
    for package in ("pipeline", "transforms", "adapters"):
        compileall.compile_dir(str(root / package), quiet=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k", help="comma-separated log sizes (default 10k,100k)")
    parser.add_argument("--big", action="store_true", help="also 1M")
    parser.add_argument("--workers", type=int, default=0,
                        help="also run every size with --direct_running_mode multi_processing and N workers "
                             "(worker RSS MB: the largest worker process, to show it stays flat as input grows)")
    parser.add_argument("--postgres", choices=("auto", "skip"), default="auto",
                        help="a 100k run executing on PostgreSQL Chinook when reachable")
    parser.add_argument("--functions-only", action="store_true",
                        help="only the stage functions without Beam (quick)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if args.big:
        sizes.append(1_000_000)
    compile_project()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)

    functions = [(size_label(count), *run_stage_functions(log_file(count))) for count in sizes]
    if args.functions_only:
        print(format_functions(functions))
        print(format_stage_rates())
        return 0
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="sqlpairs-bench-"))
    runs: list[Run] = []
    try:
        fixed = run_pipeline("start-up (100 records)", log_file(100), 100, ["--validate", "parse"], workdir)
        runs.append(fixed)
        for count in sizes:
            runs.append(run_pipeline(f"parse {size_label(count)}", log_file(count), count,
                                     ["--validate", "parse"], workdir))
            print(f"done: {runs[-1].label} in {runs[-1].wall_s:.0f} s", file=sys.stderr)
        for count in sizes if args.workers else ():  # every size: a worker's peak RSS must not grow with it
            runs.append(run_pipeline(f"parse {size_label(count)} x{args.workers} workers", log_file(count), count,
                                     ["--validate", "parse", "--direct_running_mode", "multi_processing",
                                      "--direct_num_workers", str(args.workers)], workdir))
            print(f"done: {runs[-1].label} in {runs[-1].wall_s:.0f} s", file=sys.stderr)
        notes = []
        if args.postgres == "auto":
            why_not = postgres_ready()
            if why_not:
                notes.append(f"execute on PostgreSQL skipped: {why_not}")
            else:
                count = 100_000
                execute = ["--validate", "execute", "--database", PG_URL, "--timeout_s", "5"]
                runs.append(run_pipeline(f"execute pg {size_label(count)}", log_file(count), count, execute, workdir))
                if args.workers:  # several workers: the ~10 queries with 1,000+ records run apart (no hot key)
                    runs.append(run_pipeline(
                        f"execute pg {size_label(count)} x{args.workers} workers", log_file(count), count,
                        [*execute, "--direct_running_mode", "multi_processing", "--direct_num_workers",
                         str(args.workers)], workdir))
        raw_rate, measured = raw_sqlglot_rate(log_file(max(sizes)), 20_000)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(format_table(runs, raw_rate, fixed.cpu_s))
    print()
    print(format_functions(functions, raw_rate))
    print(format_stage_rates())
    print(f"\nraw sqlglot: parse_one(sql, read='postgres').sql('postgres') over the first {measured} statements "
          "of the largest log, one process. start-up = the 100-record run (imports, graph, runner).")
    parse_runs = [r for r in runs if r.label.startswith("parse ") and "workers" not in r.label]
    if len(parse_runs) >= 2:
        small, large = parse_runs[0], parse_runs[-1]
        ratio = ((large.cpu_s - fixed.cpu_s) / large.records) / ((small.cpu_s - fixed.cpu_s) / small.records)
        print(f"linearity: marginal CPU per record at {size_label(large.records)} / at "
              f"{size_label(small.records)} = {ratio:.2f} (1.00 = linear)")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
