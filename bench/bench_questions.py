"""Do rule-written questions say what the SQL does? Coverage and speed of ``describe_sql``.

Usage::

    python bench/bench_questions.py [--data-dir PATH] [--show N] [--baseline-rev REV] [--repeat N]

Over a large set of real SQL (all of it in ``shared/data``):

* ``defog-pg``: every alternative of every query in Defog's PostgreSQL question sets
  (``questions_gen_postgres.csv``, ``instruct_*_postgres.csv``), ``{a, b}`` expanded to all
  its columns, read as ``postgres``;
* ``defog-sqlite``: the same for ``questions_gen_sqlite.csv``, read as ``sqlite``;
* ``sede``: the Stack Exchange Data Explorer queries (``sede/val.jsonl``), read as ``tsql``.

Each query goes through ``transforms.sql.normalize.normalize_sql`` (source dialect = target
dialect, as a run with one dialect does), and its rules question is written from that tree
with ``describe_sql``, exactly as the Describe stage does. A question *covers* its query
when it mentions:

* every literal value used in a condition (WHERE, HAVING, JOIN ... ON, at any depth:
  subqueries, derived tables and CTEs included): a string's text verbatim (for LIKE
  patterns each piece between the wildcards), a number as a word, an interval's amount;
  runs of white space read as one space, as in every question; a 0/1 compared with a flag
  column (``is_open = 1``) counts as mentioned when the flag is (its words without the
  "is"/"has": "open businesses");
* every column filtered on there, as words (``humanize``: ``billing_country`` and
  ``billingcountry`` -> "billing country"); columns compared with another column
  (join keys, correlations) are not required, nor a column that names a SELECT alias,
  nor the argument of a COUNT (``COUNT(r.id) > 1`` reads "more than 1 restaurant").

The table gives, per set, the share of covered questions (target 100 %), the shares of
literals and of filtered columns mentioned, and how many questions were cut at
``MAX_QUESTION_CHARS`` (a cut question cannot say everything; its share is also given
without them). ``--show`` prints uncovered questions with what they miss.

Speed: ``describe_sql`` is timed over all trees (``--repeat`` passes after one warm-up
pass). ``--baseline-rev REV`` times the question writer of git revision REV (a checkout of it,
in a subprocess) on the same trees, to report the change (the goal: at most
~10 % slower than before; on a shared machine, run it twice: passes vary by ±10 %).
"""

from __future__ import annotations

import argparse
import csv
import pickle
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from sqlglot import exp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_hardness import split_statements  # noqa: E402  (the same reading of a Defog cell)
from transforms.sql.normalize import SqlRejected, normalize_sql  # noqa: E402
from transforms.sql.question_rules import MAX_QUESTION_CHARS, describe_sql, humanize  # noqa: E402

DATA_DIR = REPO_ROOT.parent / "shared" / "data"


class Query(NamedTuple):
    source: str
    sql: str
    dialect: str


class Outcome(NamedTuple):
    query: Query
    question: str
    literals: int
    literals_missing: list[str]
    columns: int
    columns_missing: list[str]

    @property
    def covered(self) -> bool:
        return not self.literals_missing and not self.columns_missing

    @property
    def cut(self) -> bool:
        return len(self.question) >= MAX_QUESTION_CHARS - 5


# --- the SQL sets -------------------------------------------------------------------------------



def defog_queries(data_dir: Path) -> list[Query]:
    defog = data_dir / "defog"
    sets = [("defog-pg", "postgres", p) for p in sorted(defog.glob("*_postgres.csv"))]
    sets.append(("defog-sqlite", "sqlite", defog / "questions_gen_sqlite.csv"))
    out = []
    for source, dialect, path in sets:
        if not path.exists():
            continue
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                for sql in split_statements(row["query"]):
                    out.append(Query(source, re.sub(r"\{([^{}]*)\}", r"\1", sql), dialect))
    return out


def sede_queries(data_dir: Path) -> list[Query]:
    path = data_dir / "sede" / "val.jsonl"
    if not path.exists():
        return []
    with path.open() as handle:
        return [Query("sede", json.loads(line)["QueryBody"], "tsql") for line in handle if line.strip()]


def parsed_trees(queries: Iterable[Query]) -> list[tuple[Query, exp.Expression]]:
    """Normalize each query as the pipeline does; keep the ones it accepts, once per text."""
    out, seen = [], set()
    for query in queries:
        try:
            normalized = normalize_sql(query.sql, query.dialect, query.dialect)
        except (SqlRejected, Exception):  # noqa: BLE001 - the pipeline rejects these too
            continue
        key = (query.source, normalized.sql)
        if key in seen:
            continue
        seen.add(key)
        out.append((query._replace(sql=normalized.sql), normalized.tree))
    return out


# --- what a question must mention ---------------------------------------------------------------

_VALUE_PATH = (exp.Paren, exp.Cast, exp.TryCast, exp.Neg, exp.Tuple, exp.Interval, exp.Add, exp.Sub,
               exp.Mul, exp.Div, exp.Lower, exp.Upper, exp.Trim)
