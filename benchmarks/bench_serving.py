"""Serving model: the one-process front (`kagiya serve`) against the gunicorn setup it replaced, in the same run.

1. Slow clients: /healthz and a cached TokenReview p99 (one client, keep-alive) with SLOW connections open that
   trickle a byte of their headers or body every 0.5 s, against the same probes' p99 idle. Goal: within 2x.
   The gunicorn baseline (2 gthread workers x 8 threads, as the removed gunicorn.conf.py ran it) gets the same
   slow clients and a few probes with a short timeout, to show what the front replaces.
2. Throughput: a cached TokenReview (one OIDC JWT, answered from the review cache) over CLIENTS keep-alive
   connections, front vs gunicorn, alternating TP_ROUNDS rounds, best of each. Goal: the front not lower.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import pct, post_reviews, process_cpu  # noqa: E402
from tests.standins.oidc_issuer import OidcIssuer  # noqa: E402
from tests.support.servers import ServerProcess, free_port  # noqa: E402

SLOW = 300
PROBES = 450
CLIENTS = 16
REQUESTS = 3000
ROUNDS = 3
TP_ROUNDS = 5
BIN = Path(sys.executable).parent

#: The production setup before the front: gunicorn, 2 gthread workers x 8 threads, app preloaded in the master,
#: database connections reopened and background work started in each worker after the fork.
GUNICORN = """
import sys
from gunicorn.app.base import BaseApplication
from kagiya.config import load_settings
from kagiya.serving import start_background
from kagiya.web import create_app

settings = load_settings(config_file=sys.argv[2], overrides={"port": int(sys.argv[1])})
app = create_app(settings)

def post_fork(server, worker):
    app.extensions["kagiya.store"].engine.dispose(close=False)
    start_background(app)

class Gunicorn(BaseApplication):
    def load_config(self):
        options = {"bind": [f"127.0.0.1:{sys.argv[1]}"], "workers": 2, "worker_class": "gthread", "threads": 8,
                   "preload_app": True, "timeout": 60, "keepalive": 5, "accesslog": None, "errorlog": "-",
                   "loglevel": "warning", "post_fork": post_fork}
        for key, value in options.items():
            self.cfg.set(key, value)
    def load(self):
        return app

Gunicorn().run()
"""


def review(token: str) -> bytes:
    return json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                       "spec": {"token": token}}).encode()


def probe(port: int, body: bytes, count: int, timeout: float = 10.0) -> tuple[list[float], list[float], int]:
    """`count` alternating /healthz and TokenReview calls on one keep-alive connection: (healthz ms, review ms,
    failures: errors, timeouts, or a review that did not authenticate)."""
    health: list[float] = []
    reviews: list[float] = []
    failed = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    for _ in range(count):
        for path, payload, out in (("/healthz", None, health), ("/authn/tokenreviews", body, reviews)):
            t0 = time.perf_counter()
            try:
                conn.request("POST" if payload else "GET", path, body=payload)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and (payload is None or b'"authenticated":true' in data)
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            if ok:
                out.append((time.perf_counter() - t0) * 1000)
            else:
                failed += 1
    conn.close()
    return health, reviews, failed


#: The slow clients run in their own process, so their trickling does not slow the probing client down.
SLOW_CLIENTS = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.0.{2 + i % 3}", 0))
    s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n" if i % 2 else
              b"POST /authn/tokenreviews HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n\\r\\n")
    socks.append(s)
print("ready", flush=True)
while True:  # each connection sends a byte every 0.5 s, the connections spread over that interval
    for i, s in enumerate(socks):
        try:
            s.sendall(b"X" if i % 2 else b" ")
        except OSError:
            pass
        if i % 10 == 9:
            time.sleep(0.5 / (count / 10))
"""


