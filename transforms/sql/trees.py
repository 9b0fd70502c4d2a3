"""Parse once: the sqlglot tree of a normalized query, remembered for the stages fused after it.

Normalize parses each query once and remembers the normalized tree here; Classify
and Describe, which Beam fuses into the same worker thread right after Normalize,
take the tree from this small per-thread cache instead of parsing again. After a
shuffle, on another worker, or when the cache has moved on, ``tree_for`` re-parses
the normalized SQL (same result, just slower), so correctness never depends on the
cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional

from sqlglot import exp

from transforms.sql import parsing

_CAPACITY = 256
_local = threading.local()


def _cache() -> "OrderedDict[tuple[str, str], exp.Expression]":
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    return cache


def remember(normalized_sql: str, dialect: str, tree: exp.Expression) -> None:
    """Keep ``tree`` as the parse of ``normalized_sql`` for the next stages in this thread."""
    cache = _cache()
    cache[(normalized_sql, dialect)] = tree
    cache.move_to_end((normalized_sql, dialect))
    while len(cache) > _CAPACITY:
        cache.popitem(last=False)


def tree_for(normalized_sql: str, dialect: Optional[str]) -> exp.Expression:
    """The tree of a normalized query: from the cache, else parsed again (read-only use only)."""
    key = (normalized_sql, dialect or "")
    tree = _cache().get(key)
    if tree is None:
        tree = parsing.parse_one(normalized_sql, dialect)
        remember(normalized_sql, dialect or "", tree)
    return tree
