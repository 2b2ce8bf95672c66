"""Review cache: TTLs by kind, bounded size, single flight per key, failures never cached, no raw tokens."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kagiya.authn.cache import ReviewCache, cache_key
from kagiya.errors import UpstreamUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **kw: float) -> ReviewCache[str]:
    return ReviewCache(lambda v: v.startswith("ok"), ttl=kw.get("ttl", 60), negative_ttl=kw.get("neg", 5),
                       max_entries=int(kw.get("max", 100)), clock=clock)


def test_positive_and_negative_ttls() -> None:
    clock = Clock()
    cache = make(clock)
    cache.put(b"a", "ok-alice")
    cache.put(b"b", "no")
    clock.now += 6
    assert cache.get(b"a") == "ok-alice"
    assert cache.get(b"b") is None
    clock.now += 60
    assert cache.get(b"a") is None


def test_bounded_size_evicts_least_recently_used() -> None:
    cache = make(Clock(), max=2)
    cache.put(b"a", "ok1")
    cache.put(b"b", "ok2")
    assert cache.get(b"a") == "ok1"
    cache.put(b"c", "ok3")
    assert len(cache) == 2 and cache.get(b"b") is None and cache.get(b"a") == "ok1"


def test_single_flight_and_failures_not_cached() -> None:
    cache = make(Clock())
    calls = []
    gate = threading.Event()

    def compute() -> str:
        calls.append(1)
        gate.wait(2)
        return "ok"

    results: list[tuple[str, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute(b"k", compute)))
               for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r[1] for r in results) == [False] + [True] * 7

    def down() -> str:
        raise UpstreamUnavailable("down")

    with pytest.raises(UpstreamUnavailable):
        cache.get_or_compute(b"x", down)
    assert cache.get(b"x") is None
    assert cache.get_or_compute(b"x", lambda: "ok-now")[0] == "ok-now"


@given(st.text(min_size=1, max_size=64), st.text(max_size=10))
def test_cache_keys_never_contain_the_token(token: str, route: str) -> None:
    key = cache_key(route, token)
    assert len(key) == 32
    assert token.encode("utf-8", "surrogatepass") not in key or len(token.encode("utf-8", "surrogatepass")) <= 2
    assert cache_key(route, token) == key != cache_key(route + "x", token)
