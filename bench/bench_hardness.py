"""Agreement of ``transforms.sql.hardness.spider_hardness`` with the original Spider code.

Usage::

    python bench/bench_hardness.py --eval-repo PATH [--random N] [--show N] [--min-agreement 0.99]

The reference is ``Evaluator.eval_hardness`` + ``process_sql.get_sql`` from
test-suite-sql-eval. Its code is not part of this project and is not downloaded
at run time: clone it yourself and point ``--eval-repo`` (or the environment
variable ``TSSE_REPO``) at the checkout::

    git clone https://github.com/taoyds/test-suite-sql-eval /tmp/test-suite-sql-eval
    pip install nltk

``process_sql`` tokenizes with ``nltk.word_tokenize``, whose default needs the
``punkt`` data; when that is not installed the bench uses
``word_tokenize(..., preserve_line=True)`` (same tokens, no sentence split,
which SQL does not need) and says so. ``evaluation.py`` imports ``exec_eval``
(tqdm, sqlparse); when that import fails a stub stands in, since hardness does
not execute anything.

The Spider parser needs a schema read from a SQLite file (``get_schema``), so
the queries are measured against:

* ``chinook``: the hand-written Spider-style queries below (easy to extra:
  joins, nested queries, set operations, GROUP BY/HAVING, LIKE, OR, NOT),
  against ``shared/data/chinook/Chinook_Sqlite.sqlite``;
* ``random``: ``--random N`` (default 400) queries drawn with a fixed seed
  from a small Spider-style grammar over Chinook (joins along foreign keys,
  AND/OR conditions with LIKE, BETWEEN, [NOT] IN / scalar subqueries,
  column-to-column comparisons, GROUP BY/HAVING, ORDER BY/LIMIT, set
  operations, derived tables), to cover combinations nobody wrote by hand;
* ``quoted``: the ``chinook`` and ``random`` queries that hold a string, with
  every string written in double quotes as Spider's own SQLite queries often do
  (``WHERE Name = "Queen" OR ...``): the Spider parser reads ``"..."`` as a
  string, while sqlglot's SQLite reader makes it a quoted column, so this set
  checks that the labels do not depend on the quote character;
* ``defog``: the first alternative of every row of Defog's
  ``questions_gen_sqlite.csv``, against empty SQLite copies of the Defog
  schemas built from the column metadata (``pypi_dumps/*.json``) and DDL
  (``*.sql``) in ``shared/data/defog``;
* ``defog-rw``: the same queries rewritten mechanically into the subset the
  Spider parser reads (``spider_subset``: column aliases inlined, ordinal
  GROUP BY / ORDER BY keys replaced by the select item, explicit NULLS
  FIRST/LAST dropped), so more of them can be compared. The Spider parser
  misreads ``NULLS FIRST``: it stops at ``NULLS`` and so never sees the LIMIT
  after it, which is the main reason the unrewritten set agrees less.

Agreement (``%``: same level; ``counts %``: same component1, component2 and
others) is counted over the queries the original parser accepts (it rejects
column aliases, functions other than the five aggregates, IN lists, IS NULL,
EXISTS, CASE, parenthesised conditions...); the table also says how many it
rejected. Our label comes from one ``sqlglot.parse_one(sql, read="sqlite")``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import types
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import sqlglot
from sqlglot import exp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from transforms.sql.hardness import HARDNESS_LEVELS, spider_counts, spider_hardness  # noqa: E402

DATA_DIR = REPO_ROOT.parent / "shared" / "data"

GET_EVAL_REPO = """\
The original Spider evaluation code is needed as the reference and is not part of this project.
Get it once and point the bench at it:

    git clone https://github.com/taoyds/test-suite-sql-eval /path/to/test-suite-sql-eval
    pip install nltk
    python bench/bench_hardness.py --eval-repo /path/to/test-suite-sql-eval

