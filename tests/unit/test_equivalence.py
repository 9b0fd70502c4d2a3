"""Tests for result canonicalization and equivalence (transforms/kit/equivalence.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st

from transforms.kit.equivalence import (
    NAN,
    canonical_value,
    has_top_level_order_by,
    result_hash,
    results_match,
)
from transforms.kit.executors import top_level_order_by
from transforms.sql.normalize import normalize_sql

# -- canonical_value -------------------------------------------------------------------


def test_none_stays_none() -> None:
    assert canonical_value(None) is None


def test_bool_becomes_int() -> None:
    assert canonical_value(True) == 1 and type(canonical_value(True)) is int


def test_decimal_equals_float_of_same_number() -> None:
    assert canonical_value(Decimal("1.10")) == canonical_value(1.1)


def test_integral_decimal_and_float_become_int() -> None:
    assert canonical_value(Decimal("2.000")) == canonical_value(2.0) == 2
    assert type(canonical_value(2.0)) is int


def test_large_integral_decimal_is_kept_exactly() -> None:
    assert canonical_value(Decimal("12345678901234567890")) == 12345678901234567890


def test_float_noise_is_rounded_away() -> None:
    assert canonical_value(0.1 + 0.2) == canonical_value(Decimal("0.3"))


def test_averages_from_different_databases_agree() -> None:
    postgres_avg = Decimal("0.66666666666666666667")
    sqlite_avg = 2 / 3
    assert canonical_value(postgres_avg) == canonical_value(sqlite_avg)


def test_numbers_differing_beyond_tolerance_differ() -> None:
    assert canonical_value(1.5) != canonical_value(1.50001)


def test_negative_zero_is_zero() -> None:
    assert canonical_value(-0.0) == 0 and repr(canonical_value(-0.0)) == "0"


def test_nan_equals_itself() -> None:
    assert canonical_value(float("nan")) == canonical_value(Decimal("NaN")) == NAN


def test_infinity_stays_infinite() -> None:
    assert canonical_value(Decimal("Infinity")) == canonical_value(float("inf")) == float("inf")


def test_date_becomes_iso_text_like_sqlite() -> None:
    assert canonical_value(dt.date(2020, 1, 31)) == "2020-01-31"


def test_datetime_uses_space_separator_like_sqlite() -> None:
    assert canonical_value(dt.datetime(2020, 1, 31, 10, 5, 0)) == "2020-01-31 10:05:00"


def test_aware_datetime_is_converted_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert canonical_value(dt.datetime(2020, 1, 1, 12, tzinfo=plus_two)) == canonical_value(
        dt.datetime(2020, 1, 1, 10, tzinfo=dt.timezone.utc)
    )


def test_time_and_mysql_timedelta_agree() -> None:
    assert canonical_value(dt.time(12, 30)) == canonical_value(dt.timedelta(hours=12, minutes=30)) == "12:30:00"


def test_bytes_and_memoryview_become_the_same_hex() -> None:
    assert canonical_value(b"\x01\xff") == canonical_value(memoryview(b"\x01\xff")) == "\\x01ff"


def test_uuid_becomes_text() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert canonical_value(value) == "12345678-1234-5678-1234-567812345678"


def test_strings_stay_case_sensitive() -> None:
    assert canonical_value("Abc") != canonical_value("abc")


def test_number_and_its_text_differ() -> None:
    assert canonical_value(1) != canonical_value("1")


def test_json_is_canonical_regardless_of_key_order() -> None:
    assert canonical_value({"b": 1, "a": [Decimal("1.0"), None]}) == canonical_value({"a": [1, None], "b": 1.0})


def test_array_becomes_json_text() -> None:
    assert canonical_value([1, "x", None]) == '[1,"x",null]'


def test_canonical_values_are_hashable() -> None:
    values = [None, True, 1, 1.5, Decimal("2.5"), "s", b"b", dt.date(2020, 1, 1), [1], {"a": 1}, float("nan")]
    assert len({canonical_value(v) for v in values}) == len(values) - 1  # True and 1 coincide


# -- result_hash -----------------------------------------------------------------------


def test_hash_is_32_hex_digits() -> None:
    digest = result_hash(1, [(1,)], ordered=False)
    assert len(digest) == 32 and int(digest, 16) >= 0


def test_hash_is_stable_across_calls() -> None:
    assert result_hash(2, [(1, "a")], ordered=True) == result_hash(2, [[1, "a"]], ordered=True)


def test_hash_agrees_across_drivers() -> None:
    postgres = [(Decimal("1.10"), dt.date(2020, 1, 1), True)]
    sqlite = [(1.1, "2020-01-01", 1)]
    assert result_hash(3, postgres, ordered=False) == result_hash(3, sqlite, ordered=False)


def test_unordered_hash_ignores_row_order() -> None:
    assert result_hash(1, [(1,), (2,)], ordered=False) == result_hash(1, [(2,), (1,)], ordered=False)


def test_ordered_hash_depends_on_row_order() -> None:
    assert result_hash(1, [(1,), (2,)], ordered=True) != result_hash(1, [(2,), (1,)], ordered=True)


def test_unordered_hash_counts_duplicates() -> None:
    assert result_hash(1, [(1,), (1,), (2,)], ordered=False) != result_hash(1, [(1,), (2,), (2,)], ordered=False)


def test_hash_tells_null_from_text_null() -> None:
    assert result_hash(1, [(None,)], ordered=False) != result_hash(1, [("None",)], ordered=False)


def test_hash_tells_number_from_text() -> None:
    assert result_hash(1, [(1,)], ordered=False) != result_hash(1, [("1",)], ordered=False)


def test_hash_of_empty_results_depends_on_width() -> None:
    assert result_hash(1, [], ordered=False) != result_hash(2, [], ordered=False)


def test_hash_rejects_rows_of_the_wrong_width() -> None:
    with pytest.raises(ValueError):
        result_hash(2, [(1,)], ordered=False)


# -- results_match ---------------------------------------------------------------------


def test_empty_results_match() -> None:
    assert results_match([], [], order_matters=True)


def test_empty_and_non_empty_differ() -> None:
    assert not results_match([], [(1,)], order_matters=False)


def test_different_widths_differ() -> None:
    assert not results_match([(1, 2)], [(1,)], order_matters=False)


def test_decimal_and_float_results_match() -> None:
    assert results_match([(Decimal("3.50"),)], [(3.5,)], order_matters=False)


def test_dates_match_their_text_from_another_database() -> None:
    assert results_match([(dt.date(2020, 1, 1), "x")], [("2020-01-01", "x")], order_matters=False)


def test_nulls_match_nulls() -> None:
    assert results_match([(None, 1)], [(None, 1)], order_matters=True)


def test_null_does_not_match_zero() -> None:
    assert not results_match([(None,)], [(0,)], order_matters=False)


def test_duplicate_rows_are_counted() -> None:
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)], order_matters=False)


def test_row_order_is_ignored_when_order_does_not_matter() -> None:
    assert results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], order_matters=False)


def test_row_order_counts_when_order_matters() -> None:
    assert not results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], order_matters=True)


def test_column_permutation_matches() -> None:
    assert results_match([(1, "a", 2.5), (2, "b", 3.5)], [("a", 2.5, 1), ("b", 3.5, 2)], order_matters=False)


def test_column_permutation_matches_when_order_matters() -> None:
    assert results_match([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], order_matters=True)


def test_column_permutation_must_hold_for_every_row() -> None:
    # Each pred row is a permutation of a gold row, but no single column permutation works.
    gold = [(1, 2), (3, 4)]
    pred = [(1, 2), (4, 3)]
    assert not results_match(gold, pred, order_matters=False)


def test_columns_with_equal_value_sets_are_disambiguated_by_rows() -> None:
    gold = [(1, 2, "x"), (2, 1, "y")]
    pred = [(2, 1, "x"), (1, 2, "y")]  # swapping the first two columns makes them equal
    assert results_match(gold, pred, order_matters=False)


def test_identical_columns_do_not_blow_up_the_search() -> None:
    gold = [tuple([None] * 12 + [i]) for i in range(3)]
    pred = [tuple([i] + [None] * 12) for i in range(3)]
    assert results_match(gold, pred, order_matters=False)


def test_many_interchangeable_columns_that_never_match_answer_false() -> None:
    gold = [(1, 2, 3, 4, 5, 6, 7, 8), (2, 3, 4, 5, 6, 7, 8, 1)]
    pred = [(1, 2, 3, 4, 5, 6, 7, 8), (3, 4, 5, 6, 7, 8, 1, 2)]
    assert not results_match(gold, pred, order_matters=False)


def test_quick_rejection_of_different_values() -> None:
    assert not results_match([(1, "a")], [(1, "b")], order_matters=False)


def test_nan_results_match() -> None:
    assert results_match([(float("nan"),)], [(Decimal("NaN"),)], order_matters=True)


def test_generators_are_accepted() -> None:
    assert results_match(((i,) for i in range(3)), iter([(2,), (1,), (0,)]), order_matters=False)


# -- properties ------------------------------------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-1000, max_value=1000),
    st.text(max_size=4),
    st.dates(),
)


@st.composite
def _results(draw: st.DrawFn) -> list[tuple[object, ...]]:
    width = draw(st.integers(min_value=1, max_value=4))
    row = st.tuples(*([_values] * width))
    return draw(st.lists(row, max_size=6))


@given(_results(), st.randoms(use_true_random=False))
def test_unordered_hash_is_invariant_under_row_shuffles(rows: list[tuple[object, ...]], rnd) -> None:
    width = len(rows[0]) if rows else 1
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert result_hash(width, rows, ordered=False) == result_hash(width, shuffled, ordered=False)


@given(_results(), st.booleans())
def test_results_match_is_reflexive(rows: list[tuple[object, ...]], order_matters: bool) -> None:
    assert results_match(rows, list(rows), order_matters=order_matters)


@given(_results(), _results(), st.booleans())
def test_results_match_is_symmetric(
    gold: list[tuple[object, ...]], pred: list[tuple[object, ...]], order_matters: bool
) -> None:
    assert results_match(gold, pred, order_matters) == results_match(pred, gold, order_matters)


@given(_results(), st.randoms(use_true_random=False), st.booleans())
def test_results_match_tolerates_column_permutations(rows: list[tuple[object, ...]], rnd, order_matters: bool) -> None:
    width = len(rows[0]) if rows else 1
    perm = list(range(width))
    rnd.shuffle(perm)
    permuted = [tuple(row[i] for i in perm) for row in rows]
    assert results_match(rows, permuted, order_matters=order_matters)


@given(_results())
def test_equal_unordered_hashes_imply_match(rows: list[tuple[object, ...]]) -> None:
    width = len(rows[0]) if rows else 1
    reversed_rows = rows[::-1]
    assert result_hash(width, rows, ordered=False) == result_hash(width, reversed_rows, ordered=False)
    assert results_match(rows, reversed_rows, order_matters=False)


# -- has_top_level_order_by ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t ORDER BY a", True),
        ("SELECT a FROM t ORDER BY a LIMIT 1", True),
        ("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1", True),
        ("WITH x AS (SELECT a FROM t) SELECT a FROM x ORDER BY a DESC", True),
        ("(SELECT a FROM t ORDER BY a)", True),
        ("(SELECT a FROM t) ORDER BY a", True),
        ("SELECT a FROM t", False),
        ("SELECT * FROM (SELECT a FROM t ORDER BY a) AS s", False),
        ("WITH x AS (SELECT a FROM t ORDER BY a) SELECT a FROM x", False),
        ("SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM t", False),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b LIMIT 3)", False),
        ("SELECT 1 UNION (SELECT 2 ORDER BY 1)", False),
        ("SELECT STRING_AGG(a, ',' ORDER BY a) FROM t", False),
        ('SELECT "order", border FROM orders', False),
        ("select a from t order by a", True),
        ("((SELECT a FROM t ORDER BY a))", True),
        ("(SELECT a FROM t) UNION (SELECT b FROM u)", False),
    ],
)
def test_has_top_level_order_by(sql: str, expected: bool) -> None:
    assert has_top_level_order_by(sqlglot.parse_one(sql, read="postgres")) is expected
    # Execute decides from the normalized SQL's tokens (no parse); it must agree with the tree
    assert top_level_order_by(normalize_sql(sql, "postgres", "postgres").sql, "postgres") is expected


def _latin_square(n: int, entry) -> list[tuple[int, ...]]:
    return [tuple(entry(i, j) % n for j in range(n)) for i in range(n)] * 10


def test_column_search_rejects_latin_squares_that_no_permutation_relates() -> None:
    cyclic = _latin_square(8, lambda i, j: i + j)
    xor = _latin_square(8, lambda i, j: i ^ j)  # every column and row holds the same values
    assert not results_match(cyclic, xor, order_matters=False)


def test_column_search_finds_a_deep_permutation() -> None:
    cyclic = _latin_square(10, lambda i, j: i + j)
    scaled = _latin_square(10, lambda i, j: 3 * j + 7 * i)  # columns permuted by j -> 7j
    assert results_match(cyclic, scaled, order_matters=False)


def test_column_search_gives_up_as_no_match(monkeypatch: pytest.MonkeyPatch) -> None:
    import transforms.kit.equivalence as equivalence

    monkeypatch.setattr(equivalence, "MAX_SEARCH_STEPS", 1)
    gold = [(1, 2, "x"), (2, 1, "y")]
    pred = [(2, 1, "x"), (1, 2, "y")]
    assert not results_match(gold, pred, order_matters=False)


def test_very_wide_results_match_without_permuting(monkeypatch: pytest.MonkeyPatch) -> None:
    import transforms.kit.equivalence as equivalence

    monkeypatch.setattr(equivalence, "MAX_PERMUTED_COLUMNS", 2)
    assert results_match([(1, 2, 3), (4, 5, 6)], [(4, 5, 6), (1, 2, 3)], order_matters=False)


def test_very_wide_results_are_not_permuted(monkeypatch: pytest.MonkeyPatch) -> None:
    import transforms.kit.equivalence as equivalence

    monkeypatch.setattr(equivalence, "MAX_PERMUTED_COLUMNS", 2)
    assert not results_match([(1, 2, 3), (4, 5, 6)], [(3, 2, 1), (6, 5, 4)], order_matters=False)
