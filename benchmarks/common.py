"""Helpers the benchmarks share: percentiles, a server's and the machine's CPU, concurrent clients released
together, a wrk run parsed, and the admin calls and readiness wait of the benchmarks that drive a `kagiya serve`
process.

Not a benchmark itself (`benchmarks/run.py` runs only `bench_*.py`). Scripts import it as `benchmarks.common`
after putting the repository root on `sys.path`, as they do for `tests.support`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def pct(values: Sequence[float], p: float) -> float:
    """The `p`th percentile (0-100) by nearest rank: the value below which `p`% of the samples fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def show(name: str, seconds: Sequence[float], width: int = 52) -> tuple[float, float]:
    """Print one latency line (n, p50, p99, mean, max in ms) for samples in seconds; return (p50, p99) in ms."""
    p50, p99 = pct(seconds, 50) * 1000, pct(seconds, 99) * 1000
    print(f"  {name:<{width}} n={len(seconds):>5}  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  "
          f"mean {statistics.fmean(seconds) * 1000:8.2f} ms  max {max(seconds) * 1000:8.2f} ms")
    return p50, p99


def process_cpu(pid: int) -> float:
    """CPU seconds (user+sys) used so far by process `pid` and its direct children (Linux /proc, 10 ms ticks)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_cpu() -> float:
    """CPU seconds (all cores, every process) the machine has been busy so far: user, nice, system, irq, softirq
    and steal from /proc/stat. The difference over an interval, less what the benchmark's own processes used,
    is the outside load on a shared machine during that interval."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    assert fields[0] == "cpu"
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_together(jobs: Sequence[Callable[[], None]]) -> float:
    """Run each job in its own thread, all released at the same instant; seconds from the release until the last
    one ends (thread start-up is not timed)."""
    gate = threading.Barrier(len(jobs) + 1)

    def run(job: Callable[[], None]) -> None:
        gate.wait()
        job()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def post_reviews(port: int, bodies: Sequence[bytes], clients: int) -> tuple[float, list[float], int]:
    """POST TokenReview `bodies` to `/authn/tokenreviews` over `clients` keep-alive connections at once.

    Returns (seconds, latencies in ms, answers that were not 200 with `"authenticated":true`).
    """
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client(chunk: Sequence[bytes]) -> Callable[[], None]:
        def send() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine: list[float] = []
            bad = 0
            for payload in chunk:
                t0 = time.perf_counter()
                conn.request("POST", "/authn/tokenreviews", body=payload,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                mine.append((time.perf_counter() - t0) * 1000)
                bad += resp.status != 200 or b'"authenticated":true' not in data
            conn.close()
            with lock:
                latencies.extend(mine)
                failures[0] += bad
        return send

    seconds = run_together([client(bodies[i::clients]) for i in range(clients)])
    return seconds, latencies, failures[0]


def admin(port: int, token: str, method: str, path: str, body: Any) -> Any:
    """One JSON API call to kagiya with an admin's bearer token; raises on any status >= 300."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body), headers={"Authorization": f"Bearer {token}",
                                                               "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return json.loads(data)


def wait_ready(port: int, timeout: float = 60) -> None:
    """Wait until kagiya's `/readyz` answers 200 (watches synced, store reachable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("kagiya never became ready")


@dataclass
class WrkRun:
    """One wrk run: requests/s, latency p50/p99 in ms, the script's answer counts, socket errors, and CPU in % of
    one core: wrk's, the server's, and the rest of the machine's (outside load)."""

    rps: float
    p50: float
    p99: float
    ok: int
    bad: int
    first_bad: str
    socket_errors: int
    wrk_cpu: float
    server_cpu: float
    outside_cpu: float


WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_wrk(port: int, script: Path, script_args: Sequence[str], *, threads: int, connections: int, seconds: int,
            server_pid: int) -> WrkRun:
    """Run wrk (`--latency`) with Lua `script` against 127.0.0.1:`port` and parse its report.

    The script's done() must print `kagiya-answers OK BAD FIRST_BAD` (see wrk_tokenreview.lua): wrk itself only
    counts non-2xx/3xx answers. wrk's CPU comes from this process's reaped-children usage, so no other child may
    end meanwhile; `server_pid`'s CPU includes its direct children. A wrk failure or a report that does not parse
    raises with wrk's output.
    """
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
            "-s", str(script), f"http://127.0.0.1:{port}", "--", *script_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0, own0, machine0, t0 = process_cpu(server_pid), time.process_time(), machine_cpu(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    elapsed, machine, own = time.monotonic() - t0, machine_cpu() - machine0, time.process_time() - own0
    server_cpu = process_cpu(server_pid) - server0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = done.stdout

    def field(pattern: str) -> str:
        found = re.search(pattern, out, re.MULTILINE)
        if done.returncode or found is None:
            raise RuntimeError(f"wrk exit {done.returncode}, no {pattern!r} in its output:\n{out}{done.stderr}")
        return found.group(1)

    def ms(text: str) -> float:
        value = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if value is None:
            raise RuntimeError(f"wrk: unexpected duration {text!r}")
        return float(value.group(1)) * WRK_UNITS[value.group(2)]

    answers = field(r"^kagiya-answers (\d+ \d+ .*)$").split(" ", 2)
    socket_errors = re.search(r"^\s*Socket errors: (.*)$", out, re.MULTILINE)
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return WrkRun(float(field(r"^Requests/sec:\s+([\d.]+)")), ms(field(r"^\s+50%\s+(\S+)")),
                  ms(field(r"^\s+99%\s+(\S+)")), int(answers[0]), int(answers[1]), answers[2],
                  sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0,
                  wrk_cpu / elapsed * 100, server_cpu / elapsed * 100,
                  (machine - own - wrk_cpu - server_cpu) / elapsed * 100)