(or set TSSE_REPO=/path/to/test-suite-sql-eval)."""

# Spider-style queries on Chinook, written for this bench: table aliases with AS,
# no column aliases, only max/min/count/sum/avg, so that the original parser
# accepts them. Roughly a quarter per level, with the constructs each level
# mixes (joins, nesting, set operations, grouping, OR/LIKE/NOT).
CHINOOK_QUERIES: tuple[str, ...] = (
    # --- easy-ish: one component at most
    "SELECT count(*) FROM Artist",
    "SELECT Name FROM Artist",
    "SELECT Title FROM Album WHERE ArtistId = 1",
    "SELECT Name FROM Track WHERE Milliseconds > 300000",
    "SELECT max(Total) FROM Invoice",
    "SELECT min(UnitPrice) FROM Track",
    "SELECT avg(Milliseconds) FROM Track",
    "SELECT sum(Total) FROM Invoice",
    "SELECT count(DISTINCT Country) FROM Customer",
    "SELECT DISTINCT BillingCountry FROM Invoice",
    "SELECT Name FROM Genre ORDER BY Name",
    "SELECT * FROM MediaType",
    "SELECT Title FROM Album LIMIT 10",
    "SELECT count(*) FROM Customer WHERE Country = 'Brazil'",
    "SELECT FirstName FROM Employee WHERE Title = 'Sales Support Agent'",
    "SELECT Name FROM Track WHERE Name LIKE '%Love%'",
    "SELECT Email FROM Customer WHERE Country != 'USA'",
    "SELECT Name FROM Track WHERE Milliseconds BETWEEN 200000 AND 300000",
    "SELECT Country FROM Customer GROUP BY Country",
    "SELECT count(*) FROM (SELECT Country FROM Customer GROUP BY Country HAVING count(*) > 3)",
    "SELECT count(*) FROM Track WHERE Composer = 'AC/DC'",
    "SELECT LastName FROM Employee WHERE HireDate > '2003-01-01'",
    "SELECT Title FROM Album WHERE AlbumId < 5",
    "SELECT max(Bytes) FROM Track WHERE GenreId = 1",
    "SELECT Name FROM Playlist ORDER BY PlaylistId DESC",
    "SELECT T1.Title FROM Album AS T1 JOIN Artist AS T2 ON T1.ArtistId = T2.ArtistId",
    "SELECT BillingCity FROM Invoice WHERE Total >= 10",
    "SELECT Name FROM Track WHERE UnitPrice <= 0.99",
    # --- medium
    "SELECT FirstName, LastName FROM Customer",
    "SELECT Name, Composer FROM Track WHERE AlbumId = 1",
    "SELECT count(*), max(Total) FROM Invoice",
    "SELECT Country, count(*) FROM Customer GROUP BY Country",
    "SELECT Name FROM Track ORDER BY Milliseconds DESC LIMIT 1",
    "SELECT Name FROM Track WHERE GenreId = 1 AND MediaTypeId = 1",
    "SELECT Name FROM Track WHERE GenreId = 1 OR GenreId = 2",
    "SELECT T2.Name FROM Album AS T1 JOIN Artist AS T2 ON T1.ArtistId = T2.ArtistId WHERE T1.Title = 'Facelift'",
    "SELECT T1.Name, T2.Name FROM Track AS T1 JOIN Genre AS T2 ON T1.GenreId = T2.GenreId",
    "SELECT T1.Title, count(*) FROM Album AS T1 JOIN Track AS T2 ON T1.AlbumId = T2.AlbumId GROUP BY T1.AlbumId",
    "SELECT BillingCountry, sum(Total) FROM Invoice GROUP BY BillingCountry",
    "SELECT BillingCountry FROM Invoice GROUP BY BillingCountry ORDER BY sum(Total) DESC LIMIT 1",
    "SELECT Country FROM Customer GROUP BY Country HAVING count(*) > 5",
    "SELECT GenreId, avg(Milliseconds) FROM Track GROUP BY GenreId",
    "SELECT Name, Milliseconds FROM Track ORDER BY Milliseconds",
    "SELECT FirstName, LastName FROM Employee WHERE ReportsTo = 2",
    "SELECT Name FROM Artist WHERE Name LIKE 'A%' ORDER BY Name",
    "SELECT count(*) FROM Track WHERE Name LIKE '%Rock%'",
    "SELECT count(*) FROM Track AS T1 JOIN Genre AS T2 ON T1.GenreId = T2.GenreId WHERE T2.Name = 'Jazz'",
    "SELECT min(Milliseconds), max(Milliseconds), avg(Milliseconds) FROM Track",
    "SELECT City, Country FROM Customer WHERE Company = 'Google Inc.'",
    "SELECT Title FROM Album ORDER BY Title LIMIT 5",
    "SELECT DISTINCT T1.Country FROM Customer AS T1 JOIN Invoice AS T2 ON T1.CustomerId = T2.CustomerId",
    "SELECT count(*) FROM Invoice WHERE BillingCountry = 'Germany' AND Total > 5",
    "SELECT AlbumId, sum(Milliseconds) FROM Track GROUP BY AlbumId ORDER BY sum(Milliseconds) DESC",
    "SELECT CustomerId FROM Invoice GROUP BY CustomerId HAVING sum(Total) > 45",
    "SELECT T2.Name FROM PlaylistTrack AS T1 JOIN Playlist AS T2 ON T1.PlaylistId = T2.PlaylistId GROUP BY T1.PlaylistId",
    "SELECT Composer FROM Track WHERE Name NOT LIKE '%a%'",
    "SELECT Name FROM Track WHERE AlbumId NOT IN (1, 2, 3)",
    "SELECT FirstName FROM Customer WHERE Country = 'Canada' OR Country = 'USA' OR Country = 'Mexico'",
    "SELECT Name FROM Track WHERE Milliseconds > 100000 AND Milliseconds < 200000 AND GenreId = 1",
    "SELECT Title, AlbumId FROM Album ORDER BY Title DESC LIMIT 3",
    "SELECT count(*) FROM Track WHERE Name LIKE 'The%' OR Name LIKE 'A%'",
    # --- hard
    "SELECT Name FROM Track WHERE Milliseconds > (SELECT avg(Milliseconds) FROM Track)",
    "SELECT Name FROM Artist WHERE ArtistId IN (SELECT ArtistId FROM Album)",
    "SELECT Name FROM Artist WHERE ArtistId NOT IN (SELECT ArtistId FROM Album)",
    "SELECT Name FROM Genre EXCEPT SELECT T2.Name FROM Track AS T1 JOIN Genre AS T2 ON T1.GenreId = T2.GenreId",
    "SELECT Country FROM Customer INTERSECT SELECT Country FROM Employee",
    "SELECT City FROM Customer UNION SELECT City FROM Employee",
    "SELECT T1.Name FROM Track AS T1 JOIN Album AS T2 ON T1.AlbumId = T2.AlbumId JOIN Artist AS T3 ON T2.ArtistId = T3.ArtistId WHERE T3.Name = 'Queen'",
    "SELECT T1.Title FROM Album AS T1 JOIN Track AS T2 ON T1.AlbumId = T2.AlbumId GROUP BY T1.AlbumId ORDER BY count(*) DESC LIMIT 1",
    "SELECT T3.Name, count(*) FROM Track AS T1 JOIN Album AS T2 ON T1.AlbumId = T2.AlbumId JOIN Artist AS T3 ON T2.ArtistId = T3.ArtistId GROUP BY T3.ArtistId",
    "SELECT Country, City, count(*) FROM Customer GROUP BY Country, City",
    "SELECT Name FROM Track WHERE Name LIKE '%Love%' OR Name LIKE '%Heart%'",
    "SELECT FirstName, LastName FROM Customer WHERE Country = 'USA' AND State = 'CA' ORDER BY LastName",
    "SELECT T2.Name, sum(T1.Quantity) FROM InvoiceLine AS T1 JOIN Track AS T2 ON T1.TrackId = T2.TrackId GROUP BY T1.TrackId ORDER BY sum(T1.Quantity) DESC LIMIT 5",
    "SELECT BillingCountry, count(*), sum(Total) FROM Invoice GROUP BY BillingCountry HAVING count(*) > 20",
    "SELECT T1.FirstName, T1.LastName FROM Customer AS T1 JOIN Invoice AS T2 ON T1.CustomerId = T2.CustomerId GROUP BY T1.CustomerId HAVING sum(T2.Total) > 40",
    "SELECT Title FROM Album WHERE AlbumId IN (SELECT AlbumId FROM Track WHERE GenreId = 1)",
    "SELECT count(*) FROM Track WHERE AlbumId IN (SELECT AlbumId FROM Album WHERE ArtistId = 22)",
    "SELECT Name FROM MediaType WHERE MediaTypeId NOT IN (SELECT MediaTypeId FROM Track)",
    "SELECT Name FROM Playlist INTERSECT SELECT T2.Name FROM PlaylistTrack AS T1 JOIN Playlist AS T2 ON T1.PlaylistId = T2.PlaylistId",
    "SELECT FirstName FROM Customer WHERE SupportRepId = 3 AND Country = 'USA' AND City = 'Boston'",
    "SELECT Name, UnitPrice FROM Track WHERE GenreId = 1 ORDER BY UnitPrice DESC LIMIT 10",
    "SELECT Name, GenreId, AlbumId FROM Track WHERE Composer LIKE '%Mercury%' ORDER BY Name",
    "SELECT avg(Total), max(Total) FROM Invoice WHERE BillingCountry = 'France'",
    "SELECT T1.Name FROM Artist AS T1 JOIN Album AS T2 ON T1.ArtistId = T2.ArtistId WHERE T2.Title LIKE '%Live%' ORDER BY T1.Name",
    "SELECT count(*) FROM Customer WHERE Country = 'USA' OR Country = 'Canada' AND Company = 'Apple Inc.'",
    "SELECT Name FROM Track WHERE GenreId = 1 INTERSECT SELECT Name FROM Track WHERE MediaTypeId = 2",
    "SELECT Name FROM Track WHERE UnitPrice > 0.99 UNION SELECT Name FROM Track WHERE Milliseconds > 600000",
    "SELECT FirstName FROM Employee EXCEPT SELECT FirstName FROM Customer",
    "SELECT Name FROM Track WHERE Bytes > (SELECT max(Bytes) FROM Track WHERE GenreId = 2)",
    "SELECT T1.LastName, count(*) FROM Employee AS T1 JOIN Customer AS T2 ON T1.EmployeeId = T2.SupportRepId GROUP BY T1.EmployeeId ORDER BY count(*) DESC",
    "SELECT GenreId, MediaTypeId, count(*) FROM Track GROUP BY GenreId, MediaTypeId ORDER BY count(*) DESC LIMIT 3",
    # --- extra
    "SELECT T1.Name FROM Artist AS T1 JOIN Album AS T2 ON T1.ArtistId = T2.ArtistId GROUP BY T1.ArtistId HAVING count(*) > 3 INTERSECT SELECT T1.Name FROM Artist AS T1 JOIN Album AS T2 ON T1.ArtistId = T2.ArtistId JOIN Track AS T3 ON T2.AlbumId = T3.AlbumId WHERE T3.GenreId = 1",
    "SELECT Name FROM Track WHERE Milliseconds > (SELECT avg(Milliseconds) FROM Track) ORDER BY Milliseconds DESC LIMIT 5",
    "SELECT T1.Name, count(*) FROM Genre AS T1 JOIN Track AS T2 ON T1.GenreId = T2.GenreId WHERE T2.UnitPrice > 0.99 GROUP BY T1.GenreId ORDER BY count(*) DESC LIMIT 3",
    "SELECT T4.Name FROM InvoiceLine AS T1 JOIN Track AS T2 ON T1.TrackId = T2.TrackId JOIN Album AS T3 ON T2.AlbumId = T3.AlbumId JOIN Artist AS T4 ON T3.ArtistId = T4.ArtistId GROUP BY T4.ArtistId ORDER BY sum(T1.Quantity) DESC LIMIT 1",
    "SELECT T1.FirstName, T1.LastName, sum(T2.Total) FROM Customer AS T1 JOIN Invoice AS T2 ON T1.CustomerId = T2.CustomerId WHERE T1.Country = 'USA' GROUP BY T1.CustomerId ORDER BY sum(T2.Total) DESC LIMIT 5",
    "SELECT Name FROM Artist WHERE ArtistId IN (SELECT ArtistId FROM Album GROUP BY ArtistId HAVING count(*) > 5) ORDER BY Name",
    "SELECT Name FROM Track WHERE GenreId IN (SELECT GenreId FROM Genre WHERE Name = 'Rock') AND MediaTypeId IN (SELECT MediaTypeId FROM MediaType WHERE Name LIKE '%MPEG%')",
    "SELECT count(*) FROM Customer WHERE CustomerId NOT IN (SELECT CustomerId FROM Invoice WHERE Total > 20)",
    "SELECT Name, count(*) FROM Track WHERE AlbumId NOT IN (SELECT AlbumId FROM Album WHERE ArtistId = 1) GROUP BY Name",
    "SELECT T1.Name FROM Playlist AS T1 JOIN PlaylistTrack AS T2 ON T1.PlaylistId = T2.PlaylistId JOIN Track AS T3 ON T2.TrackId = T3.TrackId JOIN Genre AS T4 ON T3.GenreId = T4.GenreId WHERE T4.Name = 'Classical' GROUP BY T1.PlaylistId",
    "SELECT Country FROM Customer GROUP BY Country HAVING count(*) > 2 EXCEPT SELECT Country FROM Employee",
    "SELECT BillingCity FROM Invoice WHERE Total > 15 UNION SELECT BillingCity FROM Invoice WHERE BillingCountry = 'India' UNION SELECT City FROM Customer WHERE Country = 'India'",
    "SELECT Name FROM Track WHERE Milliseconds > (SELECT avg(Milliseconds) FROM Track) AND UnitPrice > (SELECT avg(UnitPrice) FROM Track)",
    "SELECT Title FROM Album WHERE AlbumId IN (SELECT AlbumId FROM Track GROUP BY AlbumId HAVING count(*) > 20) EXCEPT SELECT Title FROM Album WHERE ArtistId = 90",
    "SELECT T1.FirstName, T1.LastName, count(*) FROM Employee AS T1 JOIN Customer AS T2 ON T1.EmployeeId = T2.SupportRepId JOIN Invoice AS T3 ON T2.CustomerId = T3.CustomerId GROUP BY T1.EmployeeId ORDER BY count(*) DESC",
    "SELECT T2.Name, avg(T1.Milliseconds), count(*) FROM Track AS T1 JOIN Genre AS T2 ON T1.GenreId = T2.GenreId GROUP BY T2.GenreId HAVING avg(T1.Milliseconds) > 250000 ORDER BY avg(T1.Milliseconds) DESC",
    "SELECT Name FROM Track WHERE Name LIKE '%Love%' OR Name LIKE '%Baby%' OR Name LIKE '%Night%'",
    "SELECT FirstName, LastName FROM Customer WHERE Country = 'USA' AND State = 'CA' OR Country = 'Canada' AND State = 'BC' ORDER BY LastName LIMIT 5",
    "SELECT count(*) FROM Invoice AS T1 JOIN InvoiceLine AS T2 ON T1.InvoiceId = T2.InvoiceId JOIN Track AS T3 ON T2.TrackId = T3.TrackId JOIN Genre AS T4 ON T3.GenreId = T4.GenreId WHERE T4.Name = 'Metal'",
    "SELECT max(Total), min(Total), avg(Total), BillingCountry FROM Invoice WHERE BillingCountry != 'USA' AND Total > 1 GROUP BY BillingCountry ORDER BY avg(Total)",
    "SELECT Name FROM Artist WHERE ArtistId NOT IN (SELECT T1.ArtistId FROM Album AS T1 JOIN Track AS T2 ON T1.AlbumId = T2.AlbumId WHERE T2.GenreId = 1) AND Name LIKE 'B%'",
    "SELECT FirstName FROM Customer WHERE City = 'Paris' UNION SELECT FirstName FROM Employee WHERE City = 'Calgary' ORDER BY FirstName",
    "SELECT Title FROM Album WHERE AlbumId IN (SELECT AlbumId FROM Track WHERE Milliseconds > 500000) INTERSECT SELECT Title FROM Album WHERE AlbumId IN (SELECT AlbumId FROM Track WHERE UnitPrice > 1)",
    "SELECT count(*), sum(T2.Quantity) FROM Invoice AS T1 JOIN InvoiceLine AS T2 ON T1.InvoiceId = T2.InvoiceId WHERE T1.BillingCountry = 'Brazil' AND T2.UnitPrice > 0.99",
    "SELECT T1.Title, T2.Name FROM Album AS T1 JOIN Artist AS T2 ON T1.ArtistId = T2.ArtistId JOIN Track AS T3 ON T1.AlbumId = T3.AlbumId WHERE T3.Milliseconds > 400000 ORDER BY T1.Title",
    "SELECT Name FROM Track WHERE TrackId IN (SELECT TrackId FROM InvoiceLine GROUP BY TrackId ORDER BY sum(Quantity) DESC LIMIT 10)",
    "SELECT Name FROM Genre WHERE GenreId NOT IN (SELECT GenreId FROM Track WHERE Name LIKE '%a%')",
    "SELECT count(DISTINCT T1.CustomerId) FROM Invoice AS T1 JOIN Customer AS T2 ON T1.CustomerId = T2.CustomerId WHERE T2.Country = 'Germany' OR T2.Country = 'France'",
    # --- quirks of the original worth pinning
    "SELECT Name FROM Track WHERE Name NOT LIKE '%a%' AND Composer NOT LIKE '%b%'",
    "SELECT count(*) FROM Track WHERE AlbumId NOT IN (SELECT AlbumId FROM Album)",
    "SELECT Country, count(*) FROM Customer GROUP BY Country HAVING count(*) > 1 AND max(CustomerId) > 3",
    "SELECT Country FROM Customer GROUP BY Country HAVING Country NOT LIKE 'U%'",
    "SELECT Name FROM Track ORDER BY Milliseconds - Bytes DESC",
    "SELECT AlbumId FROM Track GROUP BY AlbumId ORDER BY max(Milliseconds) - min(Milliseconds) DESC LIMIT 1",
    "SELECT Milliseconds - Bytes FROM Track",
    "SELECT sum(Milliseconds - Bytes) FROM Track",
    "SELECT T1.Name FROM Track AS T1 JOIN Genre AS T2 ON T1.GenreId = T2.GenreId AND T2.Name LIKE 'R%'",
    "SELECT T1.Name FROM Track AS T1 JOIN Genre AS T2 ON T1.GenreId = T2.GenreId OR T1.MediaTypeId = T2.GenreId",
    "SELECT count(*) FROM (SELECT AlbumId FROM Track WHERE GenreId = 1 GROUP BY AlbumId HAVING count(*) > 10)",
    "SELECT * FROM (SELECT AlbumId FROM Album WHERE ArtistId = 1)",
    "SELECT count(*) FROM (SELECT Country FROM Customer UNION SELECT Country FROM Employee)",
    "SELECT Name FROM Track WHERE Milliseconds BETWEEN (SELECT min(Milliseconds) FROM Track WHERE GenreId = 2) AND (SELECT avg(Milliseconds) FROM Track)",
    "SELECT Name FROM Track WHERE Milliseconds NOT BETWEEN 100000 AND 200000",
    "SELECT Name FROM Artist WHERE ArtistId IN (SELECT ArtistId FROM Album WHERE AlbumId IN (SELECT AlbumId FROM Track WHERE GenreId = 3))",
    "SELECT Name FROM Track WHERE GenreId = 1 UNION SELECT Name FROM Track WHERE GenreId = 2 UNION SELECT Name FROM Track WHERE GenreId = 3 ORDER BY Name LIMIT 10",
    "SELECT Name FROM Track WHERE GenreId = 1 ORDER BY Name LIMIT 3",
    "SELECT DISTINCT Composer FROM Track WHERE Composer LIKE '%Page%' ORDER BY Composer",
    "SELECT count(*) FROM Employee WHERE ReportsTo = (SELECT EmployeeId FROM Employee WHERE FirstName = 'Andrew')",
    "SELECT Name FROM Artist WHERE ArtistId = 1 OR ArtistId = 2 OR ArtistId = 3 OR ArtistId = 4",
    "SELECT T1.Name FROM Artist AS T1 JOIN Album AS T2 ON T1.ArtistId = T2.ArtistId GROUP BY T1.ArtistId HAVING count(*) >= 2 ORDER BY count(*) DESC LIMIT 1",
    "SELECT GenreId, count(*), avg(UnitPrice) FROM Track WHERE MediaTypeId = 1 GROUP BY GenreId HAVING count(*) > 100 ORDER BY count(*)",
    "SELECT Country, State, City FROM Customer WHERE Country = 'USA' GROUP BY Country, State, City",
    "SELECT count(*) FROM Album AS T1 JOIN Artist AS T2 ON T1.ArtistId = T2.ArtistId",
    "SELECT T1.Name FROM Track AS T1 JOIN PlaylistTrack AS T2 ON T1.TrackId = T2.TrackId JOIN Playlist AS T3 ON T2.PlaylistId = T3.PlaylistId",
    "SELECT T3.Title FROM Artist AS T1 JOIN Album AS T3 ON T1.ArtistId = T3.ArtistId WHERE T1.Name = 'AC/DC' OR T1.Name = 'Accept'",
    "SELECT Name FROM MediaType WHERE Name LIKE '%audio%' UNION SELECT Name FROM Genre WHERE Name LIKE '%Rock%'",
    "SELECT LastName FROM Employee WHERE EmployeeId IN (SELECT SupportRepId FROM Customer GROUP BY SupportRepId HAVING count(*) > 20)",
    "SELECT max(UnitPrice), Name FROM Track",
    "SELECT count(*), GenreId FROM Track GROUP BY GenreId",
    "SELECT Title FROM Album WHERE Title LIKE '%Greatest%'",
    "SELECT sum(Quantity), avg(UnitPrice) FROM InvoiceLine",
    "SELECT InvoiceId FROM InvoiceLine GROUP BY InvoiceId HAVING count(*) = 1",
    "SELECT BillingState FROM Invoice WHERE BillingCountry = 'USA' GROUP BY BillingState ORDER BY count(*) DESC LIMIT 1",
    "SELECT Name FROM Track WHERE AlbumId = (SELECT AlbumId FROM Album WHERE Title = 'Facelift') ORDER BY Name",
    "SELECT FirstName, LastName, Email FROM Customer WHERE Country = 'Brazil' AND City = 'Sao Paulo' AND Company != 'x' ORDER BY FirstName LIMIT 2",
    "SELECT T2.Title, count(*) FROM Track AS T1 JOIN Album AS T2 ON T1.AlbumId = T2.AlbumId WHERE T1.GenreId = 1 AND T1.MediaTypeId = 1 GROUP BY T2.AlbumId",
    "SELECT EmployeeId FROM Employee WHERE City = 'Calgary' EXCEPT SELECT ReportsTo FROM Employee",
    "SELECT Name FROM Playlist WHERE PlaylistId IN (SELECT PlaylistId FROM PlaylistTrack GROUP BY PlaylistId HAVING count(*) > 100)",
    "SELECT count(*) FROM Track WHERE Milliseconds > 300000 AND Bytes > 10000000 OR UnitPrice > 1",
    "SELECT GenreId FROM Track GROUP BY GenreId HAVING count(*) > 10 OR sum(Bytes) > 1000",
    "SELECT GenreId FROM Track GROUP BY GenreId HAVING count(*) > 10 AND avg(UnitPrice) > 1 AND max(Bytes) > 5",
    "SELECT AlbumId, count(*) FROM Track GROUP BY AlbumId HAVING AlbumId NOT IN (SELECT AlbumId FROM Album WHERE ArtistId = 1)",
    "SELECT T1.Name FROM Track AS T1 JOIN Album AS T2 ON T1.AlbumId = T2.AlbumId WHERE T1.GenreId = T2.ArtistId OR T1.Milliseconds > 1000",
    "SELECT T1.Name FROM Track AS T1 JOIN Album AS T2 ON T1.AlbumId = T2.AlbumId WHERE T1.GenreId = T2.ArtistId OR T1.Name LIKE 'a%' AND T1.Bytes > 5",
    "SELECT count(*) FROM Track WHERE Milliseconds BETWEEN 1 AND Bytes OR GenreId = 2",
    "SELECT Name FROM Track WHERE GenreId = 1 OR GenreId = 2 AND MediaTypeId = 1 OR Name LIKE '%x%'",
    "SELECT Name FROM Track WHERE Name LIKE '%x%' AND GenreId NOT IN (SELECT GenreId FROM Genre WHERE Name LIKE '%Rock%') ORDER BY Name",
    "SELECT count(*), avg(Total) FROM Invoice WHERE CustomerId IN (SELECT CustomerId FROM Customer WHERE Country = 'USA')",
    "SELECT DISTINCT T1.Name FROM Artist AS T1 JOIN Album AS T2 ON T1.ArtistId = T2.ArtistId JOIN Track AS T3 ON T2.AlbumId = T3.AlbumId WHERE T3.Composer LIKE '%Bach%' OR T3.Name LIKE '%Fugue%'",
)


class Query(NamedTuple):
    """One query to label, with the SQLite file whose schema the original parser needs."""

    source: str
    sql: str
    db_path: str


class Reference(NamedTuple):
    """The original code's entry points, loaded from a checkout."""

    get_schema: Callable[[str], dict]
    schema_class: type
    get_sql: Callable[[object, str], dict]
    eval_hardness: Callable[[dict], str]
    counts: Callable[[dict], tuple[int, int, int]]
    note: str


