"""Execution on PostgreSQL: the Execute stage against a raw pool loop, and the whole job on 10,000 chat calls.

Usage::

    python bench/bench_execute.py stage [--queries 3000] [--max_connections N] [--repeat 3]
    python bench/bench_execute.py job   [--calls 10000] [--repeat 5] [-- BEAM_ARGS...]

Both run against Chinook on the local PostgreSQL
(``postgresql://postgres@127.0.0.1:5432/chinook``, ``--database`` to change it);
Chinook is loaded from ``../shared/data`` when the database is absent.

``stage`` runs the same distinct analytics queries (templates over Chinook with
varied literals, fixed seed) three ways, each with ``--max_connections`` queries in
flight (default: ``transforms.kit.executors.default_max_connections()``, 4 per core):

* ``raw psycopg_pool loop`` — the baseline: a ``ConnectionPool`` of that size and a
  thread pool running ``conn.execute(sql).fetchall()``, nothing else;
* ``PostgresExecutor alone`` — ``executor.execute`` on a thread pool of that size: the
  read-only transaction, limits, server-side cursor, result hash and ``Execution``;
* ``ExecuteQueries (DoFn)`` — the stage's DoFn driven directly (setup, one element
  per distinct query, finish_bundle): the executor plus the stage's own work (finding
  whether the query has a top-level ORDER BY, from its tokens, and the thread-pool
  bookkeeping);
* ``ExecuteQueries (pipeline)`` — the stage in a Beam pipeline on the FnApiRunner,
  records keyed and grouped by (database, SQL fingerprint) first; includes the
  runner's start-up.

Best of ``--repeat`` runs (default 5; the paths take turns, so a busy moment of
the machine hurts them alike: PostgreSQL shares the cores with the client); the
ratio is throughput against the raw loop (target: the DoFn path at least 70 %).
Both commands byte-compile the project first, as ``pip install`` would.

``job`` writes a chat history of ``--calls`` ``db_query`` tool calls (Vercel AI SDK
UIMessages, JSONL of conversations, realistic repeats: a Zipf-like draw from a
pool of distinct queries, a few failed calls) under ``/tmp/sqlpairs_bench_execute``,
then times ``python -m pipeline run --chat_history ... --database ...`` as a
subprocess, start to exit, ``--repeat`` times, and prints every run, the median
and the best (target: under 6 s wall, judged on the median). The CPU time of each
run is printed too: on a shared virtual machine it varies by ±30 % from one minute
to the next for the same work, and wall time with it.
Arguments after ``--`` go to the job (e.g. ``--direct_running_mode multi_processing``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/chinook"
WORK_DIR = Path("/tmp/sqlpairs_bench_execute")

COUNTRIES = ("USA", "Canada", "France", "Brazil", "Germany", "United Kingdom", "Portugal", "India", "Chile",
             "Czech Republic", "Norway", "Sweden", "Italy", "Spain", "Australia", "Argentina")
WORDS = ("love", "night", "rock", "blue", "you", "time", "world", "heart", "man", "girl", "day", "fire", "dance")

#: (question, SQL) templates over Chinook's PostgreSQL schema; ``{...}`` filled by ``_fill``.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Which genres have the most tracks longer than {ms} ms?",
     "SELECT g.name, COUNT(*) AS tracks FROM track t JOIN genre g ON g.genre_id = t.genre_id "
     "WHERE t.milliseconds > {ms} GROUP BY g.name ORDER BY tracks DESC LIMIT {n}"),
    ("Who are the top {n} customers in {country} by spend?",
     "SELECT c.first_name, c.last_name, SUM(i.total) AS spent FROM customer c JOIN invoice i "
     "ON i.customer_id = c.customer_id WHERE c.country = '{country}' "
     "GROUP BY c.customer_id, c.first_name, c.last_name ORDER BY spent DESC LIMIT {n}"),
    ("How many tracks does each album of artist {artist} have?",
     "SELECT a.title, COUNT(t.track_id) AS tracks FROM album a JOIN track t ON t.album_id = a.album_id "
     "WHERE a.artist_id = {artist} GROUP BY a.title"),
    ("What were sales by country in {year}?",
     "SELECT billing_country, SUM(total) AS sales FROM invoice WHERE invoice_date >= DATE '{year}-01-01' "
     "AND invoice_date < DATE '{year}-12-31' GROUP BY billing_country ORDER BY sales DESC"),
    ("Which tracks mention '{word}'?",
     "SELECT name, milliseconds / 1000 AS seconds FROM track WHERE name ILIKE '%{word}%' "
     "ORDER BY seconds DESC LIMIT {n}"),
    ("How many customers does each support rep have?",
     "SELECT e.first_name, e.last_name, COUNT(c.customer_id) AS customers FROM employee e "
     "LEFT JOIN customer c ON c.support_rep_id = e.employee_id WHERE e.employee_id <= {employee} "
     "GROUP BY e.employee_id, e.first_name, e.last_name"),
    ("Which playlists have more than {k} tracks?",
     "SELECT p.name, COUNT(*) AS tracks FROM playlist p JOIN playlist_track pt ON pt.playlist_id = p.playlist_id "
     "GROUP BY p.name HAVING COUNT(*) > {k}"),
    ("What is on invoice {invoice}?",
     "SELECT t.name, il.unit_price, il.quantity FROM invoice_line il JOIN track t ON t.track_id = il.track_id "
     "WHERE il.invoice_id = {invoice}"),
    ("How many invoices per month in {year}?",
     "SELECT EXTRACT(MONTH FROM invoice_date) AS month, COUNT(*) AS invoices FROM invoice "
     "WHERE EXTRACT(YEAR FROM invoice_date) = {year} GROUP BY month ORDER BY month"),
    ("Which artists have the most albums?",
     "SELECT ar.name, COUNT(DISTINCT al.album_id) AS albums FROM artist ar JOIN album al "
     "ON al.artist_id = ar.artist_id GROUP BY ar.name HAVING COUNT(DISTINCT al.album_id) >= {k2} "
     "ORDER BY albums DESC LIMIT {n}"),
    ("Who composed the most tracks in genre {genre}?",
     "SELECT composer, COUNT(*) AS tracks FROM track WHERE composer IS NOT NULL AND genre_id = {genre} "
     "GROUP BY composer ORDER BY tracks DESC LIMIT 5"),
    ("How much revenue per country from customers with id under {customer}?",
     "SELECT c.country, COUNT(DISTINCT c.customer_id) AS customers, SUM(il.unit_price * il.quantity) AS revenue "
     "FROM customer c JOIN invoice i ON i.customer_id = c.customer_id "
     "JOIN invoice_line il ON il.invoice_id = i.invoice_id WHERE c.customer_id < {customer} GROUP BY c.country"),
    ("List the tracks of album {album}.",
     "SELECT * FROM track WHERE album_id = {album}"),
    ("How many tracks cost more than {price}?",
     "SELECT COUNT(*) FROM track WHERE unit_price > {price} AND milliseconds > {ms}"),
)


def _values(rng: random.Random) -> dict[str, object]:
    return {
        "ms": rng.randrange(100_000, 600_000, 1000), "n": rng.choice((3, 5, 10, 20)),
        "country": rng.choice(COUNTRIES), "artist": rng.randint(1, 275), "year": rng.randint(2021, 2025),
        "word": rng.choice(WORDS), "employee": rng.randint(1, 8), "k": rng.randint(1, 50),
        "invoice": rng.randint(1, 412), "k2": rng.randint(1, 5), "genre": rng.randint(1, 25),
        "customer": rng.randint(2, 60), "album": rng.randint(1, 347), "price": rng.choice((0.5, 0.99, 1.5)),
    }


def distinct_queries(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """``count`` distinct (question, SQL) pairs, the same for a given seed."""
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    while len(seen) < count:
        question, sql = rng.choice(TEMPLATES)
        values = _values(rng)
        seen.setdefault(sql.format(**values), question.format(**values))
    return [(question, sql) for sql, question in seen.items()]


def _ensure_chinook(database: str) -> None:
    if database != DEFAULT_DATABASE:
        return
    try:
        from tests.fakes.db_fixtures import load_chinook

        load_chinook()
    except BaseException as error:  # pytest's skip is a BaseException
        sys.exit(f"bench_execute: cannot load Chinook into {database}: {error}")


# --- stage -------------------------------------------------------------------------------------

def _raw_loop(database: str, queries: list[str], connections: int) -> float:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(database, min_size=connections, max_size=connections, open=True) as pool:
        pool.wait()

        def run(sql: str) -> int:
            with pool.connection() as conn:
                return len(conn.execute(sql).fetchall())

        with ThreadPoolExecutor(connections) as threads:
            started = time.perf_counter()
            list(threads.map(run, queries))
            return time.perf_counter() - started


def _executor_loop(database: str, queries: list[str], connections: int) -> float:
    """The executor alone (read-only transaction, limits, cursor, hash), on the same thread pool."""
    from adapters.db import open_executor

    executor = open_executor(database, max_connections=connections)
    try:
        executor.execute("SELECT 1")  # warm: pool built, first connection made
        with ThreadPoolExecutor(connections) as threads:
            started = time.perf_counter()
            results = list(threads.map(executor.execute, queries))
            elapsed = time.perf_counter() - started
    finally:
        executor.close()
    assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"][:3]
    return elapsed


def _records(queries: list[str]):
    """Records as Normalize leaves them, and the parsed tree of each normalized SQL."""
    from transforms.core.record import new_record
    from transforms.sql.normalize import normalize_sql

    records, parsed = [], {}
    for sql in queries:
        result = normalize_sql(sql, "postgres", "postgres")
        records.append(new_record(sql)._replace(
            dialect="postgres", normalized_sql=result.sql, sql_fingerprint=result.sql_fingerprint))
        parsed[result.sql] = result.tree
    return records, parsed


def _dofn_path(database: str, records: list, connections: int) -> float:
    from apache_beam.utils.windowed_value import WindowedValue

    from transforms.validate.execute import _ExecuteGroupsFn

    fn = _ExecuteGroupsFn(database, {"timeout_s": 5.0, "max_rows": 10000, "password_env": None}, connections)
    fn.setup()
    fn.start_bundle()  # warm: pool built, first connection made
    list(fn.process(((None, records[0].sql_fingerprint), [records[0]])))
    list(fn.finish_bundle())
    fn.start_bundle()
    started = time.perf_counter()
    outputs = []
    for record in records:
        outputs.extend(fn.process(((None, record.sql_fingerprint), [record])))
    outputs.extend(fn.finish_bundle())
    elapsed = time.perf_counter() - started
    fn.teardown()
    values = [o.value if isinstance(o, WindowedValue) else o for o in outputs]
    assert len(values) == len(records) and all(v.execution.status == "ok" for v in values), values[:3]
    return elapsed


def _pipeline_path(database: str, records: list, connections: int) -> float:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.validate.execute import ExecuteQueries

    started = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create(records) | ExecuteQueries(database, max_connections=connections)
        out.records | beam.combiners.Count.Globally() | beam.Map(lambda n: None)
    return time.perf_counter() - started


def bench_stage(args: argparse.Namespace) -> None:
    from transforms.kit.executors import default_max_connections

    _ensure_chinook(args.database)
    connections = args.max_connections or default_max_connections()
    queries = [sql for _, sql in distinct_queries(args.queries)]
    records, _ = _records(queries)
    paths: list[tuple[str, Callable[[], float]]] = [
        ("raw psycopg_pool loop", lambda: _raw_loop(args.database, queries, connections)),
        ("PostgresExecutor alone", lambda: _executor_loop(args.database, queries, connections)),
        ("ExecuteQueries (DoFn)", lambda: _dofn_path(args.database, records, connections)),
        ("ExecuteQueries (pipeline)", lambda: _pipeline_path(args.database, records, connections)),
    ]
    best = {name: float("inf") for name, _ in paths}
    for _ in range(args.repeat):  # paths take turns, so a busy moment of the machine hurts them all alike
        for name, run in paths:
            best[name] = min(best[name], run())
    raw = best["raw psycopg_pool loop"]
    print(f"{len(queries)} distinct Chinook queries, {connections} in flight, best of {args.repeat}, "
          f"{os.cpu_count()} CPUs, database {args.database}")
    print(f"{'path':<28} {'seconds':>8} {'queries/s':>10} {'vs raw':>7}")
    for name, seconds in best.items():
        print(f"{name:<28} {seconds:>8.3f} {len(queries) / seconds:>10.0f} {raw / seconds:>7.0%}")
    ratio = raw / best["ExecuteQueries (DoFn)"]
    print(f"DoFn path at {ratio:.0%} of the raw loop (target >= 70%): {'PASS' if ratio >= 0.7 else 'FAIL'}")


# --- job --------------------------------------------------------------------------------------

def write_chat_history(path: Path, calls: int, seed: int = 11) -> dict[str, int]:
    """JSONL, one conversation per line: user question, assistant text, one ``tool-db_query`` call.

    Repeats follow a Zipf-like law over a pool of distinct queries (the same
    dashboards are asked for again and again); about 3 % of calls fail.
    """
    rng = random.Random(seed)
    pool = distinct_queries(max(50, calls // 5), seed)
    weights = [1.0 / (rank + 1) for rank in range(len(pool))]
    drawn = rng.choices(range(len(pool)), weights=weights, k=calls)
    path.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with open(path, "w", encoding="utf-8") as handle:
        index = 0
        conversation = 0
        while index < calls:
            turns = min(rng.randint(1, 6), calls - index)
            messages = []
            for turn in range(turns):
                question, sql = pool[drawn[index]]
                call_id = f"c{conversation}-{turn}"
                part = {"type": "tool-db_query", "toolCallId": call_id, "input": {"sql": sql}}
                if rng.random() < 0.03:
                    failed += 1
                    part.update(state="output-error", errorText="canceling statement due to statement timeout")
                else:
                    part.update(state="output-available", output=[{"rows": rng.randint(0, 20)}])
                messages.append({"id": f"m{conversation}-{turn}u", "role": "user",
                                 "parts": [{"type": "text", "text": question}]})
                messages.append({"id": f"m{conversation}-{turn}a", "role": "assistant",
                                 "parts": [{"type": "text", "text": "Let me query the database."}, part,
                                           {"type": "text", "text": "Here is what I found."}]})
                index += 1
            handle.write(json.dumps({"id": f"conv-{conversation}", "messages": messages}) + "\n")
            conversation += 1
    return {"calls": calls, "conversations": conversation, "distinct_sql": len({drawn_i for drawn_i in drawn}),
            "failed_calls": failed}


def bench_job(args: argparse.Namespace, beam_args: list[str]) -> None:
    _ensure_chinook(args.database)
    chat = WORK_DIR / "chat_history.jsonl"
    shape = write_chat_history(chat, args.calls)
    out = WORK_DIR / "out" / "pairs"
    command = [sys.executable, "-m", "pipeline", "run", "--chat_history", str(chat),
               "--database", args.database, "--output", str(out),
               "--html_report=false",  # the target is chat → JSONL; the plots page adds ~2 s of matplotlib
               *beam_args]
    walls, cpus = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        before = os.times()
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        after = os.times()
        cpus.append(after.children_user + after.children_system - before.children_user - before.children_system)
        if result.returncode != 0:
            sys.exit(f"bench_execute: the job failed ({result.returncode}):\n{result.stderr[-3000:]}")
    wall = statistics.median(walls)
    report = json.loads(Path(f"{out}-report.json").read_text(encoding="utf-8"))
    accounting = report["accounting"]
    print(f"chat history: {shape['calls']} db_query calls in {shape['conversations']} conversations, "
          f"{shape['distinct_sql']} distinct SQL, {shape['failed_calls']} failed calls; {os.cpu_count()} CPUs")
    print(f"command: {' '.join(command[1:])}")
    print(f"{'records read':>12} {'pairs':>6} {'dead':>6} {'merged':>7} {'wall s':>7} {'records/s':>10}")
    print(f"{accounting['records_read']:>12} {accounting['pairs_written']:>6} {accounting['dead_letters']:>6} "
          f"{accounting['merged_duplicates']:>7} {wall:>7.2f} {accounting['records_read'] / wall:>10.0f}")
    print(f"execution: {report.get('execution')}")
    print("runs: " + ", ".join(f"{w:.2f} s wall / {c:.2f} s CPU" for w, c in zip(walls, cpus)))
    print(f"whole job in {wall:.2f} s, median of {len(walls)} (best {min(walls):.2f} s) (target < 6 s): "
          f"{'PASS' if wall < 6 else 'FAIL'}")


def compile_project() -> None:
    """Byte-compile the job's packages first, as ``pip install`` does: a run must not pay for
    compiling them (it would where PYTHONDONTWRITEBYTECODE is set, as on our CI machines)."""
    import compileall

    root = pathlib.Path(__file__).resolve().parent.parent
    for package in ("pipeline", "transforms", "adapters"):
        compileall.compile_dir(str(root / package), quiet=1)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=("stage", "job"))
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--queries", type=int, default=3000, help="distinct queries (stage)")
    parser.add_argument("--max_connections", type=int, default=None, help="queries in flight (stage)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="stage: runs per path, in turns, the best counts; job: runs, the median counts")
    parser.add_argument("--calls", type=int, default=10_000, help="db_query calls in the chat history (job)")
    args = parser.parse_args(argv)
    compile_project()
    if args.command == "stage":
        bench_stage(args)
    else:
        bench_job(args, beam_args)


if __name__ == "__main__":
    main()
