"""Benchmark items and the index that says whether a pair copies one (``--decontaminate``).

Training pairs that repeat an evaluation benchmark's items make the benchmark's score
measure memory, not skill. A pair is *contaminated* by a benchmark item when either

* **SQL**: its normalized SQL equals the item's SQL normalized the same way
  (``transforms.sql.normalize.normalize_cached``, from the item's dialect into the job's
  target dialect: comments, whitespace, keyword and identifier case do not matter,
  string literals do), or
* **question**: the item's question is contained in the pair's question, measured as
  the **word 8-gram containment** of the benchmark question in the pair question::

      score(pair, item) = |G8(item) ∩ G8(pair)| / |G8(item)|

  where ``G8(text)`` is the set of contiguous 8-word sequences of ``words(text)`` (NFKC,
  case-folded, ``\\w+`` runs: punctuation and case do not matter). The direction follows
  GPT-3's and Llama 2's decontamination (how much of the *evaluation* item occurs in the
  training data): a pair that copies a benchmark question and adds a clause scores 1.0, a
  pair that merely shares a benchmark question's opening scores low. A benchmark question
  of fewer than 8 words has no 8-gram: it matches only a pair question with exactly the
  same words (score 1.0), so "How many singers are there?" does not flag "How many singers
  are there in France?". The pair is contaminated when the best score reaches the
  threshold (``--decontaminate_threshold``, default ``DEFAULT_THRESHOLD`` = 0.8).

Why 8 words and 0.8: on the 317 distinct questions of Defog's sql-eval files (mean 18
words), every pair of different questions scores under 0.8 except real copies (a question
and its copy with a clause added: 0.88; three that reappear with an instruction appended:
1.0); with 5-grams, one-word changes ("in each city" / "in each region") already score
0.8. Where a changed word sits matters: in the middle of a 14-word question it leaves none
of the seven 8-grams (0.0), as its last word six of them (0.86, a copy at the default).

Benchmark files (``read_benchmark``), told apart by extension (``.gz``/``.bz2`` allowed):

* ``.json``: Spider / BIRD, a list of objects with ``question`` and ``query`` (Spider) or
  ``SQL`` (BIRD) or ``sql``; dialect ``sqlite`` unless an item says ``dialect``; the
  item's key is ``question_id`` or ``id`` when present, else its 0-based position.
* ``.jsonl`` / ``.ndjson``: pairs, one object per line (``question`` and ``sql`` or
  ``query``: this job's own output, or any ``{question, sql}``); dialect from the line's
  ``dialect``, else the job's source dialect; key ``id`` or the 1-based line number.
* ``.csv``: Defog sql-eval (columns ``question`` and ``query``; alternatives expanded as
  the reader does, ``transforms.formats.defog``); dialect from ``db_type``, else
  ``sqlite`` when the file name says so, else ``postgres``; key the 1-based data row.

An item's SQL that cannot be normalized (unparseable, not a read-only query) is counted
and its question still indexed: a broken benchmark item never fails the job. A file that
cannot be read as its format is a ``BenchmarkFormatError`` (the launcher reports it).
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import defaultdict
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence

from transforms.formats.defog import expand_alternatives
from transforms.sql.normalize import Rejection, normalize_cached

#: Words per question n-gram (see the module docstring for why 8).
NGRAM_WORDS = 8
#: Default of ``--decontaminate_threshold``: the word 8-gram containment that marks a copy.
DEFAULT_THRESHOLD = 0.8
#: File name endings of the formats (after any compression suffix).
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_COMPRESSED = (".gz", ".bz2")
_SQL_KEYS = ("query", "SQL", "sql")
_ID_KEYS = ("question_id", "id")
_WORD = re.compile(r"\w+")


class BenchmarkFormatError(ValueError):
    """A benchmark file that cannot be read as its format: the user's to fix, before the run."""


class BenchmarkItem(NamedTuple):
    """One benchmark question with its SQL, as read from a file (before normalization)."""

    path: str
    key: str  # the item's id (question_id / id) or its position, as the module docstring says
    position: int  # 0-based order in its file: ties go to the earlier item
    question: Optional[str]
    sql: tuple[str, ...]  # acceptable queries (sql-eval cells may hold several); () for none
    dialect: str

    @property
    def label(self) -> str:
        """``file#key``: how a dead letter names the item."""
        return f"{self.path}#{self.key}"


class BenchmarkEntry(NamedTuple):
    """What the index keeps of one item: its label, question and normalized SQL texts."""

    path: str
    position: int
    label: str
    question: Optional[str]
    normalized_sql: tuple[str, ...]
    unparseable: int = 0  # acceptable queries of the item that could not be normalized


class Contamination(NamedTuple):
    """Why a pair matches the benchmark: ``benchmark_sql`` or ``benchmark_question``, the item, the score."""

    reason: str
    label: str
    score: float
    detail: str


