"""The hooks through which the lower modules of :mod:`transforms.sql.question_rules` call the higher ones.

Describing SQL is recursive across the package's layers: a derived table's scope needs its
conditions and computed values, a value needs conditions (``FILTER``, ``CASE``) and nested
queries, a condition needs nested queries (``IN (SELECT ..)``). Imports only go down (words and
nodes, then scopes, values, functions, conditions, select, and the package's ``__init__``), so
the module graph has no cycle; where a lower module needs a higher one it calls the hook here,
which ``__init__`` fills once, at import, after importing every module (importing any module
of the package runs ``__init__`` first, so the hooks are always filled before a call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from sqlglot import exp

if TYPE_CHECKING:
    from transforms.sql.question_rules.scopes import Scope


def _unfilled(*args: object, **kwargs: object) -> str:
    raise RuntimeError("transforms.sql.question_rules fills its hooks when it is imported")


value_np: Callable[[Optional[exp.Expression], Scope], str] = _unfilled
"""An expression as a noun phrase: :func:`transforms.sql.question_rules.values.value_np`."""

cond_phrase: Callable[..., str] = _unfilled
"""A boolean expression as a phrase after "with": :func:`transforms.sql.question_rules.conditions.cond_phrase`."""

query_np: Callable[[exp.Expression, Optional[Scope]], str] = _unfilled
"""A nested query as a noun phrase: :func:`transforms.sql.question_rules.select.query_np`."""

outer_join_matching: Callable[[exp.Select, Scope], str] = _unfilled
"""What a SELECT's outer joins' ON conditions keep: :func:`transforms.sql.question_rules.select.outer_join_matching`."""