_PREDICATES = (exp.Predicate, exp.In, exp.Between, exp.Like, exp.ILike)
_FLAG_PREFIXES = ("is ", "has ")


def condition_roots(tree: exp.Expression) -> list[exp.Expression]:
    """WHERE (``FILTER (WHERE ..)`` included), HAVING and JOIN ... ON conditions anywhere in the tree."""
    roots = []
    for node in tree.walk():
        if isinstance(node, (exp.Where, exp.Having)) and node.this is not None:
            roots.append(node.this)
        elif isinstance(node, exp.Join) and node.args.get("on") is not None:
            roots.append(node.args["on"])
    return roots


def _own_nodes(root: exp.Expression) -> Iterable[exp.Expression]:
    """The nodes of a condition, not looking into nested queries (they have their own)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        for child in node.iter_expressions():
            if not isinstance(child, exp.Query):
                stack.append(child)


def _is_key_comparison(node: exp.Expression) -> bool:
    return isinstance(node, (exp.EQ, exp.NEQ)) and isinstance(node.this, exp.Column) and isinstance(
        node.expression, exp.Column)


def _select_aliases(node: exp.Expression) -> set[str]:
    select = node.find_ancestor(exp.Select)
    if select is None:
        return set()
    return {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}


def _is_flag(column: exp.Column) -> bool:
    return humanize(column.name).startswith(_FLAG_PREFIXES)


def required_mentions(tree: exp.Expression) -> tuple[list[str], list[str]]:
    """(literal texts, column words) the question of ``tree`` must contain."""
    literals: list[str] = []
    columns: list[str] = []
    for root in condition_roots(tree):
        for node in _own_nodes(root):
            if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
                parent = node.parent
                while isinstance(parent, exp.Paren):
                    parent = parent.parent
                if _is_key_comparison(parent) or node.name.lower() in _select_aliases(node):
                    continue
                if node.find_ancestor(exp.Count, exp.Query) is not None and isinstance(
                        node.find_ancestor(exp.Count, exp.Query), exp.Count):
                    continue  # COUNT(x) counts rows ('the number of restaurants'), x need not show
                words = humanize(node.name)
                flag = next((f for f in _FLAG_PREFIXES if words.startswith(f)), None)
                columns.append(words[len(flag):] if flag else words)  # 'open' for is_open
            elif isinstance(node, exp.Literal):
                text = _literal_requirement(node)
                if text:
                    literals.append(text)
    return literals, columns


def _literal_requirement(node: exp.Literal) -> str:
    """What of this literal the question must say ('' when it is not a filtered value)."""
    parent = node.parent
    while isinstance(parent, _VALUE_PATH):
        parent = parent.parent
    if not isinstance(parent, _PREDICATES):
        return ""
    if isinstance(parent, (exp.Like, exp.ILike)) and node.is_string:
        pieces = [p for p in re.split(r"[%_]+", node.this) if p.strip()]
        return max(pieces, key=len) if pieces else ""
    if not node.is_string and node.this in ("0", "1") and isinstance(parent, (exp.EQ, exp.NEQ)):
        other = parent.this if parent.expression is node else parent.expression
        if isinstance(other, exp.Column) and _is_flag(other):
            return ""  # 'that are open': the flag column is required instead
    if isinstance(node.parent, exp.Interval) or node.is_string:
        text = node.this.strip()
        return text.split()[0] if isinstance(node.parent, exp.Interval) and text else text
    return node.this


_SAID_AS = {"name": "named", "title": "titled"}  # 'every artist named "AC/DC"'


def _mentions(question: str, text: str, words: bool) -> bool:
    if words:
        forms = [text] + ([_SAID_AS[text]] if text in _SAID_AS else [])
        return any(re.search(r"(?<![a-z0-9])" + re.escape(form) + r"(?![a-z0-9])", question.lower())
                   for form in forms)
    text = " ".join(text.split())  # a question is one line with single spaces (quoted values too)
    if text in question:
        return True
    if not words and re.fullmatch(r"-?\d+(\.\d+)?", text):  # 5.0 written 5, 0.5 written .5
        try:
            value = float(text)
        except ValueError:
            return False
        return any(re.search(r"(?<![\d.])" + re.escape(form) + r"(?![\d])", question)
                   for form in {f"{value:g}", text.lstrip("0") or "0"})
    return False


def check(query: Query, tree: exp.Expression, writer: Callable[[exp.Expression], str]) -> Outcome:
    question = writer(tree)
    literals, columns = required_mentions(tree)
    missing_literals = [t for t in literals if not _mentions(question, t, words=False)]
    missing_columns = [c for c in columns if not _mentions(question, c, words=True)]
    return Outcome(query, question, len(literals), missing_literals, len(columns), missing_columns)


# --- report -------------------------------------------------------------------------------------


def report(outcomes: list[Outcome], show: int) -> float:
    print(f"{'set':<14}{'queries':>8}{'covered':>9}{'%':>8}{'literals %':>12}{'columns %':>11}"
          f"{'cut':>6}{'uncut %':>9}")
    sources = sorted({o.query.source for o in outcomes})
    overall = 0.0
    for source in sources + ["all"]:
        rows = [o for o in outcomes if source in ("all", o.query.source)]
        covered = sum(o.covered for o in rows)
        lit_total = sum(o.literals for o in rows)
        lit_ok = lit_total - sum(len(o.literals_missing) for o in rows)
        col_total = sum(o.columns for o in rows)
        col_ok = col_total - sum(len(o.columns_missing) for o in rows)
        uncut = [o for o in rows if not o.cut]
        pct = 100.0 * covered / len(rows) if rows else float("nan")
        uncut_pct = 100.0 * sum(o.covered for o in uncut) / len(uncut) if uncut else float("nan")
        print(f"{source:<14}{len(rows):>8}{covered:>9}{pct:>7.1f}%"
              f"{100.0 * lit_ok / max(lit_total, 1):>11.1f}%{100.0 * col_ok / max(col_total, 1):>10.1f}%"
              f"{len(rows) - len(uncut):>6}{uncut_pct:>8.1f}%")
        if source == "all":
            overall = pct / 100.0
    for o in [o for o in outcomes if not o.covered][:show]:
        missing = o.literals_missing + [f"<{c}>" for c in o.columns_missing]
        print(f"\n  [{o.query.source}] missing {missing}\n    SQL: {o.query.sql[:300]}\n    Q:   {o.question}")
    return overall


_BASELINE_TIMER = """
import pickle, sys, time
sys.path.insert(0, sys.argv[1])
try:
    from transforms.sql.question_rules import describe_sql