def words(text: Optional[str]) -> tuple[str, ...]:
    """The words a question is compared by: NFKC, case-folded, punctuation dropped.

    >>> words("How many SINGERS do we have?")
    ('how', 'many', 'singers', 'do', 'we', 'have')
    """
    return tuple(_WORD.findall(unicodedata.normalize("NFKC", text or "").casefold()))


def ngrams(sequence: Sequence[str], n: int = NGRAM_WORDS) -> set[tuple[str, ...]]:
    """The contiguous ``n``-word sequences of ``sequence`` (none when it is shorter).

    >>> sorted(ngrams(("a", "b", "c", "d"), 3))
    [('a', 'b', 'c'), ('b', 'c', 'd')]
    >>> ngrams(("a", "b"), 3)
    set()
    """
    return {tuple(sequence[i:i + n]) for i in range(len(sequence) - n + 1)}


def containment(benchmark_question: str, pair_question: str, n: int = NGRAM_WORDS) -> float:
    """The word n-gram containment of a benchmark question in a pair question (module docstring).

    >>> containment("What is the total number of papers published in each year?",
    ...             "what is the total number of papers published in each year? Order by year.")
    1.0
    >>> containment("How many singers are there?", "How many singers are there in France?")
    0.0
    """
    bench, pair = words(benchmark_question), words(pair_question)
    grams = ngrams(bench, n)
    if not grams:  # a short question: the same words or nothing
        return 1.0 if bench and bench == pair else 0.0
    return len(grams & ngrams(pair, n)) / len(grams)


def format_of(path: str) -> Optional[str]:
    """``json``, ``jsonl`` or ``csv`` from the file name, or None for an unknown one.

    >>> format_of("bird/dev.json"), format_of("pairs.jsonl.gz"), format_of("questions_gen_sqlite.csv")
    ('json', 'jsonl', 'csv')
    """
    name = path.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for ending, fmt in FORMATS.items():
        if name.endswith(ending):
            return fmt
    return None


def read_benchmark(data: bytes, path: str, default_dialect: str = "postgres") -> list[BenchmarkItem]:
    """The items of one benchmark file's (decompressed) bytes; ``BenchmarkFormatError`` if unreadable.

    ``default_dialect`` is the dialect of JSONL lines that name none (the job's source dialect).

    >>> read_benchmark(b'[{"question": "How many?", "query": "SELECT 1", "db_id": "d"}]', "dev.json")[0].label
    'dev.json#0'
    """
    fmt = format_of(path)
    if fmt is None:
        raise BenchmarkFormatError("unknown benchmark format: give .json (Spider/BIRD), .jsonl (pairs) or "
                                   ".csv (Defog sql-eval) files")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BenchmarkFormatError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    items = {"json": _json_items, "jsonl": _jsonl_items, "csv": _csv_items}[fmt](text, path, default_dialect)
    if not any(item.question or item.sql for item in items):
        raise BenchmarkFormatError(f"no item with a question or SQL in this {fmt} file")
    return items


