"""Bounded reconnect-and-retry for network databases, failing fast while one is known down,
and a worker-wide budget of open connections over all databases.

Every query we run is read-only and rolled back, so running it again after the
connection broke is safe. A server restart costs a few seconds; a database that
stays down must not cost a few seconds *per query* (a log of a million distinct
queries would take days to turn into dead letters). So a ``Reconnector``:

* retries an operation that raised :class:`ConnectionLost` with exponential
  backoff, calling ``on_lost`` (drop the pool's dead connections) after each loss;
* tells a *refused* connection (the database did not give one) from a *lost*
  one (it gave one, which then broke: an administrator's ``pg_terminate_backend``,
  a proxy's idle cut). Only refusals make a database "down", and only when they
  last for the whole back-off (``down_after_s``, when given; else ``attempts``
  refusals in a row). A lost connection is retried at once on a fresh one, up to
  ``max_losses`` times: connection churn is not an outage;
* when it gives up, raises ``DatabaseUnavailable`` and (for refusals) remembers it
  for ``cooldown_s``: calls in that window raise at once, without touching the
  network. After the window, the next calls try again (a full cycle).

``ConnectionBudget`` bounds the connections a worker holds open, whatever the
number of databases a ``{db_id}`` URL reaches: connections open on demand, idle
ones are reused per database and closed when another database needs the slot or
when they have been idle too long.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Hashable, Optional, TypeVar

from adapters.db.base import DatabaseUnavailable, redact

T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)


class ConnectionLost(Exception):
    """The connection broke or could not be made; the (read-only) query may be retried.

    ``refused``: no connection could be had (the default); False when an established
    connection broke, which says the database is up.
    """

    def __init__(self, message: str = "", *, refused: bool = True):
        super().__init__(message)
        self.refused = refused


def one_line(text: str) -> str:
    """Server and driver messages span lines (libpq adds hints); messages here must not.

    >>> one_line('connection refused\\n\\tIs the server running?')
    'connection refused Is the server running?'
    """
    return " ".join(str(text).split())


class Reconnector:
    """Runs operations with bounded retries on ``ConnectionLost``; thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        cooldown_s: float = 10.0,
        on_lost: Optional[Callable[[], None]] = None,
        sleep: Callable[[float], None] = time.sleep,
        down_after_s: Optional[float] = None,
        max_losses: int = 5,
    ):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.name = name
        self.attempts = attempts
        self.down_after_s = down_after_s
        self.max_losses = max_losses
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self.on_lost = on_lost
        self._sleep = sleep
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_message = ""

    def call(self, operation: Callable[[], T]) -> T:
        """``operation()``, retried on ``ConnectionLost``; ``DatabaseUnavailable`` when it keeps failing."""
        self._raise_if_down()
        delay = self.backoff_s
        refused_since: Optional[float] = None
        refusals = losses = 0
        while True:
            try:
                return operation()
            except ConnectionLost as error:
                lost = error
            self._cleanup()
            if not lost.refused:  # it had a connection: the database is up, try a fresh one now
                refused_since, refusals, losses = None, 0, losses + 1
                if losses > self.max_losses:
                    raise DatabaseUnavailable(redact(one_line(
                        f"{self.name}: the connection broke {losses} times in a row: {lost}"))) from lost
                _LOGGER.warning("%s: connection lost (%s); retrying on a fresh connection", self.name,
                                redact(one_line(str(lost)))[:300])
                self._raise_if_down()
                continue
            now = time.monotonic()
            refused_since = now if refused_since is None else refused_since
            refusals += 1
            if self.down_after_s is None:
                wait = delay if refusals < self.attempts else None
            else:
                left = refused_since + self.down_after_s - now
                wait = min(delay, left) if left > 0 else None
            if wait is None:
                break
            _LOGGER.warning("%s: connection lost (%s); retrying in %.1f s", self.name,
                            redact(one_line(str(lost)))[:300], wait)
            self._sleep(wait)
            delay *= 2
            self._raise_if_down()
        tried = f"after {refusals} attempts" if self.down_after_s is None else (
            f"for {time.monotonic() - refused_since:.1f} s ({refusals} attempts)")
        message = redact(one_line(f"{self.name} is unavailable {tried}: {lost}"))
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown_s
            self._down_message = message
        raise DatabaseUnavailable(message) from lost

    def _raise_if_down(self) -> None:
        with self._lock:
            if time.monotonic() < self._down_until:
                raise DatabaseUnavailable(self._down_message)

    def _cleanup(self) -> None:
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:  # noqa: BLE001 - cleaning up after a loss must not hide the loss
                pass


class BudgetTimeout(Exception):
    """No connection slot freed up in time: every slot of the worker stayed busy."""


