"""How fresh each watch behind a `KubeIndex` is, and the fail-closed rule built on it.

An index fed by a watch is only as true as the watch's last sign of life (an event, a BOOKMARK, a list, or a stream
the server ended on time). A silently partitioned API server (packets dropped, no RST) shows no error at all: the
index just stops changing, while pods are deleted and their IPs handed to new pods. So every answer that names a
pod by its IP asks `check()` first; past `stale_after` seconds without life it raises `StaleWatch` (HTTP 503), and
readiness reports the same, naming the watch. An index filled by hand (tests, benchmarks) has no freshness: it is
never stale.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from kagiya.errors import UpstreamUnavailable


class StaleWatch(UpstreamUnavailable):
    """A watch has shown no sign of life for longer than the bound: answers derived from it are refused."""

    code = "StaleWatch"

    def __init__(self, kinds: list[str], age: float, bound: float) -> None:
        names = ", ".join(kinds)
        super().__init__(
            f"the Kubernetes {names} watch has shown no sign of life for {age:.0f} s "
            f"(bound kube.watch_stale_after_seconds = {bound:g} s): the pod index may be stale, so pods are not "
            "identified by source IP; present a projected service-account token, or retry when the watch is back",
            details={"watches": kinds, "secondsSinceLife": round(age, 1), "boundSeconds": bound},
        )
        self.kinds = kinds
        self.age = age


class WatchFreshness:
    """Last sign of life per watched kind (monotonic clock, injectable). Thread-safe."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._alive: dict[str, float] = {}

    def alive(self, kind: str) -> None:
        """Record a sign of life of the `kind` watch now."""
        now = self.clock()
        with self._lock:
            self._alive[kind] = now

    def age(self, kind: str) -> float | None:
        """Seconds since `kind` last showed life (None: never yet; readiness covers "not synced")."""
        with self._lock:
            last = self._alive.get(kind)
        return None if last is None else self.clock() - last

    def stale(self, kinds: Iterable[str]) -> list[tuple[str, float]]:
        """The kinds among `kinds` past the bound, with their ages."""
        out = []
        for kind in kinds:
            age = self.age(kind)
            if age is not None and age > self.stale_after:
                out.append((kind, age))
        return out

    def check(self, kinds: Iterable[str]) -> None:
        """Raise StaleWatch when any of `kinds` is past the bound."""
        stale = self.stale(kinds)
        if stale:
            raise StaleWatch([k for k, _ in stale], max(a for _, a in stale), self.stale_after)
