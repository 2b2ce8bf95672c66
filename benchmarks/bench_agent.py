"""The node agent's cost: a 200-pod IMDSv2 burst straight to kagiya vs through `kagiya agent`, in the same run.

Setup (all on loopback): moto_server (STS) behind a counting front, the kube-apiserver stand-in with 200 running
pods on 127.0.1.1-200 (node-1) bound to one role, `kagiya serve` watching it, and `kagiya agent` (a separate process,
as on a node) relaying to it with the agent identity of node-1. Each pod is a thread with its own source address
and a fresh connection, speaking IMDSv2 with http.client (PUT token, GET role, GET credentials), all 200 released
at once. The bursts alternate direct / via agent, four pairs, against the same warmed central service.

Printed: p50/p99 of every request, of the two GETs and of the full fetch on each path, the agent/direct p99 ratio
of the full credential fetch (what a pod's SDK waits for; goal <= 1.5x) and of the relayed GETs alone,
requests over botocore's 1 s IMDS timeout (goal 0), and the AssumeRole calls STS saw per bound pod (goal 1.0:
prefetch once per pod per replica, the bursts answered from the cache).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import admin, pct, show, wait_ready  # noqa: E402
from tests.iam_credentials.sts_counter import StsCounter  # noqa: E402
from tests.standins.kube_apiserver import KubeApiServer  # noqa: E402
from tests.support.servers import ServerProcess, free_port  # noqa: E402

PODS = 200
ROUNDS = 4
ROLE = "arn:aws:iam::123456789012:role/app-reader"
ADMIN = "admin-token-0001"
AGENT = "agent-token-0004"
VENV_BIN = Path(sys.executable).parent


def call(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    conn.request(method, path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    return r.status, body, time.perf_counter() - t0


def metric(port: int, prefix: str, *labels: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    total = 0.0
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith(prefix + "{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def burst(port: int) -> dict[str, Any]:
    """200 pods at once, each a full IMDSv2 fetch on a fresh connection from its own address."""
    barrier = threading.Barrier(PODS)
    lock = threading.Lock()
    out: dict[str, Any] = {"requests": [], "fetch": [], "gets": [], "errors": 0}

    def pod(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(f"127.0.1.{i + 1}", 0))
        barrier.wait()
        t0 = time.perf_counter()
        times, errors = [], 0
        try:
            s1, token, d1 = call(conn, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
            hdr = {"X-aws-ec2-metadata-token": token.decode()}
            s2, role, d2 = call(conn, "GET", "/latest/meta-data/iam/security-credentials/", hdr)
            if s1 != 200 or s2 != 200:  # the body is an error message, not a token or a role name: stop here
                errors = (s1 != 200) + (s2 != 200) + 1  # the credentials request never made counts as failed
            else:
                s3, _, d3 = call(conn, "GET", "/latest/meta-data/iam/security-credentials/" + role.decode(), hdr)
                times = [d1, d2, d3]
                errors = int(s3 != 200)
        except OSError:
            errors = 3
        fetch = time.perf_counter() - t0
        conn.close()
        with lock:
            out["requests"] += times
            out["gets"] += times[1:]
            out["fetch"].append(fetch)
            out["errors"] += errors

    threads = [threading.Thread(target=pod, args=(i,)) for i in range(PODS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kagiya-bench-agent-") as tmpdir:
        tmp = Path(tmpdir)
        moto_port = free_port()
        with ServerProcess([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], port=moto_port,
                           log_path=tmp / "moto.log"), KubeApiServer() as kube:
            sts = StsCounter(f"http://127.0.0.1:{moto_port}").start()
            try:
                return run(tmp, kube, sts)
            finally:
                sts.stop()


def run(tmp: Path, kube: Any, sts: StsCounter) -> int:
    kube.add_namespace("team-a")
    kube.add_service_account("team-a", "web")
    tokens = tmp / "tokens.csv"
    tokens.write_text(f'{ADMIN},alice,uid-alice,"kagiya:admins"\n'
                      f'{AGENT},system:kagiya-agent:node-1,uid-agent,"kagiya:agents"\n')
    (tmp / "agent-token").write_text(AGENT)
    (tmp / "data").mkdir()
    config = tmp / "kagiya.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp / "data"), "log_level": "WARNING", "authn": {"token_file": str(tokens)},
        "kube": {"mode": "url", "host": kube.url}, "credentials": {"sts_endpoint": sts.url},
    }))
    env = {"KAGIYA_CONFIG": str(config), "AWS_EC2_METADATA_DISABLED": "true", "NO_GCE_CHECK": "true",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    port, agent_port = free_port(), free_port()
    argv = [str(VENV_BIN / "kagiya"), "serve", "--port", str(port)]
    agent_argv = [str(VENV_BIN / "kagiya"), "agent", "--listen", f"127.0.0.1:{agent_port}",
                  "--server", f"http://127.0.0.1:{port}", "--token-file", str(tmp / "agent-token")]
    with ServerProcess(argv, port=port, env=env, log_path=tmp / "kagiya.log", timeout=60), \
            ServerProcess(agent_argv, port=agent_port, env=env, log_path=tmp / "agent.log", timeout=60):
        wait_ready(port)
        policy = {"allow": [{"cloud": "aws", "glob": "arn:aws:iam::123456789012:role/app-*"}],
                  "autoApprove": [{"cloud": "aws", "glob": "arn:aws:iam::123456789012:role/app-*"}]}
        admin(port, ADMIN, "PUT", "/v1/iam/policies/team-a", policy)
        admin(port, ADMIN, "POST", "/v1/iam/binding-requests",
              {"namespace": "team-a", "serviceAccount": "web", "cloud": "aws", "identity": ROLE})
        for i in range(PODS):
            kube.add_pod("team-a", f"web-{i}", ip=f"127.0.1.{i + 1}", service_account="web", node="node-1")
        started = time.perf_counter()
        while metric(port, "kagiya_iam_credentials_issued_total", 'reason="prefetch"', 'outcome="success"') < PODS:
            if time.perf_counter() - started > 40:
                raise RuntimeError("prefetch did not finish")
            time.sleep(0.05)
        results: dict[str, dict[str, Any]] = {name: {"requests": [], "fetch": [], "gets": [], "errors": 0}
                                              for name in ("direct", "agent")}
        paired: list[float] = []  # agent/direct full-fetch p99 of bursts run back to back (same background load)
        for _ in range(ROUNDS):
            pair = {}
            for name, target in (("direct", port), ("agent", agent_port)):
                got = burst(target)
                pair[name] = pct(got["fetch"], 99)
                for key in ("requests", "fetch", "gets"):
                    results[name][key] += got[key]
                results[name]["errors"] += got["errors"]
                time.sleep(0.3)
            paired.append(pair["agent"] / pair["direct"])
        assumed = sts.total
    print(f"{PODS} pods released at once, each PUT token + GET role + GET credentials on a fresh connection from its "
          f"own 127.0.1.x address, {ROUNDS} bursts per path, alternating; agent -> kagiya: keep-alive HTTP on loopback")
    direct = results["direct"]
    via = results["agent"]
    show("direct: each request", direct["requests"])
    show("via agent: each request (PUT answered on the node)", via["requests"])
    _, dg99 = show("direct: the two GETs", direct["gets"])
    _, ag99 = show("via agent: the two GETs (relayed)", via["gets"])
    _, df99 = show("direct: full fetch (3 requests)", direct["fetch"])
    _, af99 = show("via agent: full fetch (3 requests)", via["fetch"])
    slow_direct = sum(t > 1.0 for t in direct["requests"])
    slow_agent = sum(t > 1.0 for t in via["requests"])
    print("ratios:")
    print(f"  agent/direct p99, full credential fetch: x{af99 / df99:.2f} pooled, "
          f"x{statistics.median(paired):.2f} median of {ROUNDS} back-to-back pairs "
          f"({', '.join(f'{r:.2f}' for r in paired)}) (goal <= 1.5); relayed GETs alone: x{ag99 / dg99:.2f}")
    print(f"  requests over 1 s: direct {slow_direct}/{len(direct['requests'])}, "
          f"via agent {slow_agent}/{len(via['requests'])} (goal 0)")
    print(f"  STS AssumeRole calls per bound pod: {assumed / PODS:.2f} ({assumed} calls, {PODS} pods; goal 1.00)")
    print(f"  non-200 answers: direct {direct['errors']}, via agent {via['errors']}")
    return 1 if direct["errors"] or via["errors"] or slow_agent or slow_direct else 0


if __name__ == "__main__":
    os.environ.setdefault("NO_GCE_CHECK", "true")
    sys.exit(main())
