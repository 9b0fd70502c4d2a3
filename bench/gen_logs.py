"""Realistic logged queries over the Chinook schema (PostgreSQL naming), for the benchmarks.

Usage::

    python bench/gen_logs.py --count 100000 [--seed 7] [--format jsonl|sql] --output bench/results/logs-100k.jsonl

What a real query log looks like, and what this generator reproduces (same seed and
count → byte-identical file):

* **a few hot templates, run all day** — dashboards and scheduled reports: ~40
  hand-written queries (joins along foreign keys, GROUP BY/HAVING, CTEs, window
  functions, subqueries, set operations) picked with Zipf weights;
* **literal variations** — the same template with another country, genre id,
  date or LIMIT (values Zipf-weighted too, so popular values repeat);
* **exact repeats** — a refreshing dashboard re-issues a recent query verbatim
  (~20 % of lines);
* **a long tail of templates** — ad-hoc queries composed from random column
  subsets, filters, aggregates, orderings and limits over one table or a
  foreign-key join, drawn from a very large space so most appear once;
* **surface noise** — lower-case keywords, extra whitespace and newlines, trailing
  semicolons, ``-- dashboard`` and ``/* app=… */`` comments (normalization must
  see through these);
* **garbage** (~3 %) — typos, truncated statements, DML and DDL, session commands,
  multi-statement lines, prose, empty SQL (every one must become a dead letter).

``jsonl`` lines carry ``ts``, ``user``, ``app``, ``duration_ms`` and ``sql`` (as a
query-log export would); ``sql`` is a script of statements ending with ``;``.
Every query reads only Chinook tables through their foreign keys, so running the
log against the PostgreSQL Chinook database is cheap.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import datetime
import itertools
import json
import os
import random
import sys
from typing import Callable, Iterator, Sequence

COUNTRIES = ("USA", "Canada", "France", "Brazil", "Germany", "United Kingdom", "Czech Republic", "Portugal",
             "India", "Chile", "Ireland", "Hungary", "Austria", "Finland", "Netherlands", "Norway", "Sweden",
             "Spain", "Poland", "Italy", "Denmark", "Belgium", "Australia", "Argentina")
CITIES = ("Prague", "Mountain View", "London", "Berlin", "Paris", "São Paulo", "Lisbon", "Toronto", "Dublin",
          "Budapest", "Vienna", "Oslo", "Stockholm", "Madrid", "Warsaw", "Rome", "Copenhagen", "Brussels")
GENRES = ("Rock", "Jazz", "Metal", "Alternative & Punk", "Rock And Roll", "Blues", "Latin", "Reggae", "Pop",
          "Soundtrack", "Bossa Nova", "Easy Listening", "Heavy Metal", "R&B/Soul", "Electronica/Dance",
          "World", "Hip Hop/Rap", "Science Fiction", "TV Shows", "Sci Fi & Fantasy", "Drama", "Comedy",
          "Alternative", "Classical", "Opera")
ARTISTS = ("AC/DC", "Accept", "Aerosmith", "Alanis Morissette", "Alice In Chains", "Antônio Carlos Jobim",
           "Apocalyptica", "Audioslave", "BackBeat", "Billy Cobham", "Black Label Society", "Black Sabbath",
           "Led Zeppelin", "Iron Maiden", "Metallica", "U2", "Queen", "Van Halen", "Pearl Jam", "Nirvana",
           "Deep Purple", "The Rolling Stones", "Kiss", "Ozzy Osbourne", "Red Hot Chili Peppers", "Guns N' Roses")
MEDIA = ("MPEG audio file", "Protected AAC audio file", "Protected MPEG-4 video file", "Purchased AAC audio file",
         "AAC audio file")
TITLES = ("Sales Support Agent", "Sales Manager", "IT Staff", "IT Manager", "General Manager")
USERS = tuple(f"analyst_{i:02d}" for i in range(1, 41)) + ("etl", "metabase", "looker", "cron")
APPS = ("metabase", "psql", "looker", "jupyter", "dbt", "superset", "grafana")

# Hot templates: (weight-rank order) each a format string over the value pickers below.
HOT_TEMPLATES: tuple[str, ...] = (
    "SELECT billing_country, SUM(total) AS revenue FROM invoice GROUP BY billing_country ORDER BY revenue DESC LIMIT {limit}",
    "SELECT COUNT(*) FROM track WHERE genre_id = {genre_id}",
    "SELECT first_name, last_name, email FROM customer WHERE country = '{country}'",
    "SELECT t.name, t.milliseconds FROM track t JOIN album a ON a.album_id = t.album_id WHERE a.artist_id = {artist_id} ORDER BY t.milliseconds DESC",
    "SELECT name FROM artist WHERE artist_id = {artist_id}",
    "SELECT g.name, COUNT(*) AS tracks FROM track t JOIN genre g ON g.genre_id = t.genre_id GROUP BY g.name ORDER BY tracks DESC LIMIT {limit}",
    "SELECT invoice_id, invoice_date, total FROM invoice WHERE customer_id = {customer_id} ORDER BY invoice_date DESC",
    "SELECT DATE_TRUNC('month', invoice_date) AS month, SUM(total) FROM invoice WHERE invoice_date >= '{date}' GROUP BY 1 ORDER BY 1",
    "SELECT a.title, ar.name FROM album a JOIN artist ar ON ar.artist_id = a.artist_id WHERE ar.name = '{artist}'",
    "SELECT c.first_name, c.last_name, SUM(i.total) AS spent FROM customer c JOIN invoice i ON i.customer_id = c.customer_id GROUP BY c.customer_id, c.first_name, c.last_name ORDER BY spent DESC LIMIT {limit}",
    "SELECT AVG(unit_price) FROM track WHERE media_type_id = {media_type_id}",
    "SELECT e.first_name, e.last_name, COUNT(c.customer_id) AS customers FROM employee e LEFT JOIN customer c ON c.support_rep_id = e.employee_id GROUP BY e.employee_id, e.first_name, e.last_name",
    "SELECT name, composer FROM track WHERE composer LIKE '%{composer_word}%' LIMIT {limit}",
    "SELECT billing_city, COUNT(*) FROM invoice WHERE billing_country = '{country}' GROUP BY billing_city",
    "SELECT p.name, COUNT(pt.track_id) FROM playlist p JOIN playlist_track pt ON pt.playlist_id = p.playlist_id GROUP BY p.name HAVING COUNT(pt.track_id) > {small}",
    "WITH sales AS (SELECT customer_id, SUM(total) AS spent FROM invoice GROUP BY customer_id) SELECT c.first_name, c.last_name, s.spent FROM sales s JOIN customer c ON c.customer_id = s.customer_id WHERE s.spent > {money}",
    "SELECT t.name, RANK() OVER (PARTITION BY t.genre_id ORDER BY t.milliseconds DESC) AS rnk FROM track t WHERE t.genre_id = {genre_id}",
    "SELECT title FROM album WHERE album_id IN (SELECT album_id FROM track WHERE genre_id = {genre_id}) ORDER BY title LIMIT {limit}",
    "SELECT COUNT(DISTINCT customer_id) FROM invoice WHERE invoice_date BETWEEN '{date}' AND '{date2}'",
    "SELECT il.track_id, SUM(il.quantity) AS sold FROM invoice_line il GROUP BY il.track_id ORDER BY sold DESC LIMIT {limit}",
    "SELECT first_name, last_name FROM employee WHERE title = '{title}'",
    "SELECT m.name, COUNT(*) FROM track t JOIN media_type m ON m.media_type_id = t.media_type_id GROUP BY m.name",
    "SELECT name FROM track WHERE milliseconds > {millis} ORDER BY milliseconds DESC LIMIT {limit}",
    "SELECT country, COUNT(*) AS customers FROM customer GROUP BY country HAVING COUNT(*) >= {small} ORDER BY customers DESC",
    "SELECT ar.name, COUNT(a.album_id) AS albums FROM artist ar JOIN album a ON a.artist_id = ar.artist_id GROUP BY ar.name ORDER BY albums DESC LIMIT {limit}",
    "SELECT i.invoice_id, c.email FROM invoice i JOIN customer c ON c.customer_id = i.customer_id WHERE i.total > {money} AND c.country = '{country}'",
    "SELECT name FROM genre WHERE genre_id NOT IN (SELECT DISTINCT genre_id FROM track WHERE unit_price > 0.99)",
    "SELECT city FROM customer WHERE country = '{country}' UNION SELECT city FROM employee WHERE country = '{country}'",
    "SELECT EXTRACT(YEAR FROM invoice_date) AS year, COUNT(*), SUM(total) FROM invoice GROUP BY 1 ORDER BY 1",
    "SELECT t.name FROM track t WHERE NOT EXISTS (SELECT 1 FROM invoice_line il WHERE il.track_id = t.track_id) LIMIT {limit}",
    "SELECT billing_country, AVG(total) FROM invoice GROUP BY billing_country",
    "SELECT a.title, SUM(t.milliseconds) / 60000 AS minutes FROM album a JOIN track t ON t.album_id = a.album_id WHERE a.album_id = {album_id} GROUP BY a.title",
    "SELECT c.customer_id, c.first_name, MAX(i.invoice_date) AS last_order FROM customer c JOIN invoice i ON i.customer_id = c.customer_id WHERE c.city = '{city}' GROUP BY c.customer_id, c.first_name",
    "SELECT g.name, AVG(t.unit_price) FROM track t JOIN genre g ON t.genre_id = g.genre_id WHERE g.name = '{genre}' GROUP BY g.name",
    "SELECT invoice_id, total, SUM(total) OVER (ORDER BY invoice_date) AS running FROM invoice WHERE customer_id = {customer_id}",
    "SELECT e.first_name || ' ' || e.last_name AS rep, m.first_name AS manager FROM employee e LEFT JOIN employee m ON m.employee_id = e.reports_to",
    "SELECT COUNT(*) FROM invoice_line WHERE unit_price > {price}",
    "SELECT track_id, name, bytes / 1048576.0 AS mb FROM track WHERE album_id = {album_id}",
    "SELECT CASE WHEN total > {money} THEN 'large' ELSE 'small' END AS size, COUNT(*) FROM invoice GROUP BY 1",
    "SELECT name FROM media_type WHERE name = '{media}'",
)

# Tables with their columns and a few typed columns for filters, plus foreign-key joins.
TABLES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "artist": (("artist_id", "name"), {"artist_id": "artist_id", "name": "artist"}),
    "album": (("album_id", "title", "artist_id"), {"artist_id": "artist_id", "album_id": "album_id"}),
    "track": (("track_id", "name", "album_id", "media_type_id", "genre_id", "composer", "milliseconds", "bytes",
               "unit_price"),
              {"genre_id": "genre_id", "album_id": "album_id", "milliseconds": "millis", "unit_price": "price",
               "media_type_id": "media_type_id"}),
    "genre": (("genre_id", "name"), {"genre_id": "genre_id", "name": "genre"}),
    "media_type": (("media_type_id", "name"), {"media_type_id": "media_type_id", "name": "media"}),
    "customer": (("customer_id", "first_name", "last_name", "company", "city", "state", "country", "email",
                  "support_rep_id"),
                 {"country": "country", "city": "city", "customer_id": "customer_id", "support_rep_id": "small"}),
    "employee": (("employee_id", "last_name", "first_name", "title", "reports_to", "city", "country", "hire_date"),
                 {"title": "title", "country": "country", "employee_id": "small"}),
    "invoice": (("invoice_id", "customer_id", "invoice_date", "billing_city", "billing_country", "total"),
                {"billing_country": "country", "total": "money", "customer_id": "customer_id",
                 "invoice_date": "date", "billing_city": "city"}),
    "invoice_line": (("invoice_line_id", "invoice_id", "track_id", "unit_price", "quantity"),
                     {"unit_price": "price", "quantity": "small", "track_id": "track_id"}),
    "playlist": (("playlist_id", "name"), {"playlist_id": "small"}),
}
JOINS: tuple[tuple[str, str, str], ...] = (  # (left, right, condition with l/r aliases)
    ("album", "artist", "l.artist_id = r.artist_id"),
    ("track", "album", "l.album_id = r.album_id"),
    ("track", "genre", "l.genre_id = r.genre_id"),
    ("track", "media_type", "l.media_type_id = r.media_type_id"),
    ("invoice", "customer", "l.customer_id = r.customer_id"),
    ("invoice_line", "invoice", "l.invoice_id = r.invoice_id"),
    ("invoice_line", "track", "l.track_id = r.track_id"),
    ("customer", "employee", "l.support_rep_id = r.employee_id"),
)
NUMERIC = {"milliseconds", "bytes", "unit_price", "total", "quantity"}
GARBAGE: tuple[str, ...] = (
    "SELEC name FROM artist",
    "SELECT * FROM",
    "SELECT name FROM artist WHERE name = 'AC/DC",
    "INSERT INTO artist (artist_id, name) VALUES (9999, 'Test')",
    "DELETE FROM invoice WHERE invoice_id = {customer_id}",
    "UPDATE customer SET email = 'x@example.com' WHERE customer_id = {customer_id}",
    "DROP TABLE playlist_track",
    "SET search_path TO public",
    "BEGIN",
    "COMMIT",
    "SELECT 1; DROP TABLE album",
    "show me the top customers please",
    "",
    "SELECT pg_sleep(30)",
    "CREATE TEMP TABLE t AS SELECT * FROM track",
    "VACUUM ANALYZE invoice",
    "SELECT name FROM artist WHERE (artist_id = 1",
    "GRANT SELECT ON customer TO reporting",
)


def zipf_picker(rng: random.Random, n: int, s: float = 1.1) -> Callable[[], int]:
    """A function returning an index in ``range(n)`` with Zipf(s) weights (index 0 most likely)."""
    cumulative = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
    total = cumulative[-1]
    return lambda: min(bisect.bisect_left(cumulative, rng.random() * total), n - 1)


class ValuePickers:
    """Literal values for the template placeholders, popular values more often."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._country = zipf_picker(rng, len(COUNTRIES))
        self._genre = zipf_picker(rng, 25)
        self._artist = zipf_picker(rng, 275, 1.0)
        self._customer = zipf_picker(rng, 59, 0.8)
        self._album = zipf_picker(rng, 347, 0.9)
        self._track = zipf_picker(rng, 3503, 0.9)

    def values(self) -> dict[str, object]:
        r = self.rng
        start = datetime.date(2021, 1, 1) + datetime.timedelta(days=r.randrange(0, 5 * 365, 7))
        return {
            "limit": r.choice((5, 10, 10, 10, 20, 25, 50, 100)),
            "genre_id": self._genre() + 1,
            "genre": GENRES[self._genre() % len(GENRES)],
            "country": COUNTRIES[self._country()],
            "city": r.choice(CITIES),
            "artist_id": self._artist() + 1,
            "artist": ARTISTS[self._artist() % len(ARTISTS)].replace("'", "''"),
            "customer_id": self._customer() + 1,
            "album_id": self._album() + 1,
            "track_id": self._track() + 1,
            "media_type_id": r.randint(1, 5),
            "media": r.choice(MEDIA),
            "title": r.choice(TITLES),
            "composer_word": r.choice(("Jagger", "Page", "Plant", "Harris", "Hetfield", "Bono", "Mercury")),
            "small": r.randint(1, 12),
            "money": r.choice((5, 10, 15, 20, 25)),
            "price": r.choice((0.99, 1.99)),
            "millis": r.choice((180000, 240000, 300000, 360000, 600000)),
            "date": start.isoformat(),
            "date2": (start + datetime.timedelta(days=r.choice((7, 30, 90, 365)))).isoformat(),
        }


