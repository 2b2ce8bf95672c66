"""Audit off the critical path: uncached TokenReview latency with the synchronous audit write (the old path) vs
the queued background writer, same app, same run, SQLite on disk (WAL, fsync per commit).

Each mode sends REQUESTS reviews from CLIENTS threads through the app (Flask's WSGI test client, so the figure
is the handler's cost, not a server's), with the review cache off (every review is decided and audited):
- sync:   the store has no background writer, so `audit.record()` commits each event in the request (what
          every review did before the writer existed; it is still the path for a store without a writer);
- queued: the app's writer takes the event; the request never waits on the store.
Modes alternate over ROUNDS rounds; each mode's best round is kept. Prints p50/p99 and throughput per mode,
the p99 and throughput ratios,
and how long the writer needed to drain what the queued rounds left (all events land either way).
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import run_together  # noqa: E402

CLIENTS = 8
REQUESTS = 1200
ROUNDS = 3


def run(app: Any, label: str, round_no: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    failures = [0]

    def worker(n: int) -> None:
        client = app.test_client()
        mine = []
        for i in range(REQUESTS // CLIENTS):
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token(f"{round_no}-{n}-{i}")}}
            start = time.perf_counter()
            resp = client.post("/authn/tokenreviews", json=body,
                               headers={"X-Request-Id": f"{label}-{round_no}-{n}-{i}"})
            mine.append((time.perf_counter() - start) * 1000)
            if resp.status_code != 200:
                failures[0] += 1
        with lock:
            latencies.extend(mine)

    seconds = run_together([functools.partial(worker, n) for n in range(CLIENTS)])
    if failures[0]:
        raise SystemExit(f"{label}: {failures[0]} reviews failed")
    return latencies, seconds


def token(name: str) -> str:
    return f"bench-token-{name}"


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if q < 100 else max(values)


def main() -> int:
    from kagiya import audit
    from kagiya.config import load_settings
    from kagiya.web import create_app

    with tempfile.TemporaryDirectory(prefix="kagiya-bench-audit-", dir="/var/tmp") as tmp:
        tokens = Path(tmp) / "tokens.csv"
        # a distinct token per review: nothing is answered from the review cache, every decision is audited
        tokens.write_text("".join(f'{token(f"{r}-{n}-{i}")},user-{n}-{i},uid-{n}-{i},"team-a"\n'
                                  for r in range(2 * ROUNDS + 1) for n in range(CLIENTS)
                                  for i in range(REQUESTS // CLIENTS)))
        tokens.chmod(0o600)
        settings = load_settings(env={}, overrides={
            "data_dir": str(Path(tmp) / "data"), "log_level": "ERROR",
            "authn": {"token_file": str(tokens), "cache_ttl_seconds": 0, "cache_negative_ttl_seconds": 0}})
        app = create_app(settings)
        store = app.extensions["kagiya.store"]
        writer = audit.WRITERS[store]
        run(app, "warmup", 0)  # round 0
        assert audit.flush(store, 30)
        best: dict[str, list[float]] = {}
        rate: dict[str, float] = {}
        for round_no in range(1, ROUNDS + 1):
            for offset, mode in enumerate(("sync", "queued")):
                if mode == "sync":
                    del audit.WRITERS[store]  # record() now writes in the request, as before the writer
                else:
                    audit.WRITERS[store] = writer
                lat, seconds = run(app, mode, 2 * round_no - 1 + offset)
                if mode not in best or p(lat, 99) < p(best[mode], 99):
                    best[mode] = lat
                rate[mode] = max(rate.get(mode, 0.0), len(lat) / seconds)
        audit.WRITERS[store] = writer
        drain_start = time.perf_counter()
        assert audit.flush(store, 60)
        drain_ms = (time.perf_counter() - drain_start) * 1000
        with store.connect() as conn:
            import sqlalchemy as sa

            stored = conn.execute(sa.select(sa.func.count()).select_from(audit.audit_events)).scalar_one()
        expected = REQUESTS * (1 + 2 * ROUNDS)
        store.dispose()
    print(f"uncached TokenReview, {CLIENTS} threads, {REQUESTS} reviews per round, best of {ROUNDS} rounds, "
          f"SQLite on disk")
    for mode in ("sync", "queued"):
        lat = best[mode]
        print(f"{mode:>6}: p50 {statistics.median(lat):7.2f} ms  p99 {p(lat, 99):7.2f} ms  max {max(lat):7.2f} ms"
              f"  {rate[mode]:7.0f} reviews/s")
    ratio = p(best["sync"], 99) / p(best["queued"], 99)
    print(f"p99 sync / queued: {ratio:.1f}x; throughput queued / sync: {rate['queued'] / rate['sync']:.2f}x")
    print(f"writer drained the rest in {drain_ms:.0f} ms; audit rows stored {stored} of {expected} reviews")
    if stored != expected:
        print("FAIL: audit events were lost or duplicated")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_GCE_CHECK", "true")
    sys.exit(main())
