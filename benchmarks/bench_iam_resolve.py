"""iam resolution at scale: 10,000 pods and 1,000 bindings loaded.

Prints p50/p99 latency of `resolve_workload` for a pod found by IP (the credential path), of `GET /v1/iam/explain`
through the Flask app, the memory the pod index holds (tracemalloc), the initial sync of those pods through the real
`kubernetes` client from the apiserver stand-in, and a naive baseline in the same run (linear scan of the pod list
for the IP, every binding read and filtered in Python) with the ratio.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import pct  # noqa: E402

PODS, NAMESPACES, BINDINGS, SAMPLES = 10_000, 100, 1_000, 3_000
ARN = "arn:aws:iam::123456789012:role/"


def pod_objects() -> list[dict[str, Any]]:
    out = []
    for i in range(PODS):
        ns = f"ns-{i % NAMESPACES}"
        out.append({
            "metadata": {"namespace": ns, "name": f"pod-{i}", "uid": f"uid-{i:06d}", "resourceVersion": str(i + 1),
                         "labels": {"app": f"app-{i % 20}", "tier": "web" if i % 2 else "batch"},
                         "annotations": {"iam.amazonaws.com/role": f"app-{i % 20}"} if i % 10 == 0 else {}},
            "spec": {"serviceAccountName": f"sa-{i % 10}", "nodeName": f"node-{i % 50}",
                     "containers": [{"name": "app"}]},
            "status": {"podIP": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}", "phase": "Running"},
        })
    return out


def main() -> None:
    import sqlalchemy as sa

    from kagiya.config import load_settings
    from kagiya.iam.context import IamContext
    from kagiya.iam.policy import policy_for, save_policy
    from kagiya.iam.resolve import resolve_workload
    from kagiya.iam.schema import bindings
    from kagiya.kube import KubeIndex
    from kagiya.store import Store
    from kagiya.web import create_app

    data_dir = Path(tempfile.mkdtemp(prefix="kagiya-bench-"))
    tokens = data_dir / "tokens.csv"
    tokens.write_text('bench-token-000000001,bench,uid-bench,"kagiya:admins"\n')
    settings = load_settings(env={}, overrides={"data_dir": str(data_dir), "log_level": "ERROR",
                                                "authn": {"token_file": str(tokens)},
                                                "iam": {"base_role_arn": ARN, "pod_role_annotation": True}})
    objects = pod_objects()
    namespaces = [{"metadata": {"name": f"ns-{n}", "annotations": {"iam.amazonaws.com/permitted": "^app-.*$"}}}
                  for n in range(NAMESPACES)]

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    index = KubeIndex()
    index.replace("namespaces", namespaces)
    index.replace("serviceaccounts", [])
    index.replace("pods", objects)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    index_bytes = sum(s.size_diff for s in after.compare_to(before, "filename"))

    store = Store(settings.sqlalchemy_url)
    store.migrate()
    ctx = IamContext.build(settings, store, kube_index=index)
    for n in range(NAMESPACES):
        save_policy(ctx, f"ns-{n}", {"allow": [{"cloud": "aws", "glob": ARN + "svc-*"}]}, "bench", "")
    now = ctx.clock()
    rows = [{"namespace": f"ns-{i % NAMESPACES}", "service_account": f"sa-{(i // NAMESPACES) % 10}",
             "pod_selector": json.dumps({"tier": "web"}) if i % 3 == 0 else "{}", "cloud": "aws",
             "identity": f"{ARN}svc-{i}", "tenant": "", "external_id": "", "source": f"request:{i}",
             "state": "active", "created_by": "bench", "approved_by": "bench", "reason": "", "created_at": now}
            for i in range(BINDINGS)]
    with store.begin() as conn:
        conn.execute(bindings.insert(), rows)

    rng = random.Random(7)
    sample = [rng.choice(objects)["status"]["podIP"] for _ in range(SAMPLES)]

    def resolve_indexed(ip: str) -> Any:
        pod = index.pod_by_ip(ip)
        assert pod is not None
        return resolve_workload(ctx, pod.namespace, pod.service_account, pod, cloud="aws")

    def resolve_naive(ip: str) -> Any:
        raw = next(o for o in objects if o["status"]["podIP"] == ip)  # linear scan, like a list per request
        meta, spec = raw["metadata"], raw["spec"]
        with store.connect() as conn:
            rows = [r for r in conn.execute(sa.select(bindings)).mappings()
                    if r["namespace"] == meta["namespace"] and r["service_account"] == spec["serviceAccountName"]
                    and r["state"] == "active"]
        policy = policy_for(ctx, meta["namespace"])
        labels = meta["labels"]
        for r in rows:
            selector = json.loads(r["pod_selector"])
            if all(labels.get(k) == v for k, v in selector.items()) and policy.check("aws", r["identity"], ARN).allowed:
                return r["identity"]
        return None

    for ip in sample[:200]:  # warm caches (regex compilation, SQLite page cache)
        resolve_indexed(ip)
    timings = []
    allowed = 0
    for ip in sample:
        t0 = time.perf_counter()
        res = resolve_indexed(ip)
        timings.append(time.perf_counter() - t0)
        allowed += res.allowed
    naive = []
    for ip in sample[:300]:
        t0 = time.perf_counter()
        resolve_naive(ip)
        naive.append(time.perf_counter() - t0)

    app = create_app(settings)
    app.extensions["kagiya.iam"] = ctx
    client = app.test_client()
    headers = {"Authorization": "Bearer bench-token-000000001"}
    explain = []
    for ip in sample[:1000]:
        pod = index.pod_by_ip(ip)
        assert pod is not None
        t0 = time.perf_counter()
        resp = client.get(f"/v1/iam/explain?namespace={pod.namespace}&pod={pod.name}", headers=headers)
        explain.append(time.perf_counter() - t0)
        assert resp.status_code == 200

    sync_seconds = initial_sync_through_client(objects[:PODS])

    ms = 1000.0
    print(f"loaded: {PODS} pods in {NAMESPACES} namespaces, {BINDINGS} bindings; "
          f"{allowed}/{SAMPLES} resolutions allowed")
    print(f"pod index memory (tracemalloc): {index_bytes / 1e6:.1f} MB ({index_bytes / PODS:.0f} B/pod)")
    print(f"resolve (pod by IP + bindings + policy): p50 {statistics.median(timings) * ms:.3f} ms, "
          f"p99 {pct(timings, 99) * ms:.3f} ms  ({SAMPLES} calls)")
    print(f"baseline (linear pod scan + all bindings): p50 {statistics.median(naive) * ms:.3f} ms, "
          f"p99 {pct(naive, 99) * ms:.3f} ms  ({len(naive)} calls)")
    print(f"ratio baseline/indexed: p50 x{statistics.median(naive) / statistics.median(timings):.1f}, "
          f"p99 x{pct(naive, 99) / pct(timings, 99):.1f}")
    print(f"GET /v1/iam/explain (Flask test client, all clouds): p50 {statistics.median(explain) * ms:.3f} ms, "
          f"p99 {pct(explain, 99) * ms:.3f} ms  ({len(explain)} calls)")
    if sync_seconds is not None:
        print(f"initial list+index of {PODS} pods through the kubernetes client (stand-in): {sync_seconds:.2f} s")
    app.extensions["kagiya.store"].dispose()
    store.dispose()


def initial_sync_through_client(objects: list[dict[str, Any]]) -> float | None:
    """Time from watcher start to synced index, against the apiserver stand-in over loopback HTTP."""
    try:
        from kagiya.config import load_settings
        from kagiya.kube import KubeWatcher
        from tests.standins.kube_apiserver import KubeApiServer
    except ImportError:
        return None
    with KubeApiServer() as kube:
        for o in objects:
            meta = o["metadata"]
            kube.add_pod(meta["namespace"], meta["name"], ip=o["status"]["podIP"],
                         service_account=o["spec"]["serviceAccountName"], labels=meta["labels"])
        kube_settings = load_settings(env={}, overrides={"kube": {"mode": "url", "host": kube.url}}).section("kube")
        watcher = KubeWatcher(kube_settings)
        t0 = time.perf_counter()
        watcher.ensure_running()
        ok = watcher.index.wait_synced(120)
        elapsed = time.perf_counter() - t0
        watcher.stop(2)
        return elapsed if ok else None


if __name__ == "__main__":
    main()