class SharesConnectionBudget:
    """Mixin of the executors whose connections come from a ``ConnectionBudget``: the worker's,
    handed over by ``use_budget``, else one of the executor's own, made on first use.

    The executor sets ``_lock``, ``_budget`` (None or a given budget) and ``_own_budget``, and
    says how its own budget closes connections (``_new_budget``).
    """

    _lock: threading.Lock
    _budget: Optional["ConnectionBudget"]
    _own_budget: bool
    max_connections: int

    def _new_budget(self) -> "ConnectionBudget":
        raise NotImplementedError

    def use_budget(self, budget: "ConnectionBudget") -> None:
        """Take connections from ``budget`` (the worker's), not from one of this executor's own."""
        with self._lock:
            if self._budget is not None and self._own_budget:
                self._budget.discard_idle(self)
            self._budget, self._own_budget = budget, False

    def _get_budget(self) -> "ConnectionBudget":
        with self._lock:
            if self._budget is None:
                self._budget = self._new_budget()
            return self._budget


class ConnectionBudget:
    """At most ``limit`` open connections, over every database of a worker; thread-safe.

    ``take(key, connect)`` returns an idle connection of database ``key`` (the most
    recently used: its caches are warm), or opens one with ``connect()`` when a slot
    is free; when every slot holds a connection, it closes the longest-idle one of
    another database and takes its slot, or waits for one to be given back. So a
    ``{db_id}`` URL over a hundred databases holds ``limit`` connections, not a pool
    per database. Idle connections older than ``max_idle_s`` are closed on the way.

    >>> budget = ConnectionBudget(1, close=lambda conn: closed.append(conn))
    >>> closed = []
    >>> a = budget.take("a", lambda: "conn-a"); budget.give("a", a)
    >>> budget.take("b", lambda: "conn-b"), closed, budget.open
    ('conn-b', ['conn-a'], 1)
    """

    def __init__(self, limit: int, *, close: Callable[[Any], None], max_idle_s: float = 60.0):
        self.limit = max(1, int(limit))
        self.max_idle_s = max_idle_s
        self._close = close
        self._cond = threading.Condition()
        self._open = 0
        self._idle: dict[Hashable, list[tuple[Any, float]]] = {}
        self._swept = time.monotonic()

    @property
    def open(self) -> int:
        """Connections open now (idle or in use)."""
        return self._open

    def take(self, key: Hashable, connect: Callable[[], T], timeout: float = 30.0) -> T:
        """A connection to ``key``: an idle one, or a new one in a free (or freed) slot."""
        deadline = time.monotonic() + timeout
        victim = None
        with self._cond:
            while True:
                idle = self._idle.get(key)
                if idle:
                    return idle.pop()[0]
                if self._open < self.limit:
                    self._open += 1
                    break
                victim = self._pop_longest_idle()
                if victim is not None:
                    break  # its slot becomes ours
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetTimeout(f"all {self.limit} connections stayed busy for {timeout:.0f} s")
                self._cond.wait(left)
        if victim is not None:
            self._quietly_close(victim)
        try:
            return connect()
        except BaseException:
            self._release_slot()
            raise

    def give(self, key: Hashable, conn: Any, reusable: bool = True) -> None:
        """Return ``conn``: kept idle for ``key`` when ``reusable``, else closed and its slot freed."""
        if not reusable:
            self._quietly_close(conn)
            self._release_slot()
            return
        now = time.monotonic()
        stale: list[Any] = []
        with self._cond:
            self._idle.setdefault(key, []).append((conn, now))
            if now - self._swept > 1.0:
                self._swept = now
                stale = self._pop_idle(lambda _key, since: now - since > self.max_idle_s)
            self._cond.notify()
        for old in stale:
            self._quietly_close(old)

    def discard_idle(self, key: Optional[Hashable] = None, close: Optional[Callable[[Any], None]] = None) -> int:
        """Close the idle connections of ``key`` (of every database with None); how many were closed.

        ``close``, when given, closes them instead of the budget's own: after a lost
        connection the idle ones are dead too, and a polite goodbye would only wait on them.
        """
        with self._cond:
            gone = self._pop_idle(lambda idle_key, _since: key is None or idle_key == key)
            self._cond.notify_all()
        for conn in gone:
            self._quietly_close(conn, close)
        return len(gone)

    def _pop_idle(self, condition: Callable[[Hashable, float], bool]) -> list[Any]:
        """Remove matching idle connections and their slots (the caller holds the lock)."""
        gone = []
        for key, idle in list(self._idle.items()):
            keep = [(conn, since) for conn, since in idle if not condition(key, since)]
            gone.extend(conn for conn, since in idle if condition(key, since))
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        self._open -= len(gone)
        return gone

    def _pop_longest_idle(self) -> Any:
        """The connection idle the longest, of any database, keeping its slot (the caller holds the lock)."""
        oldest_key, oldest_since = None, None
        for key, idle in self._idle.items():
            if idle and (oldest_since is None or idle[0][1] < oldest_since):
                oldest_key, oldest_since = key, idle[0][1]
        if oldest_key is None:
            return None
        idle = self._idle[oldest_key]
        conn = idle.pop(0)[0]
        if not idle:
            del self._idle[oldest_key]
        return conn

    def _release_slot(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def _quietly_close(self, conn: Any, close: Optional[Callable[[Any], None]] = None) -> None:
        try:
            (close or self._close)(conn)
        except Exception:  # noqa: BLE001 - a connection that fails to close is closed enough
            pass
