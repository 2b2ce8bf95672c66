"""Review result cache: bounded, TTL'd, keyed by a keyed hash of the token, one upstream call per key at a time.

Why: Guard has no cache, so every kubectl call costs a GitHub/LDAP round trip. Positive answers live
`ttl` seconds, rejections `negative_ttl` (shorter, so a freshly granted user is not locked out for long).
Transient failures (`UpstreamUnavailable`) are never cached. The key is BLAKE2b of the token under a random
per-process key, so neither the cache nor a memory dump holds a raw token or a digest usable elsewhere.
Concurrent misses for one key wait for the first caller's upstream call instead of repeating it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from kagiya.errors import UpstreamUnavailable

T = TypeVar("T")
_PROCESS_KEY = secrets.token_bytes(32)


def cache_key(route: str, token: str, audiences: Sequence[str] = ()) -> bytes:
    """A keyed hash of (route, token, audiences): the cache never sees the token itself."""
    h = hashlib.blake2b(key=_PROCESS_KEY, digest_size=32)
    for part in (route, token, "\x1f".join(audiences)):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class ReviewCache(Generic[T]):
    """`get_or_compute(key, compute)` -> (value, from_cache). Thread-safe.

    `positive(value)` says which TTL applies: `ttl` when true, `negative_ttl` when false.
    """

    def __init__(
        self,
        positive: Callable[[T], bool],
        *,
        ttl: float = 60.0,
        negative_ttl: float = 10.0,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.positive = positive
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max(0, max_entries)
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[float, T]] = OrderedDict()
        self._flights: dict[bytes, _Flight[T]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> T | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: bytes, result: T) -> None:
        ttl = self.ttl if self.positive(result) else self.negative_ttl
        if ttl <= 0 or self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = (self.clock() + ttl, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_compute(self, key: bytes, compute: Callable[[], T], wait: float = 30.0) -> tuple[T, bool]:
        """The cached result, or `compute()`'s (cached by kind); concurrent callers share one computation.

        Raises whatever `compute` raises (UpstreamUnavailable: not cached), and UpstreamUnavailable when the
        shared computation takes longer than `wait` seconds.
        """
        cached = self.get(key)
        if cached is not None:
            return cached, True
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight[T]()
        if not leader:
            if not flight.done.wait(wait):
                raise UpstreamUnavailable("identity provider did not answer in time")
            if flight.error is not None:
                raise flight.error
            assert flight.result is not None
            return flight.result, True
        try:
            result = compute()
            flight.result = result
            self.put(key, result)
            return result, False
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
