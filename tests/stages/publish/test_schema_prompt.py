"""``--prompt_schema``'s pure choices (transforms/publish/schema_prompt.py): which tables, columns, comments and
example values a training prompt's schema shows, and that the default prompt is the one always written."""

from __future__ import annotations

import pytest

from transforms.publish import schema_prompt as sp
from transforms.publish.exports import render_schema
from transforms.sql.table_schema import Column, Table, table_key, tables_from_ddl

DDL = """
CREATE TABLE artist (artist_id INT PRIMARY KEY, name VARCHAR(120) COMMENT 'the band or performer');
CREATE TABLE album (album_id INT PRIMARY KEY, title VARCHAR(160) COMMENT 'album title',
  artist_id INT REFERENCES artist (artist_id), released INT COMMENT 'year', label TEXT, sleeve TEXT);
CREATE TABLE track (track_id INT PRIMARY KEY, name VARCHAR(200), album_id INT REFERENCES album (album_id),
  milliseconds INT, bytes INT, composer TEXT COMMENT 'who wrote it', unit_price DECIMAL);
CREATE TABLE genre (genre_id INT PRIMARY KEY, name TEXT);
CREATE TABLE employee (employee_id INT PRIMARY KEY, last_name TEXT, first_name TEXT, title TEXT);
CREATE TABLE customer (customer_id INT PRIMARY KEY, support_rep_id INT REFERENCES employee (employee_id),
  country TEXT COMMENT 'billing country', city TEXT, email TEXT);
CREATE TABLE invoice (invoice_id INT PRIMARY KEY, customer_id INT REFERENCES customer (customer_id), total DECIMAL);
CREATE TABLE media_type (media_type_id INT PRIMARY KEY, name TEXT);
"""
UNIVERSE = list(tables_from_ddl([DDL], "mysql").values())
BY_KEY = {table_key(t.name): t for t in UNIVERSE}
NOISY = sp.PromptSchemaSettings(mode=sp.NOISY, seed=0)
FULL = sp.PromptSchemaSettings(mode=sp.FULL)
PAIR_IDS = [f"pair-{i}" for i in range(60)]


def referenced(*names: str) -> list[Table]:
    return [BY_KEY[name] for name in names]


def shown(tables: list[Table]) -> dict[str, set[str]]:
    return {table_key(t.name): {c.name for c in t.columns} for t in tables}


def contains(big: dict[str, set[str]], small: dict[str, set[str]]) -> bool:
    return all(key in big and columns <= big[key] for key, columns in small.items())


def test_ddl_comments_are_read_from_inline_and_comment_on_statements():
    tables = tables_from_ddl(["CREATE TABLE t (a INT, b TEXT); COMMENT ON COLUMN t.b IS 'the b';"
                              "COMMENT ON COLUMN nowhere.x IS 'ignored'"], "postgres")
    assert [c.comment for c in tables["t"].columns] == ["", "the b"] and list(tables) == ["t"]
    assert BY_KEY["artist"].columns[1].comment == "the band or performer"


def test_referenced_mode_is_the_prompt_as_before():
    tables = referenced("album", "artist")
    lookup = sp.PromptSchema(sp.PromptSchemaSettings(), {}, lambda url, name: None, lambda url: None)
    text = lookup.text("p", "Albums by Queen?", tables, None, 0)
    assert text == render_schema(tables) == sp.render_schema(tables)
    assert "--" not in text  # no comments, no example values: the bytes the exports always wrote
    assert text.startswith("CREATE TABLE album (\n  album_id INT PRIMARY KEY,\n  title VARCHAR(160),\n")


@pytest.mark.parametrize("names", [("track",), ("album", "artist"), ("invoice", "customer")])
def test_referenced_within_noisy_within_full(names):
    full = shown(sp.choose_tables("p", referenced(*names), UNIVERSE, FULL))
    assert set(full) == set(BY_KEY) and all(full[k] == {c.name for c in BY_KEY[k].columns} for k in full)
    for pair_id in PAIR_IDS:
        noisy = shown(sp.choose_tables(pair_id, referenced(*names), UNIVERSE, NOISY))
        assert contains(noisy, shown(referenced(*names)))  # the referenced tables whole
        assert contains(full, noisy)
        assert 1 <= len(noisy) - len(names) <= sp.MAX_DISTRACTORS


def test_noisy_is_deterministic_for_a_seed_and_differs_across_seeds():
    def texts(seed: int) -> list[str]:
        settings = sp.PromptSchemaSettings(mode=sp.NOISY, seed=seed)
        return [sp.render_schema(sp.choose_tables(i, referenced("track"), UNIVERSE, settings)) for i in PAIR_IDS]

    assert texts(1) == texts(1)
    assert sum(a != b for a, b in zip(texts(1), texts(2))) > len(PAIR_IDS) // 2
    assert len(set(texts(1))) > len(PAIR_IDS) // 2  # pairs of one seed get different prompts too


def test_noisy_does_not_use_the_global_random_state():
    import random

    random.seed(1)
    first = sp.choose_tables("p", referenced("track"), UNIVERSE, NOISY)
    random.seed(2)
    assert sp.choose_tables("p", referenced("track"), UNIVERSE, NOISY) == first


