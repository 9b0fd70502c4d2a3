"""A hot query: one SQL repeated ~a million times on one database, executed grouped and apart.

Usage::

    python bench/bench_hot_keys.py [--records 1000000] [--workers 1]

The log: ``--records`` records, 99 % of them one query (``SELECT COUNT(*) FROM
track``) on database ``big``, the rest 1,000 distinct cold queries spread over
``big`` and ``small`` (both the bundled Chinook SQLite file). ``ExecuteQueries``
runs over it twice on Beam's in-process runner:

* ``grouped`` — every query grouped by (database, SQL fingerprint), as on one local
  worker: the hot query is one key holding 99 % of the records;
* ``apart`` — as on several workers (``hot_threshold`` = ``HOT_QUERY_RECORDS``): a
  lifted count finds the hot query, it runs once apart, and its result reaches its
  records as a side input.

For each it prints the queries run (the ``execute.queries`` counter), the largest
number of records under one key of the ``GroupByQuery`` shuffle (what one worker
would receive: the max of the stage's ``execute.group_records`` distribution), the
records out, wall and CPU seconds. Same results either way is
the tests' business (``tests/stages/validate/test_hot_keys.py``); this shows the size of the
largest group at a million records and what the split costs on one process.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
from apache_beam.metrics.metric import Metrics, MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from transforms.core.record import Record  # noqa: E402
from transforms.validate.execute import HOT_QUERY_RECORDS, ExecuteQueries  # noqa: E402

CHINOOK = REPO / "examples" / "chinook.sqlite"
CHUNK = 10_000
COLD_QUERIES = 1_000


def _records(chunk: int, records: int):
    """Records ``chunk * CHUNK`` … of the log: 99 % the hot query, every 100th a cold one."""
    for number in range(chunk * CHUNK, min((chunk + 1) * CHUNK, records)):
        if number % 100:
            sql, db_id, fingerprint = "SELECT COUNT(*) FROM track", "big", "hot"
        else:
            query = (number // 100) % COLD_QUERIES
            sql, db_id, fingerprint = f"SELECT {query} AS n", ("big", "small")[query % 2], f"cold{query}"
        yield Record(id=f"r{number:08d}", question="q", sql=sql, normalized_sql=sql, dialect="sqlite",
                     db_id=db_id, sql_fingerprint=fingerprint)


def run(records: int, workers: int, hot_threshold) -> dict:
    options = ["--runner=FnApiRunner"]
    if workers > 1:
        options += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    databases = f"big=sqlite:///{CHINOOK},small=sqlite:///{CHINOOK}"
    pipeline = beam.Pipeline(options=PipelineOptions(options))
    chunks = (records + CHUNK - 1) // CHUNK
    executed = (
        pipeline
        | beam.Create(range(chunks))
        | beam.FlatMap(_records, records)
        | "ExecuteQueries" >> ExecuteQueries(databases, max_connections=4, hot_threshold=hot_threshold)
    )
    executed.records | "CountOut" >> beam.Map(lambda _: Metrics.counter("bench", "records_out").inc())
    started, cpu = time.monotonic(), _cpu()
    result = pipeline.run()
    result.wait_until_finish()
    wall, cpu = time.monotonic() - started, _cpu() - cpu
    metrics = result.metrics().query(MetricsFilter())
    counters: dict[str, int] = {}
    for counter in metrics["counters"]:
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + counter.committed
    largest = max((d.committed.max for d in metrics["distributions"]
                   if d.key.metric.name == "execute.group_records"), default=0)
    return {"queries": counters.get("execute.queries", 0), "largest": largest,
            "out": counters.get("records_out", 0), "wall": wall, "cpu": cpu}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the log (default 1,000,000)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    args = parser.parse_args(argv)
    if not CHINOOK.exists():
        print(f"missing {CHINOOK}", file=sys.stderr)
        return 2
    rows = [(mode, run(args.records, args.workers, threshold))
            for mode, threshold in (("grouped", None), ("apart", HOT_QUERY_RECORDS))]
    print(f"{args.records:,} records, 99 % one query on one database, {COLD_QUERIES:,} cold queries; "
          f"{args.workers} worker process(es); hot threshold {HOT_QUERY_RECORDS:,} records")
    print(f"{'mode':<8} {'queries run':>11} {'largest group':>14} {'records out':>12} {'wall s':>7} {'CPU s':>7}")
    for mode, row in rows:
        print(f"{mode:<8} {row['queries']:>11,} {row['largest']:>14,} {row['out']:>12,} "
              f"{row['wall']:>7.1f} {row['cpu']:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