except ImportError:  # a revision before issue 17's layout
    from transforms.question_rules import describe_sql  # relayout: keep
trees = pickle.load(open(sys.argv[2], "rb"))
repeat = int(sys.argv[3])
for tree in trees:
    describe_sql(tree)
best = float("inf")
for _ in range(repeat):
    started = time.perf_counter()
    for tree in trees:
        describe_sql(tree)
    best = min(best, time.perf_counter() - started)
print(best / max(len(trees), 1))
"""


def time_baseline(rev: str, trees: list[exp.Expression], repeat: int) -> float:
    """Seconds per question of ``describe_sql`` at git revision ``rev`` (a module or, since issue 17,
    a package), timed on the same trees in a subprocess that imports that revision's checkout.

    The current writer is timed in this process and the baseline in another, so run it twice on a
    shared machine.
    """
    with tempfile.TemporaryDirectory() as work:
        checkout = Path(work) / "baseline"
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "--quiet", str(checkout), rev],
                       check=True)
        try:
            trees_file = Path(work) / "trees.pickle"
            trees_file.write_bytes(pickle.dumps(trees))
            done = subprocess.run([sys.executable, "-c", _BASELINE_TIMER, str(checkout), str(trees_file), str(repeat)],
                                  check=True, capture_output=True, text=True)
            return float(done.stdout.split()[-1])
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(checkout)], check=True)


def time_writer(writer: Callable[[exp.Expression], str], trees: list[exp.Expression], repeat: int) -> float:
    """Seconds per question, best of ``repeat`` passes after one warm-up pass."""
    for tree in trees:
        writer(tree)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for tree in trees:
            writer(tree)
        best = min(best, time.perf_counter() - start)
    return best / max(len(trees), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="shared data folder (default: ../shared/data next to the repo)")
    parser.add_argument("--show", type=int, default=10, help="uncovered questions to print")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best is reported)")
    parser.add_argument("--baseline-rev", default=None,
                        help="also time transforms/sql/question_rules.py of this git revision")
    parser.add_argument("--min-coverage", type=float, default=None,
                        help="exit 1 when the covered share is below this fraction")
    args = parser.parse_args(argv)

    pairs = parsed_trees(defog_queries(args.data_dir) + sede_queries(args.data_dir))
    if not pairs:
        print(f"no queries: {args.data_dir} has neither defog/ nor sede/")
        return 2
    outcomes = [check(query, tree, describe_sql) for query, tree in pairs]
    coverage = report(outcomes, args.show)

    trees = [tree for _, tree in pairs]
    per_question = time_writer(describe_sql, trees, args.repeat)
    print(f"\ndescribe_sql: {per_question * 1e6:.0f} us per question over {len(trees)} queries")
    if args.baseline_rev:
        baseline = time_baseline(args.baseline_rev, trees, args.repeat)
        change = 100.0 * (per_question / baseline - 1.0)
        print(f"baseline {args.baseline_rev}: {baseline * 1e6:.0f} us per question ({change:+.0f} % now)")
    if args.min_coverage is not None and coverage < args.min_coverage:
        print(f"coverage {coverage:.3f} is below {args.min_coverage}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
