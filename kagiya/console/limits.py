"""A per-address limit on failed static-token sign-ins, so the local-mode form cannot be used to guess tokens.

Held per replica (in process), like the API's failed-review limit (`authn.failed_reviews_per_minute`): the bound a
guesser meets is this limit times the number of replicas, which is still far below what guessing needs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000


class FailureLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque()
        while times and now - times[0] >= WINDOW_SECONDS:
            times.popleft()
        return times

    def blocked(self, key: str) -> bool:
        """Whether `key` used up its failures in the last minute."""
        with self._lock:
            return len(self._recent(key, self.clock())) >= self.per_minute

    def failed(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= MAX_ADDRESSES:
                for stale in [k for k, v in self._failures.items() if not v or now - v[-1] >= WINDOW_SECONDS]:
                    del self._failures[stale]
            self._recent(key, now).append(now)