def long_tail_query(rng: random.Random, values: dict[str, object]) -> str:
    """An ad-hoc query composed at random (one table or one foreign-key join)."""
    if rng.random() < 0.4:
        left, right, condition = rng.choice(JOINS)
        lcols, lfilters = TABLES[left]
        rcols, rfilters = TABLES[right]
        columns = [f"l.{c}" for c in rng.sample(lcols, rng.randint(1, min(3, len(lcols))))]
        columns += [f"r.{c}" for c in rng.sample(rcols, rng.randint(1, min(2, len(rcols))))]
        source = f"{left} l JOIN {right} r ON {condition}"
        alias, filters = rng.choice((("l", lfilters), ("r", rfilters)))
    else:
        table = rng.choice(tuple(TABLES))
        cols, filters = TABLES[table]
        columns = list(rng.sample(cols, rng.randint(1, min(4, len(cols)))))
        source = table
        alias = ""
    prefix = f"{alias}." if alias else ""
    conditions = []
    for column in rng.sample(tuple(filters), rng.randint(0, min(2, len(filters)))):
        value = values[filters[column]]
        op = rng.choice((">", "<", ">=")) if column in NUMERIC or isinstance(value, (int, float)) and rng.random() < 0.3 else "="
        literal = value if isinstance(value, (int, float)) else f"'{value}'"
        conditions.append(f"{prefix}{column} {op} {literal}")
    aggregate = rng.random() < 0.3
    if aggregate:
        group = columns[0]
        select = f"{group}, COUNT(*) AS n"
    else:
        select = ", ".join(columns)
    sql = f"SELECT {'DISTINCT ' if rng.random() < 0.1 else ''}{select} FROM {source}"
    if conditions:
        sql += " WHERE " + rng.choice((" AND ", " AND ", " OR ")).join(conditions)
    if aggregate:
        sql += f" GROUP BY {group}"
        if rng.random() < 0.3:
            sql += f" HAVING COUNT(*) > {values['small']}"
        sql += " ORDER BY n DESC"
    elif rng.random() < 0.5:
        sql += f" ORDER BY {columns[0]}{rng.choice(('', ' DESC'))}"
    if rng.random() < 0.6:
        sql += f" LIMIT {values['limit']}"
    return sql


