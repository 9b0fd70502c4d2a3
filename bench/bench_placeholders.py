"""How placeholder handling changes what parses: SEDE's held-out T-SQL queries, before and after.

Usage::

    python bench/bench_placeholders.py [--sede PATH] [--target postgres]

Stack Exchange Data Explorer queries (``../shared/data/sede/val.jsonl``, field
``QueryBody``) are T-SQL written against SEDE's parameter syntax: ``##UserId##``,
``##Tag:string?java##`` and ``DECLARE @var type = ##X##`` headers. The table counts,
for plain ``sqlglot.parse(sql, read="tsql")`` (before) and for
``transforms.sql.placeholders.parse_templated`` (after):

* ``parse``: no parse error (what "730 of 857 parse" in the issue counted);
* ``opaque Command``: at least one statement came back as sqlglot's catch-all
  ``exp.Command`` — it "parses", but there is no tree to analyse or transpile;
* ``one query``: exactly one statement, and it is a query (not a Command);
* ``accepted``: passes the read-only guard (``transforms.sql.safety``) as one query and
  transpiles to ``--target`` — what Normalize keeps;
* ``with parameters``: accepted queries that hold at least one placeholder.

Nothing is executed (SEDE has no database here).
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import time
from typing import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from transforms.sql.placeholders import parse_templated  # noqa: E402
from transforms.sql.safety import refusal_reason  # noqa: E402

DEFAULT_SEDE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "sede" / "val.jsonl"


def measure(queries: list[str], parse: Callable[[str], tuple[list, int]], target: str) -> dict[str, float]:
    """Counts of each outcome for one way of parsing (``parse`` returns statements and #parameters)."""
    counts = {"parse": 0, "opaque Command": 0, "one query": 0, "accepted": 0, "with parameters": 0}
    started = time.perf_counter()
    for sql in queries:
        try:
            statements, parameters = parse(sql)
        except Exception:  # noqa: BLE001 - a parse error is what is being counted
            continue
        statements = [s for s in statements if s is not None]
        counts["parse"] += 1
        if any(isinstance(s, exp.Command) for s in statements):
            counts["opaque Command"] += 1
        if len(statements) == 1 and not isinstance(statements[0], exp.Command):
            counts["one query"] += 1
        if refusal_reason(statements) is None:
            try:
                statements[0].sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
            except Exception:  # noqa: BLE001 - untranspilable: not accepted
                continue
            counts["accepted"] += 1
            counts["with parameters"] += parameters > 0
    counts["ms/query"] = (time.perf_counter() - started) * 1000 / max(1, len(queries))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sede", type=pathlib.Path, default=DEFAULT_SEDE, help="SEDE val.jsonl")
    parser.add_argument("--target", default="postgres", help="dialect to transpile accepted queries to")
    args = parser.parse_args(argv)
    logging.getLogger("sqlglot").setLevel(logging.CRITICAL)
    if not args.sede.exists():
        print(f"{args.sede} is absent (../shared/data comes with the developers' checkout)", file=sys.stderr)
        return 2
    with args.sede.open(encoding="utf-8") as handle:
        queries = [json.loads(line)["QueryBody"] for line in handle if line.strip()]

    before = measure(queries, lambda q: (sqlglot.parse(q, read="tsql"), 0), args.target)

    def after_parse(sql: str) -> tuple[list, int]:
        parsed = parse_templated(sql, "tsql")
        return parsed.statements, len(parsed.parameters)

    after = measure(queries, after_parse, args.target)
    print(f"SEDE {args.sede.name}: {len(queries)} T-SQL queries (source tsql, target {args.target})\n")
    print(f"{'':<18}{'before':>10}{'after':>10}")
    for key in ("parse", "opaque Command", "one query", "accepted", "with parameters"):
        print(f"{key:<18}{before[key]:>10}{after[key]:>10}")
    print(f"{'ms/query':<18}{before['ms/query']:>10.2f}{after['ms/query']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