class SlowClients:
    """SLOW connections from three loopback source addresses; half stall in the headers, half in a body, each
    sending one more byte every 0.5 s, spread over that interval as independent clients would (headers and body
    never complete within the run)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SlowClients:
        self.proc = subprocess.Popen([sys.executable, "-c", SLOW_CLIENTS, str(self.port), str(SLOW)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(10)


def throughput(port: int, body: bytes) -> tuple[float, list[float], int]:
    """Cached reviews over CLIENTS keep-alive connections: (requests per second, latencies in ms, failures)."""
    seconds, latencies, bad = post_reviews(port, [body] * REQUESTS, CLIENTS)
    return len(latencies) / seconds, latencies, bad


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, OidcIssuer(client_id="kube") as issuer:
        tmpdir = Path(tmp)
        config = tmpdir / "kagiya.yaml"
        config.write_text(json.dumps({
            "data_dir": str(tmpdir / "data"), "log_level": "WARNING",
            "authn": {"failed_reviews_per_minute": 0,
                      "providers": [{"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": ["kube"]}]},
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
        fport, gport = free_port(), free_port()
        front = ServerProcess([str(BIN / "kagiya"), "--config", str(config), "serve", "--port", str(fport)],
                              port=fport, env=env, log_path=tmpdir / "front.log", timeout=60)
        gunicorn = ServerProcess([sys.executable, "-c", GUNICORN, str(gport), str(config)], port=gport, env=env,
                                 cwd=ROOT, log_path=tmpdir / "gunicorn.log", timeout=60)
        front.env = gunicorn.env = env
        body = review(issuer.mint(sub="bench", groups=["dev"], expires_in=3600))
        with front, gunicorn:
            for port in (fport, gport):
                throughput(port, body)  # warm: JWKS fetched, review cached (in each gunicorn worker)
            # idle and slow rounds alternate, so a burst of outside load on this shared machine lands on both
            idle_h, idle_r, slow_h, slow_r = [], [], [], []
            idle_bad = slow_bad = 0
            for _ in range(ROUNDS):
                h, r, bad = probe(fport, body, PROBES // ROUNDS)
                idle_h, idle_r, idle_bad = idle_h + h, idle_r + r, idle_bad + bad
                with SlowClients(fport):
                    h, r, bad = probe(fport, body, PROBES // ROUNDS)
                slow_h, slow_r, slow_bad = slow_h + h, slow_r + r, slow_bad + bad
            assert front.proc is not None
            with SlowClients(fport):  # what holding the slow connections costs the front, without other traffic
                before = process_cpu(front.proc.pid)
                time.sleep(3.0)
                slow_cpu = (process_cpu(front.proc.pid) - before) / 3.0 * 100
            with SlowClients(gport):
                g_h, g_r, g_bad = probe(gport, body, 3, timeout=2.0)
            runs: dict[str, list[tuple[float, list[float], int]]] = {"front": [], "gunicorn": []}
            for _ in range(TP_ROUNDS):
                runs["front"].append(throughput(fport, body))
                runs["gunicorn"].append(throughput(gport, body))
            errors = [line for line in front.output().splitlines() if '"level": "error"' in line]
    print(f"1) {SLOW} slow connections open vs idle; {PROBES} probes each in {ROUNDS} alternating rounds, one "
          "keep-alive client; ms")
    print(f"{'probe':<22}{'idle p50':>10}{'idle p99':>10}{'slow p50':>10}{'slow p99':>10}{'p99 ratio':>11}"
          f"{'failed':>8}")
    ratios = []
    for name, idle, slow in (("healthz", idle_h, slow_h), ("cached TokenReview", idle_r, slow_r)):
        ratio = pct(slow, 99) / pct(idle, 99)
        ratios.append(ratio)
        print(f"{name:<22}{statistics.median(idle):>10.2f}{pct(idle, 99):>10.2f}{statistics.median(slow):>10.2f}"
              f"{pct(slow, 99):>10.2f}{ratio:>10.2f}x{idle_bad + slow_bad:>8}")
    print(f"front CPU while only the {SLOW} slow connections are open: {slow_cpu:.1f}% of a core (3 s)")
    print(f"gunicorn (2 gthread workers x 8) with the same {SLOW} slow connections: {len(g_h) + len(g_r)} of 6 probes "
          f"answered within 2 s, {g_bad} failed")
    print(f"2) cached TokenReview throughput, {CLIENTS} keep-alive clients, {REQUESTS} requests, best of {TP_ROUNDS} "
          "alternating rounds")
    best = {name: max(rounds, key=lambda r: r[0]) for name, rounds in runs.items()}
    for name, (rps, lat, bad) in best.items():
        print(f"{name:<10}{rps:>10.0f} req/s  p50 {statistics.median(lat):.2f} ms  p99 {pct(lat, 99):.2f} ms  "
              f"failed {bad}")
    tp_ratio = best["front"][0] / best["gunicorn"][0]
    print(f"front vs gunicorn throughput: {tp_ratio:.2f}x")
    slow_ok = max(ratios) <= 2.0 and not slow_bad
    print(f"goal: p99 with slow clients within 2x of idle: {'OK' if slow_ok else 'OVER GOAL'} "
          f"(healthz {ratios[0]:.2f}x, TokenReview {ratios[1]:.2f}x); "
          f"throughput not lower than gunicorn: {'OK' if tp_ratio >= 1.0 else 'LOWER'} ({tp_ratio:.2f}x); "
          f"server errors logged: {len(errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