def add_noise(rng: random.Random, sql: str) -> str:
    """How people and tools actually write a query: case, spacing, comments, semicolons."""
    if rng.random() < 0.15:
        words = sql.split(" ")
        sql = " ".join(w.lower() if w.isupper() and w.isalpha() else w for w in words)
    if rng.random() < 0.15:
        for keyword in (" FROM ", " WHERE ", " GROUP BY ", " ORDER BY ", " JOIN "):
            sql = sql.replace(keyword, "\n  " + keyword.strip() + " ")
    if rng.random() < 0.1:
        sql = sql.replace(", ", " ,  ")
    if rng.random() < 0.1:
        sql = f"/* app={rng.choice(APPS)} */ {sql}"
    if rng.random() < 0.1:
        sql = f"-- dashboard: {rng.choice(('revenue', 'catalog', 'support', 'churn'))}\n{sql}"
    if rng.random() < 0.3:
        sql += ";"
    return sql


def generate(count: int, seed: int = 7) -> Iterator[dict[str, object]]:
    """``count`` log entries ``{ts, user, app, duration_ms, sql}``, deterministic for ``seed``."""
    rng = random.Random(seed)
    pickers = ValuePickers(rng)
    hot = zipf_picker(rng, len(HOT_TEMPLATES), 1.2)
    recent: collections.deque[str] = collections.deque(maxlen=500)
    clock = datetime.datetime(2024, 3, 1, 8, 0, 0)
    for _ in range(count):
        clock += datetime.timedelta(milliseconds=rng.randrange(50, 4000))
        roll = rng.random()
        if roll < 0.03:
            sql = rng.choice(GARBAGE).format(**pickers.values())
        elif roll < 0.23 and recent:
            sql = recent[rng.randrange(len(recent))]
        else:
            values = pickers.values()
            if roll < 0.65:
                sql = HOT_TEMPLATES[hot()].format(**values)
            else:
                sql = long_tail_query(rng, values)
            sql = add_noise(rng, sql)
            recent.append(sql)
        yield {
            "ts": clock.isoformat(timespec="milliseconds") + "Z",
            "user": rng.choice(USERS),
            "app": rng.choice(APPS),
            "duration_ms": int(rng.lognormvariate(3, 1.2)),
            "sql": sql,
        }


def write(entries: Iterator[dict[str, object]], path: str, fmt: str) -> int:
    """Write the entries as JSONL (one object a line) or as a ``.sql`` script; returns the count."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    written = 0
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        for entry in entries:
            if fmt == "jsonl":
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            else:
                sql = str(entry["sql"]).rstrip().rstrip(";")
                if not sql.strip():
                    continue  # an empty statement has no place in a script
                handle.write(f"-- {entry['ts']} {entry['user']}\n{sql};\n")
            written += 1
    os.replace(temporary, path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True, help="how many log entries")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same file)")
    parser.add_argument("--format", choices=("jsonl", "sql"), default="jsonl")
    parser.add_argument("--output", required=True, help="file to write")
    args = parser.parse_args(argv)
    written = write(generate(args.count, args.seed), args.output, args.format)
    print(f"wrote {written} queries to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
