"""One long agent conversation → PostgreSQL → JSONL, with the defaults: wall time, peak RSS, output size.

Usage::

    python bench/bench_chat.py [--calls 10000,50000] [--database postgresql://…/chinook] [-- JOB_ARGS...]

For each size it writes ONE conversation (a Vercel AI SDK ``UIMessage`` JSON array — the
export of a single long agent session) of that many ``db_query`` tool calls: every call a
user question, then an assistant message with a text part and the tool part; about 30 % of
the calls repeat an earlier call's SQL and 5 % fail (``output-error``). The queries are
``bench_execute``'s Chinook templates with varied literals (fixed seed: the same file every
time). Then it runs ``python -m pipeline run --chat_history FILE --database URL --output …``
with the defaults (only ``--html_report=false``: the plots page adds ~2 s of matplotlib that
is not the job) as a subprocess and prints, per size:

* wall s — start to exit of the job's process;
* cpu s — the job process's user + system CPU time (``os.wait4``; the database server's is not
  in it): steadier than wall time on a machine that runs other work too;
* peak RSS MB — the job process's ``ru_maxrss`` (``os.wait4``);
* pairs ÷ in — the pairs file over the input file's bytes;
* out ÷ in — the job's JSONL outputs (pairs, dead letters, conversations with ``--context full``);
* all ÷ in — every byte on disk under the output folder (also the report and the ``PREFIX-dataset/``
  sets, whose ``pairs`` set is the pairs shards again: hard links on local disk, counted once).

Targets (issue 15): 10,000 calls under 3 s wall, under 600 MB, output at most 2× the input;
50,000 calls under 9 s. Chinook is loaded into the local PostgreSQL when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_execute import DEFAULT_DATABASE, _ensure_chinook, compile_project, distinct_queries  # noqa: E402

WORK_DIR = Path("/tmp/sqlpairs_bench_chat")
#: Share of calls that repeat an earlier call's SQL, and share of calls that fail.
REPEATED, FAILED = 0.30, 0.05


#: Distinct queries the Chinook templates give before their literal space runs thin.
_TEMPLATE_QUERIES = 1000


def distinct_pool(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` distinct (question, SQL): the templates' queries, then the same wrapped with a distinct
    (never reached) ``LIMIT``, as an agent that re-asks with another page size would."""
    base = distinct_queries(min(count, _TEMPLATE_QUERIES), seed)
    pool = list(base)
    for index in range(len(base), count):
        question, sql = base[index % len(base)]
        pool.append((question, f"SELECT * FROM ({sql}) AS q LIMIT {100_000 + index}"))
    return pool


def write_conversation(path: Path, calls: int, seed: int = 15) -> dict[str, int]:
    """One conversation of ``calls`` tool calls as a UIMessage JSON array, written as it is generated."""
    rng = random.Random(seed)
    pool = distinct_pool(int(calls * (1 - REPEATED)) + 1, seed)
    used: list[int] = []
    failed = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        for index in range(calls):
            if used and rng.random() < REPEATED:
                choice = rng.choice(used)
            else:
                choice = len(used) if len(used) < len(pool) else rng.randrange(len(pool))
                used.append(choice)
            question, sql = pool[choice]
            part = {"type": "tool-db_query", "toolCallId": f"call-{index}", "input": {"sql": sql}}
            if rng.random() < FAILED:
                failed += 1
                part.update(state="output-error", errorText="canceling statement due to statement timeout")
            else:
                part.update(state="output-available", output={"rows": [[rng.randint(0, 999)]], "rowCount": 1})
            messages = [
                {"id": f"u{index}", "role": "user", "parts": [{"type": "text", "text": question}]},
                {"id": f"a{index}", "role": "assistant", "parts": [
                    {"type": "text", "text": "Let me query the database."}, part,
                    {"type": "text", "text": f"Here is what I found: {rng.randint(0, 999)} rows."}]},
            ]
            handle.write(("," if index else "") + ",".join(json.dumps(m) for m in messages))
        handle.write("]")
    return {"calls": calls, "distinct_sql": len(set(used)), "failed_calls": failed}


def run_job(command: list[str]) -> tuple[float, float, float]:
    """``(wall s, peak RSS MB, CPU s)`` of one job process (CPU: user + system, the job's process only;
    the database server's work is not in it)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench_chat: the job failed ({code}):\n{stderr.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _bytes_under(prefix: Path) -> tuple[int, int, int]:
    """(pairs bytes, pairs + dead letters + conversations bytes, every output byte on disk) for an output
    prefix; a file under two names (the dataset folder's hard link to the pairs) counts once."""
    pairs = sum(p.stat().st_size for p in prefix.parent.glob(f"{prefix.name}-0*-of-*.jsonl"))
    jsonl = sum(p.stat().st_size for p in prefix.parent.glob(f"{prefix.name}-*-of-*.jsonl"))
    files = {(s.st_dev, s.st_ino): s.st_size for s in (p.stat() for p in prefix.parent.rglob("*") if p.is_file())}
    return pairs, jsonl, sum(files.values())


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    job_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="10000,50000", help="conversation sizes, comma-separated")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args(argv)
    _ensure_chinook(args.database)
    compile_project()
    targets = {10_000: 3.0, 50_000: 9.0}
    print(f"{'calls':>7} {'distinct':>8} {'failed':>6} {'input MB':>8} {'pairs':>6} {'dead':>5} {'merged':>6} "
          f"{'wall s':>7} {'cpu s':>6} {'peak MB':>8} {'pairs/in':>8} {'out/in':>7} {'all/in':>7}  target")
    for calls in (int(c) for c in args.calls.split(",")):
        chat = WORK_DIR / f"conversation-{calls}.json"
        shape = write_conversation(chat, calls)
        out_dir = WORK_DIR / f"out-{calls}"
        if out_dir.exists():
            for path in sorted(out_dir.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
        out = out_dir / "pairs"
        command = [sys.executable, "-m", "pipeline", "run", "--chat_history", str(chat), "--database", args.database,
                   "--output", str(out), "--html_report=false", *job_args]
        wall, peak_mb, cpu = run_job(command)
        report = json.loads(Path(f"{out}-report.json").read_text(encoding="utf-8"))["accounting"]
        size = chat.stat().st_size
        pairs_bytes, out_bytes, all_bytes = _bytes_under(out)
        target = targets.get(calls)
        verdict = ""
        if target is not None:
            ok = wall < target and (calls > 10_000 or (peak_mb < 600 and out_bytes <= 2 * size))
            verdict = f"{'PASS' if ok else 'FAIL'} (< {target:g} s" + (", < 600 MB, out ≤ 2× in)" if calls <= 10_000
                                                                      else ")")
        print(f"{calls:>7} {shape['distinct_sql']:>8} {shape['failed_calls']:>6} {size / 1e6:>8.1f} "
              f"{report['pairs_written']:>6} {report['dead_letters']:>5} {report['merged_duplicates']:>6} "
              f"{wall:>7.2f} {cpu:>6.2f} {peak_mb:>8.0f} {pairs_bytes / size:>8.2f} {out_bytes / size:>7.2f} {all_bytes / size:>7.2f}  "
              f"{verdict}")
    print(f"job: python -m pipeline run --chat_history FILE --database {args.database} --output … --html_report=false "
          + " ".join(job_args) + f"; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
