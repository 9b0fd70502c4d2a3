"""Bounded reconnect-and-retry for network databases, failing fast while one is known down.

Every query we run is read-only and rolled back, so running it again after the
connection broke is safe. A server restart costs a few seconds; a database that
stays down must not cost a few seconds *per query* (a log of a million distinct
queries would take days to turn into dead letters). So a ``Reconnector``:

* retries an operation that raised :class:`ConnectionLost` a bounded number of
  times with exponential backoff, calling ``on_lost`` (drop the pool's dead
  connections) after each loss;
* when every attempt failed, raises ``DatabaseUnavailable`` and remembers it for
  ``cooldown_s``: calls in that window raise at once, without touching the
  network. After the window, the next calls try again (a full cycle).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, TypeVar

from adapters.db.base import DatabaseUnavailable, redact

T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)


class ConnectionLost(Exception):
    """The connection broke or could not be made; the (read-only) query may be retried."""


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
    ):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.name = name
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self.on_lost = on_lost
        self._sleep = sleep
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_message = ""

    def call(self, operation: Callable[[], T]) -> T:
        """``operation()``, retried on ``ConnectionLost``; ``DatabaseUnavailable`` when it keeps failing."""
        with self._lock:
            if time.monotonic() < self._down_until:
                raise DatabaseUnavailable(self._down_message)
        delay = self.backoff_s
        lost: Optional[ConnectionLost] = None
        for attempt in range(self.attempts):
            try:
                return operation()
            except ConnectionLost as error:
                lost = error
            if self.on_lost is not None:
                try:
                    self.on_lost()
                except Exception:  # noqa: BLE001 - cleaning up after a loss must not hide the loss
                    pass
            if attempt + 1 < self.attempts:
                _LOGGER.warning("%s: connection lost (%s); retrying in %.1f s", self.name,
                                redact(one_line(str(lost)))[:300], delay)
                self._sleep(delay)
                delay *= 2
        message = redact(one_line(f"{self.name} is unavailable after {self.attempts} attempts: {lost}"))
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown_s
            self._down_message = message
        raise DatabaseUnavailable(message) from lost
