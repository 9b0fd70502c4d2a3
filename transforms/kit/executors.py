"""The databases, as every family that executes SQL shares them: one ``ExecutorSet`` per worker
process (executors built on first use, one connection budget), and ``run_query``, which turns an
executor's result into the record model's ``Execution``.

It lives in ``kit`` because validate (execute, instantiate), label (questions' sample rows), generate
(catalog, synthesis) and publish (preference, exports' schemas) all run queries, and a family
imports no other family. The adapters return their own plain result (``adapters.db.results``);
``run_query`` copies it into ``transforms.core.record.Execution``, field for field.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Optional

from sqlglot.tokens import TokenType

from adapters.db import Executor, open_executor
from adapters.db.retry import ConnectionBudget
from transforms.core.record import Execution
from transforms.sql import parsing

_LOGGER = logging.getLogger(__name__)


def default_max_connections() -> int:
    """Four queries in flight per CPU core: databases wait on I/O far more than on us."""
    return 4 * (os.cpu_count() or 1)


def _close_connection(conn: Any) -> None:
    """Close a connection the budget gives up; ``retire`` (where there is one) also waits until the server let go."""
    getattr(conn, "retire", conn.close)()


class ExecutorSet:
    """The executors of one worker process, one per database URL, built on first use.

    Their connections come from one ``ConnectionBudget`` of ``max_connections``: the
    bound is the worker's, over every database a ``{db_id}`` URL reaches, not one
    pool per database (executors of databases without network connections ignore it).
    """

    def __init__(self, settings: dict[str, Any]):
        settings = dict(settings)
        password_env = settings.pop("password_env", None)
        if password_env:
            settings["password"] = os.environ.get(password_env)
        self.settings = settings
        self.budget = ConnectionBudget(settings.get("max_connections", 4), close=_close_connection)
        self._executors: dict[str, Executor] = {}
        self._lock = threading.Lock()
        self._users = 0

    def retain(self) -> "ExecutorSet":
        """Count one more DoFn instance using this set (``Shared`` hands the same set to all)."""
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        """The last user to let go closes the pools, so connections never outlive the stage."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def get(self, url: str) -> Executor:
        with self._lock:
            executor = self._executors.get(url)
            if executor is None:
                executor = self._executors[url] = open_executor(url, **self.settings)
                if hasattr(executor, "use_budget"):
                    executor.use_budget(self.budget)
            return executor

    def close(self) -> None:
        with self._lock:
            for executor in self._executors.values():
                try:
                    executor.close()
                except Exception:  # noqa: BLE001 - closing must not fail the bundle
                    _LOGGER.warning("closing %r failed", executor)
            self._executors.clear()


def top_level_order_by(sql: str, dialect: Optional[str]) -> bool:
    """Whether the outermost query has an ORDER BY, from tokens alone (no parse).

    Only then does row order matter for the result hash. Parentheses hide ORDER BY
    clauses of subqueries, CTEs and window specifications.

    >>> top_level_order_by("SELECT a FROM (SELECT a FROM t ORDER BY a) AS s", "postgres")
    False
    >>> top_level_order_by("WITH c AS (SELECT 1 AS a) SELECT a FROM c ORDER BY a", "postgres")
    True
    >>> top_level_order_by("(SELECT a FROM t ORDER BY a)", "postgres")
    True
    """
    if "order" not in sql.lower():  # no ORDER BY anywhere (most queries): no need to tokenize
        return False
    tokens = parsing.tokenize(sql, dialect)
    while len(tokens) >= 2 and tokens[0].token_type == TokenType.L_PAREN and _closes_first(tokens):
        tokens = tokens[1:-1]  # `(SELECT … ORDER BY a)`: the whole query in parentheses
    depth = 0
    for token in tokens:
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and kind == TokenType.ORDER_BY:
            return True
    return False


def _closes_first(tokens: list) -> bool:
    """Whether the last token is the parenthesis that closes the first one."""
    depth = 0
    for index, token in enumerate(tokens):
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return index == len(tokens) - 1
    return False


def run_query(executor: Executor, sql: str, dialect: Optional[str]) -> Execution:
    """Run one normalized query (Normalize already refused anything but one read-only query;
    the executor's read-only session is the second, independent defence)."""
    result = executor.execute(sql, ordered=top_level_order_by(sql, dialect))
    return Execution(**result._asdict())