def _item(path: str, key: Any, position: int, obj: dict, dialect: str) -> BenchmarkItem:
    question = obj.get("question")
    sql = next((obj[k] for k in _SQL_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
    return BenchmarkItem(path, str(key), position, question.strip() if isinstance(question, str) else None,
                         (sql,) if sql else (), str(obj.get("dialect") or dialect).lower())


def _item_key(obj: dict, fallback: int) -> Any:
    return next((obj[k] for k in _ID_KEYS if obj.get(k) not in (None, "")), fallback)


def _json_items(text: str, path: str, default_dialect: str) -> list[BenchmarkItem]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchmarkFormatError(f"not JSON: {error}") from None
    if not isinstance(document, list) or not all(isinstance(obj, dict) for obj in document):
        raise BenchmarkFormatError("a .json benchmark is a list of objects (Spider/BIRD: question, query|SQL)")
    return [_item(path, _item_key(obj, i), i, obj, "sqlite") for i, obj in enumerate(document)]


def _jsonl_items(text: str, path: str, default_dialect: str) -> list[BenchmarkItem]:
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise BenchmarkFormatError(f"line {number} is not JSON: {error}") from None
        if not isinstance(obj, dict):
            raise BenchmarkFormatError(f"line {number} is not an object")
        items.append(_item(path, obj.get("id") or number, len(items), obj, default_dialect))
    return items


def _csv_items(text: str, path: str, default_dialect: str) -> list[BenchmarkItem]:
    rows = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in rows.fieldnames or ()]
    if "question" not in header or "query" not in header:
        raise BenchmarkFormatError(f"a .csv benchmark needs the columns question and query (Defog sql-eval); "
                                   f"the header has {header}")
    file_dialect = "sqlite" if "sqlite" in path.lower().rsplit("/", 1)[-1] else "postgres"
    items = []
    try:
        for number, row in enumerate(rows, 1):
            row = {(k or "").strip(): (v or "") for k, v in row.items()}
            dialect = (row.get("db_type") or file_dialect).strip().lower()
            try:
                queries = tuple(expand_alternatives(row["query"].strip(), dialect)) if row["query"].strip() else ()
            except ValueError:  # kept as written: it is counted as unparseable when normalized
                queries = (row["query"],)
            items.append(BenchmarkItem(path, str(number), number - 1, row["question"].strip() or None, queries,
                                       dialect))
    except csv.Error as error:
        raise BenchmarkFormatError(f"not CSV: {error}") from None
    return items


def entry_of(item: BenchmarkItem, target_dialect: str) -> BenchmarkEntry:
    """``item`` with its SQL normalized as the job normalizes pairs (into ``target_dialect``).

    >>> entry_of(BenchmarkItem("dev.json", "0", 0, "Q?", ("select count(*) from Singer",), "sqlite"),
    ...          "postgres").normalized_sql
    ('SELECT COUNT(*) FROM singer',)
    """
    normalized, failed = [], 0
    for sql in item.sql:
        try:
            result = normalize_cached(sql, item.dialect, target_dialect)
        except Exception:  # noqa: BLE001 - a parser bug on a benchmark item is one more unparseable item
            failed += 1
            continue
        if isinstance(result, Rejection):
            failed += 1
        elif result.sql not in normalized:
            normalized.append(result.sql)
    return BenchmarkEntry(item.path, item.position, item.label, item.question, tuple(normalized), failed)


class BenchmarkIndex:
    """Every benchmark entry by normalized SQL and by question n-gram, to check pairs against.

    Built once per worker from the entries (its size is the benchmark's, not the job's);
    entries are sorted first, so the item a dead letter names does not depend on the order
    they arrived in: the highest score wins, ties go to the earliest file and position.
    """

    def __init__(self, entries: Iterable[BenchmarkEntry], n: int = NGRAM_WORDS):
        self.n = n
        self.entries = sorted(entries, key=lambda e: (e.path, e.position, e.label))
        self.by_sql: dict[str, int] = {}
        # keyed by the 8-gram's hash (this process's only): a third of the memory of the word tuples
        self.by_gram: dict[int, list[int]] = defaultdict(list)
        self.by_words: dict[tuple[str, ...], int] = {}  # questions shorter than n words
        self.gram_counts: list[int] = []
        for index, entry in enumerate(self.entries):
            for sql in entry.normalized_sql:
                self.by_sql.setdefault(sql, index)
            question_words = words(entry.question)
            grams = ngrams(question_words, n)
            self.gram_counts.append(len(grams))
            if grams:
                for gram in grams:
                    self.by_gram[hash(gram)].append(index)
            elif question_words:
                self.by_words.setdefault(question_words, index)

    def match(self, question: Optional[str], normalized_sql: Optional[str],
              threshold: float = DEFAULT_THRESHOLD) -> Optional[Contamination]:
        """How the pair copies a benchmark item (its SQL first, then its question), or None.

        >>> index = BenchmarkIndex([BenchmarkEntry("dev.json", 0, "dev.json#0", "How many singers are there?",
        ...                                        ("SELECT COUNT(*) FROM singer",))])
        >>> index.match("Count singers", "SELECT COUNT(*) FROM singer").reason
        'benchmark_sql'
        >>> index.match("how many singers are there", "SELECT 1").score
        1.0
        >>> index.match("How many singers are there in France?", "SELECT 1") is None
        True
        """
        found = self.by_sql.get(normalized_sql) if normalized_sql else None
        if found is not None:
            entry = self.entries[found]
            return Contamination("benchmark_sql", entry.label, 1.0,
                                 f"the normalized SQL equals that of benchmark item {entry.label}"
                                 f"{_question_note(entry.question)}")
        best = self.best_question(question)
        if best is None or best[1] < threshold:
            return None
        entry, score = self.entries[best[0]], best[1]
        return Contamination("benchmark_question", entry.label, score,
                             f"word {self.n}-gram containment {score:.3f} (threshold {threshold:g}) of the question "
                             f"of benchmark item {entry.label}{_question_note(entry.question)}")

    def best_question(self, question: Optional[str]) -> Optional[tuple[int, float]]:
        """``(entry index, score)`` of the benchmark question best contained in ``question``, or None."""
        pair_words = words(question)
        if not pair_words:
            return None
        shared: dict[int, int] = defaultdict(int)
        for gram in ngrams(pair_words, self.n):
            for index in self.by_gram.get(hash(gram), ()):
                shared[index] += 1
        exact = self.by_words.get(pair_words)
        candidates = [(count / self.gram_counts[index], -index) for index, count in shared.items()]
        if exact is not None:
            candidates.append((1.0, -exact))
        if not candidates:
            return None
        score, negative_index = max(candidates)
        return -negative_index, round(score, 6)

    def __len__(self) -> int:
        return len(self.entries)


def _question_note(question: Optional[str]) -> str:
    if not question:
        return ""
    return f": {question[:200]!r}"