def load_reference(eval_repo: Path) -> Reference:
    """Import process_sql and evaluation from a test-suite-sql-eval checkout."""
    sys.path.insert(0, str(eval_repo))
    note = []
    try:
        import exec_eval  # noqa: F401
    except ImportError as error:  # tqdm / sqlparse missing: hardness never executes SQL
        stub = types.ModuleType("exec_eval")
        stub.eval_exec_match = None
        sys.modules["exec_eval"] = stub
        note.append(f"exec_eval stubbed ({error})")
    import evaluation
    import process_sql

    try:
        process_sql.word_tokenize("select a from b")
    except LookupError:
        import nltk

        process_sql.word_tokenize = functools.partial(nltk.word_tokenize, preserve_line=True)
        note.append("nltk punkt data absent: word_tokenize(preserve_line=True)")
    evaluator = evaluation.Evaluator()
    return Reference(
        get_schema=process_sql.get_schema,
        schema_class=process_sql.Schema,
        get_sql=process_sql.get_sql,
        eval_hardness=evaluator.eval_hardness,
        counts=lambda sql: (evaluation.count_component1(sql), evaluation.count_component2(sql),
                            evaluation.count_others(sql)),
        note="; ".join(note),
    )


def chinook_queries(data_dir: Path) -> list[Query]:
    """The hand-written Spider-style queries, against the Chinook SQLite file."""
    db = data_dir / "chinook" / "Chinook_Sqlite.sqlite"
    if not db.exists():
        return []
    return [Query("chinook", sql, str(db)) for sql in CHINOOK_QUERIES]


