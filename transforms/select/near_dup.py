"""Near-duplicate questions: merge phrasings of one SQL that say nearly the same thing.

Breadth evolution asks for k phrasings of a question; models return "How many tracks
are there?" and "How many tracks are there in total?" as two. Exact dedup keeps both.
Within each group of pairs sharing a database and SQL fingerprint, questions whose word
shingles (lowercased unigrams and bigrams) have an estimated Jaccard similarity of at
least ``--near_dup_threshold`` are merged: the representative absorbs the other's
``duplicates`` and ``frequency``, exactly as ``transforms.select.dedup`` merges, and the
report counts the merged pairs in the dedup step.

Similarity is estimated with MinHash (``datasketch``, 128 permutations, fixed seed:
the same input always gives the same estimates); a group larger than
``LSH_GROUP_SIZE`` is bucketed with ``MinHashLSH`` so a SQL with thousands of phrasings
is not compared all-pairs. The representative is deterministic: the records are visited
in a fixed preference order (ran successfully, question given rather than generated,
original rather than evolved, smallest id) and each joins the first representative it
is similar to, or becomes one.

``datasketch`` earns its place here: its MinHash and LSH are the reference
implementations (with the band/row optimisation for a threshold) that writing our own
would only approximate; it needs numpy, which Beam already brings, and scipy.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Optional, Sequence

import apache_beam as beam

from transforms.core.record import Record
from transforms.kit.stage import count
from transforms.select.dedup import preference

#: MinHash permutations (estimate error ~ 1/sqrt(128) ≈ 0.09 at worst, far less near 0 and 1).
NUM_PERM = 128
#: Seed of the MinHash permutations (fixed: estimates must not change between runs).
SEED = 1
#: Groups larger than this are bucketed with LSH instead of compared with every representative.
LSH_GROUP_SIZE = 64
DEFAULT_THRESHOLD = 0.8
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def shingles(question: str) -> set[str]:
    """Lowercased word unigrams and bigrams of a question.

    >>> sorted(shingles("How many Tracks?"))
    ['how', 'how many', 'many', 'many tracks', 'tracks']
    """
    words = _WORD.findall((question or "").lower())
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


_EMPTY = None


def minhash(question: str):
    """The MinHash signature of a question's shingles."""
    global _EMPTY
    if _EMPTY is None:  # building the permutations takes ~2 ms; copying an empty signature ~30 us
        from datasketch import MinHash

        _EMPTY = MinHash(num_perm=NUM_PERM, seed=SEED)
    signature = _EMPTY.copy()
    signature.update_batch([s.encode("utf-8") for s in sorted(shingles(question))])
    return signature


def similarity(a: str, b: str) -> float:
    """Estimated Jaccard similarity of two questions' shingles.

    >>> similarity("How many tracks are there?", "how many tracks are there") == 1.0
    True
    >>> similarity("How many tracks are there?", "Which artist sold the most albums?") < 0.2
    True
    """
    return minhash(a).jaccard(minhash(b))


def _order(record: Record) -> tuple:
    ran_ok, given, *identity = preference(record)
    return (ran_ok, given, 1 if record.source == "evolved" else 0, *identity)


def merge_near_duplicates(records: Iterable[Record], threshold: float = DEFAULT_THRESHOLD) -> list[Record]:
    """One record per cluster of near-duplicate questions, with the merged counts added.

    >>> from transforms.core.record import new_record
    >>> kept = merge_near_duplicates([new_record("SELECT 1", "How many tracks are there?"),
    ...                               new_record("SELECT 1", "How many tracks are there ?"),
    ...                               new_record("SELECT 1", "Which genre is the longest?")])
    >>> sorted((r.question.split()[0], r.duplicates) for r in kept)
    [('How', 1), ('Which', 0)]
    """
    ordered = sorted(records, key=_order)
    if len(ordered) <= 1:
        return ordered
    signatures = [minhash(r.question or "") for r in ordered]
    representatives: list[int] = []
    absorbed: dict[int, list[int]] = {}
    lsh = None
    if len(ordered) > LSH_GROUP_SIZE:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for index, signature in enumerate(signatures):
        if lsh is not None:
            candidates = sorted(int(key) for key in lsh.query(signature))
        else:
            candidates = representatives
        home = next((rep for rep in candidates if signatures[rep].jaccard(signature) >= threshold), None)
        if home is None:
            representatives.append(index)
            absorbed[index] = []
            if lsh is not None:
                lsh.insert(str(index), signature)
        else:
            absorbed[home].append(index)
    kept = []
    for rep in representatives:
        record = ordered[rep]
        merged = [ordered[i] for i in absorbed[rep]]
        if merged:
            record = record._replace(
                duplicates=record.duplicates + sum(1 + m.duplicates for m in merged),
                frequency=record.frequency + sum(m.frequency for m in merged),
            )
        kept.append(record)
    return kept


def _merge_group(element: tuple[str, Iterable[Record]], threshold: float) -> Iterator[Record]:
    _, records = element
    records = list(records)
    kept = merge_near_duplicates(records, threshold)
    merged = len(records) - len(kept)
    if merged:
        count("near_dup.merged", merged)
    yield from kept


def _group_key(record: Record) -> str:
    return f"{record.db_id or ''}\x00{record.sql_fingerprint or record.sql}"


class MergeNearDuplicates(beam.PTransform):
    """Records → one record per cluster of near-duplicate questions within each SQL (``threshold`` in (0, 1])."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        if not 0 < threshold <= 1:
            raise ValueError(f"--near_dup_threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def expand(self, records):
        threshold = self.threshold
        return (
            records
            | "KeyBySql" >> beam.Map(lambda r: (_group_key(r), r)).with_output_types(tuple[str, Record])
            | "GroupBySql" >> beam.GroupByKey()
            | "MergeSimilarQuestions" >> beam.FlatMap(_merge_group, threshold).with_output_types(Record)
        )


def applies(dedup_strategy: str) -> bool:
    """Near-duplicate merging follows dedup strategies that keep several questions per SQL.

    ``sql-only`` and ``template`` already keep one pair per SQL; ``none`` merges nothing.

    >>> [s for s in ("sql-only", "exact", "question-only", "template", "none") if applies(s)]
    ['exact', 'question-only']
    """
    return dedup_strategy in ("exact", "question-only")


def threshold_value(value: Optional[float]) -> float:
    return DEFAULT_THRESHOLD if value is None else value


__all__: Sequence[str] = ("MergeNearDuplicates", "merge_near_duplicates", "similarity", "shingles", "applies")
