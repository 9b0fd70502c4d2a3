"""The floor under bench_chat: what reading, parsing and executing its distinct SQL costs with no pipeline at all.

Usage::

    python bench/bench_floor.py [--calls 10000] [--database postgresql://…/chinook] [--repeat 3]

``bench/bench_chat.py`` times the whole job on one conversation of N ``db_query`` calls. This
benchmark takes the same conversation (the same generator and seed) and measures, in CPU
seconds, the work no implementation of "validated pairs from these calls" can skip, each done
the cheapest way the libraries allow:

* ``start`` — a fresh ``python -c "import apache_beam, sqlglot, psycopg"`` (the job's process
  starts with these imports; its own modules and the runner come on top);
* ``read`` — ``json.load`` of the conversation file (the job streams it, which costs more);
* ``sqlglot`` — ``sqlglot.parse_one(sql, read="postgres").sql("postgres")`` once per distinct
  SQL of a call that did not fail (the job also normalizes identifiers, checks safety, reads
  tables and tags concepts);
* ``psycopg`` — the client's CPU for ``cursor.execute(sql); cursor.fetchall()`` per distinct SQL
  on one autocommit connection (the job also opens a read-only transaction, sets time limits
  and reads through a server-side cursor);
* ``PostgreSQL`` — the server backend's CPU for those same queries (from ``/proc/PID/stat`` of
  the backend serving that connection: the server runs on this machine's cores too);
* ``sqlpairs executor`` — client and server CPU of the same queries through the job's own
  ``PostgresExecutor`` on one connection: the read-only transaction, its time limits and the
  server-side cursor that bounds every result (``adapters.db.postgres``) — what safety costs.

Each is the best of ``--repeat`` runs. The sum of the first five over the machine's cores is a
lower bound on the wall time of any job doing this work with these libraries, however perfectly
it were spread; with the executor's rows in place of the plain ones, the bound for executing
safely. The last rows run the job itself (as bench_chat does) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_chat import WORK_DIR, run_job, write_conversation  # noqa: E402
from bench_execute import DEFAULT_DATABASE, _ensure_chinook, compile_project  # noqa: E402


def calls_of(conversation: list[dict]) -> list[tuple[str, bool]]:
    """``(sql, failed)`` of every ``db_query`` tool call, in order.

    >>> calls_of([{"parts": [{"type": "tool-db_query", "input": {"sql": "SELECT 1"}, "state": "output-error"}]}])
    [('SELECT 1', True)]
    """
    return [(part["input"]["sql"], part.get("state") == "output-error")
            for message in conversation for part in message.get("parts", ())
            if part.get("type") == "tool-db_query"]


def best_cpu(work: Callable[[], None], repeat: int) -> float:
    """The least CPU time (this process, all threads) ``work`` took over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def start_cpu(repeat: int) -> float:
    """CPU seconds of a fresh interpreter importing Beam, sqlglot and psycopg (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        process = subprocess.Popen([sys.executable, "-c", "import apache_beam, sqlglot, psycopg"])
        _, _, usage = os.wait4(process.pid, 0)
        best = min(best, usage.ru_utime + usage.ru_stime)
    return best


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) the PostgreSQL backend ``pid`` has used so far (it runs here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def execute_cpu(database: str, queries: list[str], repeat: int) -> tuple[float, float]:
    """``(client CPU s, server CPU s)`` of running every query once on one autocommit connection, best of
    ``repeat`` each (the server's from its backend's ``/proc`` entry: the server must be on this machine)."""
    import psycopg

    client, server = float("inf"), float("inf")
    with psycopg.connect(database, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for _ in range(repeat):
            before_server, before_client = _backend_cpu(pid), time.process_time()
            for sql in queries:
                conn.execute(sql).fetchall()
            client = min(client, time.process_time() - before_client)
            server = min(server, _backend_cpu(pid) - before_server)
    return client, server


def executor_cpu(database: str, queries: list[str], repeat: int) -> tuple[float, float]:
    """``(client CPU s, server CPU s)`` of the same queries through ``adapters.db``'s executor, one connection."""
    import psycopg

    from adapters.db import open_executor

    client, server = float("inf"), float("inf")
    executor = open_executor(database, timeout_s=5.0, max_rows=10_000, max_connections=1)
    try:
        executor.execute("SELECT 1")  # its one connection is open now: find its backend
        with psycopg.connect(database, autocommit=True) as monitor:
            pids = [row[0] for row in monitor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'sqlpairs' AND pid <> pg_backend_pid()")]
        for _ in range(repeat):
            before_server, before_client = sum(map(_backend_cpu, pids)), time.process_time()
            for sql in queries:
                executor.execute(sql)
            client = min(client, time.process_time() - before_client)
            server = min(server, sum(map(_backend_cpu, pids)) - before_server)
    finally:
        executor.close()
    return client, server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="tool calls in the conversation (bench_chat's)")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--repeat", type=int, default=3, help="runs per part; the best counts")
    args = parser.parse_args(argv)
    _ensure_chinook(args.database)
    compile_project()
    import sqlglot

    chat = WORK_DIR / f"conversation-{args.calls}.json"
    write_conversation(chat, args.calls)
    conversation = json.loads(chat.read_text(encoding="utf-8"))
    distinct = list(dict.fromkeys(sql for sql, failed in calls_of(conversation) if not failed))

    def parse_all() -> None:
        for sql in distinct:
            sqlglot.parse_one(sql, read="postgres").sql("postgres")

    parts = {
        "start (import beam, sqlglot, psycopg)": start_cpu(args.repeat),
        "read (json.load of the file)": best_cpu(lambda: json.loads(chat.read_text(encoding="utf-8")), args.repeat),
        "sqlglot parse + print, distinct SQL": best_cpu(parse_all, args.repeat),
    }
    client, server = execute_cpu(args.database, distinct, args.repeat)
    parts["psycopg client, distinct SQL"] = client
    parts["PostgreSQL server, distinct SQL"] = server
    safe_client, safe_server = executor_cpu(args.database, distinct, args.repeat)
    cores = os.cpu_count() or 1
    total = sum(parts.values())
    safe_total = total - client - server + safe_client + safe_server
    print(f"{args.calls} calls, {len(distinct)} distinct SQL that did not fail; best of {args.repeat}; {cores} CPUs")
    print(f"{'part':<48} {'cpu s':>7} {'µs per distinct SQL':>20}")
    for name, seconds in (*parts.items(), ("sqlpairs executor client (read-only, cursor)", safe_client),
                          ("sqlpairs executor server (read-only, cursor)", safe_server)):
        print(f"{name:<48} {seconds:>7.2f} {seconds / len(distinct) * 1e6:>20.0f}")
    print(f"{'lower bound, plain execution: sum ÷ ' + str(cores) + ' cores':<48} {total / cores:>7.2f}")
    print(f"{'lower bound, the executor: sum ÷ ' + str(cores) + ' cores':<48} {safe_total / cores:>7.2f}")
    out = WORK_DIR / f"floor-{args.calls}" / "pairs"
    out.parent.mkdir(parents=True, exist_ok=True)
    wall, peak_mb, cpu = run_job([sys.executable, "-m", "pipeline", "run", "--chat_history", str(chat), "--database",
                                  args.database, "--output", str(out), "--html_report=false"])
    print(f"{'sqlpairs job: cpu s (its process only)':<48} {cpu:>7.2f}")
    print(f"{'sqlpairs job: wall s':<48} {wall:>7.2f}")


if __name__ == "__main__":
    main()