# Chinook for the random grammar: table -> (numeric columns, text columns), and join edges.
_CHINOOK_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Track": (("Milliseconds", "Bytes", "UnitPrice", "GenreId", "AlbumId"), ("Name", "Composer")),
    "Album": (("AlbumId", "ArtistId"), ("Title",)),
    "Artist": (("ArtistId",), ("Name",)),
    "Genre": (("GenreId",), ("Name",)),
    "Invoice": (("Total", "CustomerId"), ("BillingCountry", "BillingCity")),
    "InvoiceLine": (("Quantity", "UnitPrice", "TrackId"), ()),
    "Customer": (("CustomerId", "SupportRepId"), ("Country", "City", "Company")),
    "Employee": (("EmployeeId", "ReportsTo"), ("Title", "City")),
}
_CHINOOK_JOINS: tuple[tuple[str, str, str], ...] = (
    ("Track", "Album", "AlbumId"), ("Album", "Artist", "ArtistId"), ("Track", "Genre", "GenreId"),
    ("InvoiceLine", "Track", "TrackId"), ("InvoiceLine", "Invoice", "InvoiceId"),
    ("Invoice", "Customer", "CustomerId"),
)
_WORDS = ("Rock", "Love", "Live", "USA", "a", "The")


def random_chinook_queries(data_dir: Path, count: int, seed: int = 20240611) -> list[Query]:
    """``count`` Spider-style queries drawn from a small grammar, reproducibly."""
    db = data_dir / "chinook" / "Chinook_Sqlite.sqlite"
    if not db.exists() or count <= 0:
        return []
    rng = random.Random(seed)
    return [Query("random", _random_query(rng, depth=0), str(db)) for _ in range(count)]


