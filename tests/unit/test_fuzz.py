"""Property-based fuzzing of the pure functions every record goes through.

Two sources of input: random queries built from sqlglot expressions (select lists, joins,
filters, grouping, ordering, set operations, subqueries; random identifiers and literals;
written out in several dialects), and real queries from ``examples/chinook_queries.sql``
mutated by random insertions, deletions and truncations. Properties:

* ``normalize_sql`` raises nothing but ``SqlRejected`` — every input either normalizes or
  becomes a dead letter with a stage and reason;
* normalization is idempotent: normalizing a normalized query (in its dialect) gives it back,
  and it is still one read-only query the guard accepts;
* the classifier (``spider_hardness``, ``concept_tags``), the guard (``refusal_reason``), the
  rules question writer (``describe_sql``) and ``has_top_level_order_by`` never raise on a tree;
* ``result_hash`` / ``results_match`` never raise on any mix of driver values, and a result
  matches itself under row and column permutations.

Example counts are bounded (``max_examples`` per property) so CI stays fast; in CI
(``CI=true``) the examples are derandomized so a red build is reproducible, while local
runs explore new examples each time.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid

import sqlglot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from tests.conftest import IN_CI, REPO
from transforms.sql.concepts import concept_tags
from transforms.kit.equivalence import has_top_level_order_by, result_hash, results_match
from transforms.formats.sql_file import split_statements
from transforms.sql.hardness import spider_hardness
from transforms.sql.normalize import SqlRejected, normalize_sql
from transforms.sql.question_rules import describe_sql
from transforms.sql.safety import refusal_reason

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=IN_CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

DIALECTS = ("postgres", "mysql", "sqlite", "duckdb", "tsql", "bigquery", "snowflake")
REAL_QUERIES = [s.text for s in split_statements((REPO / "examples" / "chinook_queries.sql").read_text(), "sqlite")]

# --- random identifiers and literals ---------------------------------------------------------

_KEYWORD_NAMES = ["select", "from", "order", "group", "user", "table", "key", "value", "date", "count", "end",
                  "limit", "index", "desc", "name", "type", "row", "level", "default", "all"]
_PLAIN_NAMES = ["a", "b", "t", "x1", "artist", "Album", "TrackId", "first_name", "Total", "CamelCase", "_tmp", "Z"]
names = st.one_of(
    st.sampled_from(_PLAIN_NAMES),
    st.sampled_from(_KEYWORD_NAMES),
    st.text("abcXYZ_019 -\"'`é", min_size=1, max_size=6),  # needs quoting
)
identifiers = st.builds(lambda name, quoted: exp.to_identifier(name, quoted=quoted or None), names, st.booleans())

_strings = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
literals = st.one_of(
    st.integers(-10**20, 10**20).map(lambda n: exp.Literal.number(n) if n >= 0 else exp.Neg(this=exp.Literal.number(-n))),
    st.sampled_from(["0.5", "1e3", "2.50", "007", "1.0638588895035392e+16", ".5"]).map(exp.Literal.number),
    _strings.map(exp.Literal.string),
    st.just(exp.Null()),
    st.booleans().map(lambda b: exp.Boolean(this=b)),
)
tables = st.builds(lambda name, db: exp.Table(this=name, db=db), identifiers, st.none() | identifiers)
columns = st.builds(lambda name, table: exp.Column(this=name, table=table), identifiers, st.none() | identifiers)

_BINARY = [exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod]
_COMPARISON = [exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE]
_AGGREGATES = [exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max]
_FUNCTIONS = [exp.Lower, exp.Upper, exp.Abs, exp.Length]


def _values(subqueries):
    """Value expressions, with scalar subqueries drawn from ``subqueries``."""
    return st.recursive(
        st.one_of(columns, literals),
        lambda inner: st.one_of(
            st.builds(lambda cls, a, b: cls(this=a, expression=b), st.sampled_from(_BINARY), inner, inner),
            st.builds(lambda cls, a: cls(this=a), st.sampled_from(_AGGREGATES + _FUNCTIONS), inner),
            st.just(exp.Count(this=exp.Star())),
            st.builds(lambda a, b: exp.Coalesce(this=a, expressions=[b]), inner, inner),
            st.builds(lambda a, b, c: exp.Case(ifs=[exp.If(this=exp.GT(this=a, expression=b), true=c)],
                                               default=exp.Null()), inner, inner, inner),
            st.builds(lambda a, t: exp.Cast(this=a, to=exp.DataType.build(t)), inner,
                      st.sampled_from(["INT", "TEXT", "DECIMAL(10, 2)", "DATE", "VARCHAR(20)"])),
            st.builds(lambda a: exp.Paren(this=a), inner),
            subqueries.map(lambda q: exp.Subquery(this=q.limit(1))),
        ),
        max_leaves=4,
    )


def _conditions(values, subqueries):
    return st.recursive(
        st.one_of(
            st.builds(lambda cls, a, b: cls(this=a, expression=b), st.sampled_from(_COMPARISON), values, values),
            st.builds(lambda a, items: exp.In(this=a, expressions=items), values, st.lists(literals, min_size=1, max_size=3)),
            st.builds(lambda a, q: exp.In(this=a, query=exp.Subquery(this=q)), values, subqueries),
            st.builds(lambda a, lo, hi: exp.Between(this=a, low=lo, high=hi), values, literals, literals),
            st.builds(lambda a, s: exp.Like(this=a, expression=exp.Literal.string(s)), values, _strings),
            st.builds(lambda a: exp.Is(this=a, expression=exp.Null()), values),
            subqueries.map(lambda q: exp.Exists(this=q)),
        ),
        lambda inner: st.one_of(
            st.builds(lambda a, b: exp.And(this=a, expression=b), inner, inner),
            st.builds(lambda a, b: exp.Or(this=a, expression=b), inner, inner),
            st.builds(lambda a: exp.Not(this=exp.Paren(this=a)), inner),
        ),
        max_leaves=3,
    )


def _selects(subqueries):
    """SELECTs with a random subset of clauses, their subqueries drawn from ``subqueries``.

    The strategies are built once per nesting level (building them per draw is what
    makes recursive hypothesis strategies slow).
    """
    values = _values(subqueries)
    conditions = _conditions(values, subqueries)
    join_conditions = _conditions(columns, st.nothing())
    items = st.lists(st.one_of(values, st.just(exp.Star()), st.builds(exp.alias_, values, identifiers)),
                     min_size=1, max_size=3)
    sources = st.one_of(tables, subqueries.map(lambda q: q.subquery("s")))
    ordering = st.lists(st.builds(lambda v, d: exp.Ordered(this=v, desc=d), values, st.booleans()),
                        min_size=1, max_size=2)

    @st.composite
    def select(draw) -> exp.Select:
        query = exp.select(*draw(items))
        if draw(st.integers(0, 4)):  # mostly with a FROM
            query = query.from_(draw(sources))
            for _ in range(draw(st.integers(0, 2))):
                query = query.join(draw(tables), on=draw(join_conditions),
                                   join_type=draw(st.sampled_from(["", "LEFT", "INNER", "CROSS", "FULL"])))
        if draw(st.booleans()):
            query = query.where(draw(conditions))
        if draw(st.booleans()):
            query = query.group_by(*draw(st.lists(columns, min_size=1, max_size=2)))
            if draw(st.booleans()):
                query = query.having(draw(conditions))
        if draw(st.booleans()):
            query = query.order_by(*draw(ordering))
        if draw(st.booleans()):
            query = query.limit(draw(st.integers(0, 1000)))
        if draw(st.booleans()):
            query = query.distinct()
        return query

    return select()


_INNER = _selects(st.nothing())
_MIDDLE = _selects(_INNER)
_OUTER = _selects(_MIDDLE)


@st.composite
def queries(draw) -> exp.Expression:
    """A random query: a SELECT, a set operation of two, or a WITH in front of one."""
    query = draw(_OUTER)
    shape = draw(st.sampled_from(["select", "select", "union", "intersect", "except", "with"]))
    if shape in ("union", "intersect", "except"):
        build = {"union": exp.union, "intersect": exp.intersect, "except": exp.except_}[shape]
        query = build(query, draw(_MIDDLE), distinct=draw(st.booleans()))
    elif shape == "with":
        query = query.with_(draw(identifiers), as_=draw(_MIDDLE))
    return query


@st.composite
def generated_sql(draw) -> tuple[str, str]:
    """``(sql, dialect)``: a random query written in a random dialect (``SELECT 1`` if sqlglot cannot)."""
    dialect = draw(st.sampled_from(DIALECTS))
    tree = draw(queries())
    try:
        return tree.sql(dialect=dialect), dialect
    except Exception:  # noqa: BLE001 - a tree sqlglot cannot print is not an input anyone has
        return "SELECT 1", dialect


_FRAGMENTS = ["'", '"', "`", "(", ")", ",", ";", "--", "/*", "*/", "$$", "$1", "?", ":x", "@v", "##Id##", " ",
              "\n", "\\", "SELECT", "FROM", "WHERE", "JOIN", "UNION", "DROP TABLE t", "ORDER BY", "LIMIT 1",
              "NULL", "CASE", "END", "[", "]", "{", "}", "é", "\u200b", "\ufeff"]


@st.composite
def mutated_sql(draw) -> str:
    """A real query with random insertions, deletions and a possible truncation."""
    text = draw(st.sampled_from(REAL_QUERIES))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "truncate", "duplicate"]))
        if action == "insert":
            text = text[:position] + draw(st.sampled_from(_FRAGMENTS) | st.text(max_size=3)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 12)):]
        elif action == "truncate":
            text = text[:position]
        else:
            text = text[:position] + text[position:position + 20] + text[position:]
    return text.replace("\x00", "")


any_sql = st.one_of(generated_sql(), st.tuples(mutated_sql(), st.sampled_from(DIALECTS)))


def _normalized_or_rejected(sql: str, source: str, target: str):
    try:
        return normalize_sql(sql, source, target)
    except SqlRejected as rejected:
        assert rejected.stage in ("parse", "safety", "normalize") and rejected.reason, rejected
        return None


# --- properties --------------------------------------------------------------------------------


def _check_downstream(tree: exp.Expression) -> None:
    """What Classify, Describe and Execute do with a normalized tree: none of it may raise."""
    assert spider_hardness(tree) in ("easy", "medium", "hard", "extra")
    assert all(isinstance(tag, str) for tag in concept_tags(tree))
    question = describe_sql(tree)
    assert question and question[0].isupper() and question[-1] in "?."
    assert isinstance(has_top_level_order_by(tree), bool)


@FUZZ
@given(any_sql)
@example(("SELECT a FROM t WHERE b = 'x' ORDER BY a LIMIT 3", "postgres"))
@example(("SELECT FirstName, La?stName FROM Customer", "postgres"))  # was a KeyError (placeholder glued to a name)
@example(("S##Id##EE", "tsql"))
@example((";SELECT Name FROM Artist", "tsql"))  # was an AttributeError: parse gives [None, Select]
@example(("SELECT 1 AS:x", "postgres")).xfail(
    reason="known: sqlglot's own `:x` placeholder, missed by transforms.sql.placeholders.scan after a word, "
           "prints as %(x)s and re-normalizes to $x", raises=AssertionError)
def test_normalize_raises_only_sql_rejected_is_idempotent_and_feeds_every_stage(case):
    """One example, every property of a query's path through the stages (generation is the costly part).

    * the guard gives a reason or None for whatever sqlglot parses (DML and DDL included), and
      the classifier and question writer take any parsed statement;
    * ``normalize_sql`` raises only ``SqlRejected``; its output normalizes to itself, is one
      query the guard accepts, and classifies and describes — as the cached tree and re-parsed.
    """
    sql, dialect = case
    try:
        statements = sqlglot.parse(sql, read=dialect)
    except (sqlglot.errors.SqlglotError, RecursionError):
        statements = []
    reason = refusal_reason(statements)
    assert reason is None or (isinstance(reason, str) and " " not in reason)
    for statement in statements:
        if statement is not None:
            spider_hardness(statement)
            concept_tags(statement)
            describe_sql(statement)

    result = _normalized_or_rejected(sql, dialect, dialect)
    if result is None:
        return
    again = normalize_sql(result.sql, dialect, dialect)
    assert again.sql == result.sql, (sql, result.sql, again.sql)
    assert again.sql_fingerprint == result.sql_fingerprint
    reparsed = sqlglot.parse(result.sql, read=dialect)
    assert refusal_reason(reparsed) is None
    _check_downstream(result.tree)
    _check_downstream(reparsed[0])


@FUZZ
@given(any_sql, st.sampled_from(DIALECTS))
@example(("SELECT Name FROM Artist", "snowflake"), "postgres")  # identifiers in the target's case
@example(("SELECT * FROM a, b", "postgres"), "sqlite")  # sqlglot: a comma join reads back as CROSS JOIN
@example(("SELECT CAST(a AS TEXT(20))", "sqlite"), "tsql")  # sqlglot 30.30 writes VARCHAR(MAX)(20): rejected
def test_transpiled_sql_settles_in_its_target_dialect(case, target):
    """Transpiled output re-normalizes without surprises and is a fixed point after one more pass.

    Not always after zero: a few sqlglot round trips differ in form, not meaning (a comma
    join that the target's parser reads back as CROSS JOIN, ``NUMERIC`` → DuckDB
    ``DECIMAL`` → ``DECIMAL(18, 3)``).
    """
    sql, source = case
    result = _normalized_or_rejected(sql, source, target)
    if result is None:
        return
    again = _normalized_or_rejected(result.sql, target, target)
    if again is None:
        return
    assert normalize_sql(again.sql, target, target).sql == again.sql, (sql, source, target, result.sql, again.sql)


# --- results --------------------------------------------------------------------------------------

driver_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2**70, 2**70),
    st.floats(),  # NaN and infinities included
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.dates(),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=2),
)


@st.composite
def results(draw):
    width = draw(st.integers(1, 4))
    return draw(st.lists(st.lists(driver_values, min_size=width, max_size=width).map(tuple), max_size=6))


@FUZZ
@given(results(), st.booleans(), st.randoms(use_true_random=False))
def test_a_result_matches_itself_under_row_and_column_permutations(rows, ordered, rnd):
    assert results_match(rows, rows, order_matters=ordered)
    width = len(rows[0]) if rows else 0
    assert result_hash(width, rows, ordered=ordered) == result_hash(width, list(rows), ordered=ordered)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert results_match(rows, shuffled, order_matters=False)
    assert result_hash(width, rows, ordered=False) == result_hash(width, shuffled, ordered=False)
    permutation = list(range(width))
    rnd.shuffle(permutation)
    swapped = [tuple(row[i] for i in permutation) for row in rows]
    assert results_match(rows, swapped, order_matters=ordered)


@FUZZ
@given(results(), results(), st.booleans())
def test_results_match_and_result_hash_never_raise(gold, pred, ordered):
    assert isinstance(results_match(gold, pred, order_matters=ordered), bool)
    for rows in (gold, pred):
        digest = result_hash(len(rows[0]) if rows else 0, rows, ordered=ordered)
        assert len(digest) == 32


def test_result_hash_rejects_rows_of_the_wrong_width():
    try:
        result_hash(2, [(1,)], ordered=False)
    except ValueError as error:
        assert "expected 2" in str(error)
    else:
        raise AssertionError("a row of the wrong width was hashed")


def test_special_values_are_handled():
    rows = [(math.nan, decimal.Decimal("NaN"), float("inf"), uuid.UUID(int=0), b"\xff", dt.timedelta(days=-1))]
    assert results_match(rows, rows, order_matters=True)
    assert len(result_hash(6, rows, ordered=True)) == 32