def test_foreign_key_neighbours_come_first():
    one = sp.PromptSchemaSettings(mode=sp.NOISY, max_distractors=1)
    for pair_id in PAIR_IDS:  # album's neighbours: artist and track
        extra = set(shown(sp.choose_tables(pair_id, referenced("album"), UNIVERSE, one))) - {"album"}
        assert extra <= {"artist", "track"} and len(extra) == 1
    rng = sp.pair_rng("p", 0)
    picked = [table_key(t.name) for t in sp.distractors(referenced("album"), UNIVERSE, rng, 7)]
    assert set(picked[:2]) == {"artist", "track"}


def test_tables_follow_the_database_order_not_the_usage():
    for pair_id in PAIR_IDS[:10]:
        keys = list(shown(sp.choose_tables(pair_id, referenced("invoice"), UNIVERSE, NOISY)))
        assert keys == sorted(keys, key=list(BY_KEY).index)


def test_distractor_columns_keep_keys_and_a_bounded_share():
    track = BY_KEY["track"]
    others = [c for c in track.columns if not (c.primary_key or c.references)]
    for pair_id in PAIR_IDS:
        thin = sp.thin_columns(track, sp.pair_rng(pair_id, 0), 0.1)
        names = [c.name for c in thin.columns]
        assert {"track_id", "album_id"} <= set(names)
        assert 1 <= len(names) - 2 <= len(others)
        assert names == [c.name for c in track.columns if c.name in names]  # the table's own order


def test_thinned_sample_rows_keep_their_columns():
    table = Table("t", (Column("id", primary_key=True), Column("a"), Column("b")), (("1", "'x'", "'y'"),))
    for pair_id in PAIR_IDS[:20]:
        thin = sp.thin_columns(table, sp.pair_rng(pair_id, 0), 0.1)
        row = dict(zip(("id", "a", "b"), table.samples[0]))
        assert thin.samples == (tuple(row[c.name] for c in thin.columns),)


def test_noisy_drops_some_comments_full_keeps_all():
    def comments(tables: list[Table]) -> int:
        return sum(1 for t in tables for c in t.columns if c.comment)

    full = sp.choose_tables("p", referenced("album"), UNIVERSE, FULL)
    assert comments(full) == sum(1 for t in UNIVERSE for c in t.columns if c.comment)
    kept = [comments(sp.choose_tables(i, referenced("album"), UNIVERSE, NOISY)) for i in PAIR_IDS]
    assert min(kept) < 2 and max(kept) >= 2  # album has two comments: sometimes both stay, sometimes not
    text = sp.PromptSchema(FULL, {}, lambda url, name: None, lambda url: None).text(
        "p", "q", referenced("album"), None, 0)
    assert "  title VARCHAR(160), -- album title\n" in text


def test_example_values_come_from_matching_words():
    values = {"artist": {"name": ("Queen", "Led Zeppelin", "AC/DC", "Queensryche")},
              "album": {"title": ("Greatest Hits", "Led Zeppelin IV", "News of the World")}}
    found = sp.match_examples("Which albums did Led Zeppelin release?", values, 3)
    assert found == {"artist": {"name": ["'Led Zeppelin'"]}, "album": {"title": ["'Led Zeppelin IV'"]}}
    assert sp.match_examples("How many tracks are there?", values, 3) == {}


def test_example_values_are_bounded_and_truncated():
    long = "Zeppelin " + "x" * 300
    found = sp.match_examples("zeppelin", {"t": {"c": tuple(f"Zeppelin {i}" for i in range(10)) + (long,)}}, 3)
    assert len(found["t"]["c"]) == 3
    assert all(len(v) <= sp.EXAMPLE_CHARS + 2 for v in sp.match_examples("zeppelin", {"t": {"c": (long,)}}, 3)["t"]["c"])


class FakeExecutor:
    """Answers the value scan from rows in memory (the Executor contract's ``fetch_rows``)."""

    dialect = "sqlite"

    def __init__(self, rows: dict[str, list[tuple]]):
        self.rows, self.queries = rows, []

    def fetch_rows(self, sql: str):
        self.queries.append(sql)
        table = sql.split(" FROM ")[1].split()[0].strip('"').lower()
        return [], self.rows.get(table, [])


def test_noisy_prompt_shows_matching_values_from_the_database():
    executor = FakeExecutor({"artist": [("Queen",), ("Led Zeppelin",), (None,)]})  # the text column only
    artist = BY_KEY["artist"]
    lookup = sp.PromptSchema(NOISY, {"artist": artist}, lambda url, name: None, lambda url: executor)
    text = lookup.text("p", "Albums by Led Zeppelin", [artist], "sqlite:///x", 0)
    assert "  name VARCHAR(120) -- " in text and "example values: 'Led Zeppelin'" in text
    assert "'Queen'" not in text
    scans = len(executor.queries)
    lookup.text("p2", "Albums by Queen", [artist], "sqlite:///x", 0)
    assert len(executor.queries) == scans  # the values of a table are read once per worker
    scans = [q for q in executor.queries if "sqlite_master" not in q]  # the list of tables aside
    assert len(scans) == 1 and "LIMIT 2000" in scans[0] and '"name"' in scans[0]


def test_render_ddl_puts_notes_after_the_comma():
    table = Table("t", (Column("a", "INT"), Column("b", "TEXT")))
    assert sp.render_ddl(table, notes={"a": "first", "b": "last\nline"}) == (
        "CREATE TABLE t (\n  a INT, -- first\n  b TEXT -- last line\n);")