def _random_query(rng: random.Random, depth: int) -> str:
    tables = [rng.choice(list(_CHINOOK_COLUMNS))]
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        edges = [e for e in _CHINOOK_JOINS if (e[0] in tables) != (e[1] in tables)]
        if edges:
            left, right, key = rng.choice(edges)
            tables.append(right if left in tables else left)
    aliased = len(tables) > 1
    names = {t: (f"T{i + 1}" if aliased else t) for i, t in enumerate(tables)}
    joins = [f"{tables[0]}" + (" AS T1" if aliased else "")]
    for i, table in enumerate(tables[1:], start=1):
        edge = next(e for e in _CHINOOK_JOINS if table in e[:2] and (set(e[:2]) & set(tables[:i])))
        other = edge[0] if edge[1] == table else edge[1]
        joins.append(f"JOIN {table} AS {names[table]} ON {names[other]}.{edge[2]} = {names[table]}.{edge[2]}")

    def col(kind: int | None = None) -> str:
        table = rng.choice(tables)
        numeric, text = _CHINOOK_COLUMNS[table]
        pool = numeric if kind == 0 or not text else text if kind == 1 else numeric + text
        return f"{names[table]}.{rng.choice(pool)}"

    def agg() -> str:
        return rng.choice(("count(*)", f"count(DISTINCT {col()})", f"max({col(0)})",
                           f"min({col(0)})", f"sum({col(0)})", f"avg({col(0)})"))

    def condition(allow_nested: bool) -> str:
        options = [
            lambda: f"{col(0)} {rng.choice(('>', '<', '=', '>=', '<=', '!='))} {rng.randint(1, 500)}",
            lambda: f"{col(1)} = '{rng.choice(_WORDS)}'",
            lambda: f"{col(1)} {rng.choice(('LIKE', 'NOT LIKE'))} '%{rng.choice(_WORDS)}%'",
            lambda: f"{col(0)} {rng.choice(('BETWEEN', 'NOT BETWEEN'))} 1 AND {rng.randint(2, 900)}",
            lambda: f"{col(0)} = {col(0)}",
        ]
        if allow_nested and depth < 2:
            options += [
                lambda: f"{col(0)} {rng.choice(('IN', 'NOT IN'))} ({_random_query(rng, depth + 1)})",
                lambda: f"{col(0)} > (SELECT avg({rng.choice(_CHINOOK_COLUMNS['Track'][0])}) FROM Track)",
            ]
        return rng.choice(options)()

    def conditions(n: int, allow_nested: bool) -> str:
        out = condition(allow_nested)
        for _ in range(n - 1):
            out += f" {rng.choice(('AND', 'AND', 'OR'))} {condition(allow_nested)}"
        return out

    single = depth > 0  # IN (...) needs one column
    items = [rng.choice((col(), agg())) for _ in range(1 if single else rng.choice((1, 1, 2, 3)))]
    if not single and rng.random() < 0.1:
        items = [f"{col(0)} - {col(0)}"]
    sql = f"SELECT {rng.choice(('', '', 'DISTINCT '))}{', '.join(items)} FROM {' '.join(joins)}"
    if rng.random() < 0.6:
        sql += " WHERE " + conditions(rng.choice((1, 1, 2, 3)), allow_nested=True)
    if rng.random() < 0.35:
        sql += " GROUP BY " + ", ".join(col() for _ in range(rng.choice((1, 1, 2))))
        if rng.random() < 0.4:
            sql += " HAVING " + " AND ".join(
                f"{agg()} > {rng.randint(1, 50)}" for _ in range(rng.choice((1, 1, 2, 3))))
    if not single and rng.random() < 0.4:
        keys = [rng.choice((col(), agg())) for _ in range(rng.choice((1, 1, 2)))]
        sql += " ORDER BY " + ", ".join(keys) + rng.choice(("", " DESC", " ASC"))
        if rng.random() < 0.5:
            sql += f" LIMIT {rng.randint(1, 10)}"
    if depth == 0 and rng.random() < 0.15:
        sql += f" {rng.choice(('UNION', 'INTERSECT', 'EXCEPT'))} " + _random_query(rng, depth + 1)
    elif depth == 0 and rng.random() < 0.05:
        sql = f"SELECT count(*) FROM ({sql})"
    return sql


