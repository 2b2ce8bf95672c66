"""kagiya's pod index fed by a watch on the real apiserver, with nothing but deploy/'s RBAC.

kagiya runs (session fixture) with a token of the `kagiya` ServiceAccount bound to exactly the ClusterRole rendered
from deploy/. Pods get their status patched as a kubelet would (`--subresource=status`: phase, podIP, hostIP); the
pod IPs are loopback addresses, so the test calls kagiya's IMDS endpoint *from* the pod's address and kagiya
identifies the caller by source IP, as it does for pods behind the node agent.

Shows: the RBAC is enough (kagiya is ready and identifies pods) and grants nothing else; an IP gets its owner's role
once Running, nothing after deletion, and a new pod reusing the IP is judged on its own (an old session token is
refused); while kagiya is frozen, pods change, etcd is compacted and the apiserver restarts: kagiya's watch gets
410 Gone, relists, and answers for what happened in the gap; a quiet cluster (no bookmarks) never trips the
stale-watch bound, and stopping the apiserver (SIGSTOP) trips it (`kube.watch_stale_after_seconds`, skipped where
this kagiya does not know it).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e_apiserver.cluster import Cluster
from tests.e2e_apiserver.conftest import STALE_AFTER, STATIC_USERS
from tests.e2e_apiserver.pods import Imds, create_pod, delete_pod, eventually, set_running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN = STATIC_USERS["ops"][0]
ROLE_PREFIX = "arn:aws:iam::123456789012:role/"
@pytest.fixture(scope="module")
def imds(cluster: Cluster) -> Imds:
    return Imds(cluster)


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"idx-{uuid.uuid4().hex[:6]}"
    cluster.admin("create", "namespace", name)
    status, body = cluster.kagiya.request("PUT", f"/v1/iam/policies/{name}", token=ADMIN, body={
        "allow": [{"cloud": "aws", "glob": f"{ROLE_PREFIX}{name}-*"}], "trustAnnotations": True})
    assert status == 200, body
    for sa, role in (("app", f"{name}-app"), ("batch", f"{name}-batch"), ("plain", None)):
        notes = {"eks.amazonaws.com/role-arn": ROLE_PREFIX + role} if role else {}
        cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": sa, "namespace": name, "annotations": notes}})
    yield name


def known(cluster: Cluster, ns: str, pod: str) -> int:
    return cluster.kagiya.request("GET", f"/v1/iam/explain?namespace={ns}&pod={pod}", token=ADMIN)[0]


def test_deploy_rbac_is_enough_and_grants_nothing_else(cluster: Cluster) -> None:
    token = (cluster.work / "kagiya-sa.token").read_text()
    status, body = cluster.kagiya.request("GET", "/readyz")
    assert status == 200, body  # listed and watching pods, namespaces and service accounts with that token alone

    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", *args, token=token).stdout.strip()

    for resource in ("pods", "namespaces", "serviceaccounts"):
        assert can("watch", resource, "--all-namespaces") == "yes"
    assert can("create", "tokenreviews.authentication.k8s.io") == "yes"
    for denied in (("get", "secrets", "--all-namespaces"), ("list", "configmaps", "-n", "kagiya-system"),
                   ("create", "pods", "-n", "default"), ("patch", "pods", "--all-namespaces"),
                   ("create", "serviceaccounts/token", "-n", "kagiya-system"), ("delete", "namespaces")):
        assert can(*denied) == "no", denied


def test_pod_ip_lifecycle_and_reuse(cluster: Cluster, ns: str, imds: Imds) -> None:
    ip = "127.0.0.21"
    create_pod(cluster, ns, "web-1", "app")
    assert eventually(lambda: known(cluster, ns, "web-1"), lambda s: s == 200) == 200
    pending = imds.role(ip)
    assert pending[0] == 404 and "no pod is known with IP" in pending[1]  # Pending, no IP yet: nobody is there
    set_running(cluster, ns, "web-1", ip)
    assert eventually(lambda: imds.role(ip), lambda r: r[0] == 200) == (200, f"{ns}-app")
    status, old_session = imds.session(ip)
    assert status == 200

    delete_pod(cluster, ns, "web-1")
    gone = eventually(lambda: imds.role(ip), lambda r: r[0] == 404)
    assert gone[0] == 404 and f"no pod is known with IP {ip}" in gone[1], gone
    # a new pod of another workload gets the same IP: it is judged on its own binding (it has none)
    create_pod(cluster, ns, "web-2", "plain")
    set_running(cluster, ns, "web-2", ip)
    unbound = eventually(lambda: imds.role(ip), lambda r: "no aws identity is bound" in r[1])
    assert unbound[0] == 404 and "no aws identity is bound to this pod" in unbound[1], unbound
    assert imds.role(ip, old_session)[0] == 401  # the session token of the IP's previous owner
    # and the same name recreated with the same IP is a new pod (new uid) with its own binding again
    delete_pod(cluster, ns, "web-2")
    create_pod(cluster, ns, "web-1", "batch")
    set_running(cluster, ns, "web-1", ip)
    assert eventually(lambda: imds.role(ip), lambda r: r[0] == 200) == (200, f"{ns}-batch")
    assert imds.role(ip, old_session)[0] == 401


def test_a_terminating_pod_never_lends_its_ip_to_the_next_owner(cluster: Cluster, ns: str, imds: Imds) -> None:
    """A graceful delete leaves the pod Terminating (no kubelet confirms it here) with its IP still in its status."""
    ip = "127.0.0.26"
    create_pod(cluster, ns, "leaving", "app")
    set_running(cluster, ns, "leaving", ip)
    assert eventually(lambda: imds.role(ip), lambda r: r[0] == 200) == (200, f"{ns}-app")
    cluster.admin("delete", "pod", "leaving", "-n", ns, "--wait=false")
    pod = cluster.get("pod", "leaving", "-n", ns)
    assert pod["metadata"]["deletionTimestamp"] and pod["status"]["podIP"] == ip  # Terminating, IP still shown
    refused = eventually(lambda: imds.role(ip), lambda r: r[0] != 200)
    assert refused[0] == 403 and f"the pod at {ip} is terminating" in refused[1], refused
    create_pod(cluster, ns, "arriving", "batch")
    set_running(cluster, ns, "arriving", ip)
    assert eventually(lambda: imds.role(ip), lambda r: r[0] == 200) == (200, f"{ns}-batch")


def freeze(pid: int, sig: signal.Signals) -> None:
    os.killpg(pid, sig)


def test_gap_with_compaction_and_apiserver_restart_is_survived(cluster: Cluster, ns: str, imds: Imds) -> None:
    create_pod(cluster, ns, "old", "app")
    set_running(cluster, ns, "old", "127.0.0.31")
    assert eventually(lambda: imds.role("127.0.0.31"), lambda r: r[0] == 200)[0] == 200
    assert cluster.kagiya.process is not None and cluster.kagiya.process.proc is not None
    kagiya_pid = cluster.kagiya.process.proc.pid
    freeze(kagiya_pid, signal.SIGSTOP)  # kagiya sees nothing of what follows until it is thawed
    try:
        delete_pod(cluster, ns, "old")
        create_pod(cluster, ns, "new", "batch")
        set_running(cluster, ns, "new", "127.0.0.32")
        for i in range(5):  # history that a resumed watch would need
            cluster.admin("annotate", "namespace", ns, f"e2e/churn={i}", "--overwrite")
        cluster.etcd.compact()
        cluster.apiserver.restart()
    finally:
        freeze(kagiya_pid, signal.SIGCONT)
    # the old watch connections died with the apiserver; resuming from their resourceVersion is 410 Gone
    assert eventually(lambda: imds.role("127.0.0.32"), lambda r: r[0] == 200, timeout=30) == (200, f"{ns}-batch")
    gone = eventually(lambda: imds.role("127.0.0.31"), lambda r: r[0] == 404)
    assert gone[0] == 404 and "no pod is known with IP 127.0.0.31" in gone[1], gone
    assert eventually(lambda: known(cluster, ns, "old"), lambda s: s == 404) == 404
    status, body = cluster.kagiya.request("GET", "/readyz")
    assert status == 200, body


def test_a_quiet_cluster_never_trips_the_stale_watch_bound(cluster: Cluster, ns: str, imds: Imds) -> None:
    """Nothing changes for 1.5 times the bound and the real apiserver sends no bookmark on an unchanged kind: the
    watch requests it ends on time (kagiya asks for at most half the bound) keep every watch alive."""
    if not STALE_AFTER:
        pytest.skip("this kagiya has no kube.watch_stale_after_seconds setting yet")
    create_pod(cluster, ns, "quiet", "app")
    set_running(cluster, ns, "quiet", "127.0.0.42")
    assert eventually(lambda: imds.role("127.0.0.42"), lambda r: r[0] == 200)[0] == 200
    start = time.monotonic()
    while time.monotonic() - start < 1.5 * STALE_AFTER:
        status, body = cluster.kagiya.request("GET", "/readyz")
        assert status == 200, body
        time.sleep(0.5)
    assert imds.role("127.0.0.42") == (200, f"{ns}-app")
    delete_pod(cluster, ns, "quiet")


def test_a_hung_apiserver_trips_the_stale_watch_bound(cluster: Cluster, ns: str, imds: Imds) -> None:
    if not STALE_AFTER:
        pytest.skip("this kagiya has no kube.watch_stale_after_seconds setting yet")
    create_pod(cluster, ns, "steady", "app")
    set_running(cluster, ns, "steady", "127.0.0.41")
    assert eventually(lambda: imds.role("127.0.0.41"), lambda r: r[0] == 200)[0] == 200
    cluster.apiserver.pause()
    paused = time.monotonic()
    try:
        readyz: tuple[int, Any] = eventually(lambda: cluster.kagiya.request("GET", "/readyz"),
                                             lambda r: r[0] == 503, timeout=STALE_AFTER + 20)
        assert time.monotonic() - paused >= STALE_AFTER - 1
        assert readyz[0] == 503 and "watch" in json.dumps(readyz[1]), readyz
        assert imds.role("127.0.0.41")[0] == 503  # IP-based identification fails closed
    finally:
        cluster.apiserver.resume()
    assert eventually(lambda: cluster.kagiya.request("GET", "/readyz")[0], lambda s: s == 200, timeout=30) == 200
    assert eventually(lambda: imds.role("127.0.0.41"), lambda r: r[0] == 200)[0] == 200