def double_quoted(queries: Iterable[Query]) -> list[Query]:
    """The queries that hold a string literal, with ``'...'`` written ``"..."`` (Spider style)."""
    return [Query("quoted", q.sql.replace("'", '"'), q.db_path) for q in queries if "'" in q.sql]


def defog_queries(data_dir: Path, workdir: Path) -> list[Query]:
    """First alternative of each Defog sqlite question, against an empty copy of its schema."""
    defog = data_dir / "defog"
    questions = defog / "questions_gen_sqlite.csv"
    if not questions.exists():
        return []
    schemas: dict[str, str] = {}
    out = []
    with questions.open(newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["db_name"]
            if name not in schemas:
                schemas[name] = _build_defog_schema(defog, name, workdir)
            sql = first_alternative(row["query"])
            out.append(Query("defog", sql, schemas[name]))
            try:
                rewritten = spider_subset(sql)
            except sqlglot.errors.SqlglotError:
                continue
            out.append(Query("defog-rw", rewritten, schemas[name]))
    return out


def spider_subset(sql: str) -> str:
    """Rewrite a SQLite query towards the subset the Spider parser reads.

    Inlines column aliases (also where ORDER BY / GROUP BY / HAVING use them),
    replaces ordinal GROUP BY / ORDER BY keys by the select item they name, and
    drops explicit NULLS FIRST/LAST. The query's meaning is kept; only spelling
    the Spider parser cannot read is changed.
    """
    tree = sqlglot.parse_one(sql, read="sqlite")
    for select in list(tree.find_all(exp.Select)):
        items = select.expressions
        aliases = {item.alias: item.this for item in items if isinstance(item, exp.Alias)}

        def resolve(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
                index = int(node.this) - 1
                if 0 <= index < len(items):
                    item = items[index]
                    return (item.this if isinstance(item, exp.Alias) else item).copy()
            if isinstance(node, exp.Column) and not node.table and node.name in aliases:
                return aliases[node.name].copy()
            return node

        for key in ("group", "order", "having"):
            clause = select.args.get(key)
            if clause is None:
                continue
            if key == "having":
                clause.set("this", clause.this.transform(
                    lambda n: aliases[n.name].copy()
                    if isinstance(n, exp.Column) and not n.table and n.name in aliases else n))
                continue
            for position, node in enumerate(clause.expressions):
                target = node.this if isinstance(node, exp.Ordered) else node
                new = resolve(target)
                if new is not target:
                    if isinstance(node, exp.Ordered):
                        node.set("this", new)
                    else:
                        clause.expressions[position] = new
                        new.parent = clause
        select.set("expressions", [i.this if isinstance(i, exp.Alias) else i for i in items])
    for ordered in tree.find_all(exp.Ordered):
        ordered.set("nulls_first", not ordered.args.get("desc"))  # SQLite's default
    return tree.sql(dialect="sqlite")


def first_alternative(cell: str) -> str:
    """The first of the ';'-separated queries, with ``{a, b}`` expanded to all its columns."""
    sql = split_statements(cell)[0]
    return re.sub(r"\{([^{}]*)\}", r"\1", sql)


def split_statements(cell: str) -> list[str]:
    """Split a Defog cell on ';' outside quotes (a cell may hold several acceptable queries)."""
    statements, current, quote = [], [], None
    for char in cell:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";":
            statements.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _defog_tables(defog: Path, name: str) -> dict[str, list[str]]:
    metadata = defog / "pypi_dumps" / f"{name}.json"
    if metadata.exists():
        tables = json.loads(metadata.read_text())["table_metadata"]
        return {table: [c["column_name"] for c in cols] for table, cols in tables.items()}
    tables = {}
    ddl = (defog / f"{name}.sql").read_text()
    for statement in sqlglot.parse(ddl, read="postgres"):
        if isinstance(statement, exp.Create) and statement.kind == "TABLE":
            schema = statement.this
            columns = [c.name for c in schema.expressions if isinstance(c, exp.ColumnDef)]
            tables[schema.this.name] = columns
    return tables


def _build_defog_schema(defog: Path, name: str, workdir: Path) -> str:
    path = workdir / f"{name}.sqlite"
    connection = sqlite3.connect(path)
    for table, columns in _defog_tables(defog, name).items():
        cols = ", ".join(f'"{c}"' for c in columns)
        connection.execute(f'CREATE TABLE "{table}" ({cols})')
    connection.commit()
    connection.close()
    return str(path)


class Outcome(NamedTuple):
    """Both labels of one query (None: that side could not label it), and both count triples."""

    query: Query
    ours: str | None
    theirs: str | None
    error: str
    counts_agree: bool = False


def compare(queries: Iterable[Query], reference: Reference) -> list[Outcome]:
    """Label every query both ways; ``theirs`` is None where the original parser rejects it."""
    schemas: dict[str, object] = {}
    outcomes = []
    for query in queries:
        try:
            tree = sqlglot.parse_one(query.sql, read="sqlite")
            ours = spider_hardness(tree)
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            outcomes.append(Outcome(query, None, None, f"ours: {error!r}"))
            continue
        if query.db_path not in schemas:
            schemas[query.db_path] = reference.schema_class(reference.get_schema(query.db_path))
        try:
            parsed = reference.get_sql(schemas[query.db_path], query.sql)
        except Exception as error:  # noqa: BLE001 - the original rejects much real SQL
            outcomes.append(Outcome(query, ours, None, f"original: {type(error).__name__}"))
            continue
        theirs = reference.eval_hardness(parsed)
        same_counts = tuple(spider_counts(tree)) == tuple(reference.counts(parsed))
        outcomes.append(Outcome(query, ours, theirs, "", same_counts))
    return outcomes


def report(outcomes: list[Outcome], show: int) -> float:
    """Print the agreement table (and disagreements); return overall agreement."""
    sources = sorted({o.query.source for o in outcomes})
    print(f"{'set':<10}{'queries':>9}{'n':>6}{'agree':>7}{'%':>9}{'counts %':>10}{'rejected':>10}{'errors':>8}")
    total_n = total_agree = 0
    for source in sources + ["all"]:
        rows = [o for o in outcomes if source in ("all", o.query.source)]
        compared = [o for o in rows if o.theirs is not None]
        agree = sum(o.ours == o.theirs for o in compared)
        rejected = sum(o.ours is not None and o.theirs is None for o in rows)
        errors = sum(o.ours is None for o in rows)
        pct = 100.0 * agree / len(compared) if compared else float("nan")
        counts_pct = 100.0 * sum(o.counts_agree for o in compared) / len(compared) if compared else float("nan")
        print(f"{source:<10}{len(rows):>9}{len(compared):>6}{agree:>7}{pct:>8.1f}%{counts_pct:>9.1f}%"
              f"{rejected:>10}{errors:>8}")
        if source == "all":
            total_n, total_agree = len(compared), agree
    compared = [o for o in outcomes if o.theirs is not None]
    levels = Counter(o.theirs for o in compared)
    print("original's levels on the compared queries: " + ", ".join(f"{lv} {levels[lv]}" for lv in HARDNESS_LEVELS))
    disagreements = [o for o in compared if o.ours != o.theirs]
    for o in disagreements[:show]:
        print(f"  ours={o.ours} original={o.theirs} [{o.query.source}] {o.query.sql}")
    for o in [o for o in outcomes if o.ours is None][:show]:
        print(f"  error [{o.query.source}] {o.error}: {o.query.sql}")
    return total_agree / total_n if total_n else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-repo", type=Path, default=os.environ.get("TSSE_REPO"),
                        help="checkout of taoyds/test-suite-sql-eval (or env TSSE_REPO)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="shared data folder (default: ../shared/data next to the repo)")
    parser.add_argument("--random", type=int, default=400,
                        help="random Spider-style Chinook queries to add (fixed seed; 0: none)")
    parser.add_argument("--show", type=int, default=20, help="disagreements to print")
    parser.add_argument("--min-agreement", type=float, default=None,
                        help="exit 1 when overall agreement is below this fraction")
    args = parser.parse_args(argv)

    eval_repo = args.eval_repo
    if eval_repo is None or not (Path(eval_repo) / "process_sql.py").exists() \
            or not (Path(eval_repo) / "evaluation.py").exists():
        print(f"no test-suite-sql-eval checkout at {eval_repo!s}\n" if eval_repo else "", end="")
        print(GET_EVAL_REPO)
        return 2
    try:
        reference = load_reference(Path(eval_repo))
    except ModuleNotFoundError as error:
        print(f"the original code needs {error.name!r}, which this Python lacks: pip install {error.name}")
        return 2
    if reference.note:
        print(f"note: {reference.note}")

    with tempfile.TemporaryDirectory() as workdir:
        spider_style = chinook_queries(args.data_dir) + random_chinook_queries(args.data_dir, args.random)
        queries = spider_style + double_quoted(spider_style) + defog_queries(args.data_dir, Path(workdir))
        if not queries:
            print(f"no queries: {args.data_dir} has neither chinook/ nor defog/")
            return 2
        outcomes = compare(queries, reference)
    agreement = report(outcomes, args.show)
    if args.min_agreement is not None and agreement < args.min_agreement:
        print(f"agreement {agreement:.3f} is below {args.min_agreement}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
