"""Issue 12.3: approval, auto-approval and a granting policy change prefetch for every matching running pod, so the
first request after an approval is answered from the cache (real watcher, stand-in API server, moto STS)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.iam_credentials.conftest import ACCOUNT, ADMIN, ROLE_READER, imds_credentials


def _policy(world: Any, namespace: str, glob: str, auto: bool = False) -> None:
    rule = {"cloud": "aws", "glob": glob}
    body: dict[str, Any] = {"allow": [rule], "allowSelfApproval": True}
    if auto:
        body["autoApprove"] = [rule]
    r = world.app.test_client().put(f"/v1/iam/policies/{namespace}", json=body, headers=ADMIN)
    assert r.status_code == 200, r.get_json()


def _request(world: Any, namespace: str, sa: str) -> dict[str, Any]:
    r = world.app.test_client().post("/v1/iam/binding-requests", headers=ADMIN, json={
        "namespace": namespace, "serviceAccount": sa, "cloud": "aws", "identity": ROLE_READER})
    assert r.status_code == 201, r.get_json()
    return dict(r.get_json())


def _first_request_is_a_hit(world: Any, ip: str) -> None:
    cache = world.svc.cache
    misses, hits = cache.stats["miss"], cache.stats["hit"]
    status, creds = imds_credentials(world.url, ip)
    assert status == 200 and creds["Code"] == "Success"
    assert cache.stats["miss"] == misses and cache.stats["hit"] > hits


@pytest.mark.slow
def test_approval_prefetches_running_pods(kube_world: Any) -> None:
    world = kube_world
    _policy(world, "team-c", f"arn:aws:iam::{ACCOUNT}:role/app-*")
    pod = world.add_pod("team-c", "svc-1", "svc", "127.0.4.1")
    other = world.add_pod("team-c", "else-1", "else", "127.0.4.9")
    time.sleep(0.2)
    assert not world.svc.cache.has(pod["metadata"]["uid"])  # no binding yet: nothing to prefetch

    req = _request(world, "team-c", "svc")
    assert req["state"] == "pending"
    r = world.app.test_client().post(f"/v1/iam/binding-requests/{req['id']}/approve", headers=ADMIN, json={})
    assert r.status_code == 200 and r.get_json()["state"] == "approved"
    world.wait_prefetched(pod["metadata"]["uid"], timeout=5)
    _first_request_is_a_hit(world, "127.0.4.1")
    assert not world.svc.cache.has(other["metadata"]["uid"])  # another service account gained nothing


@pytest.mark.slow
def test_auto_approval_and_granting_policy_change_prefetch(kube_world: Any) -> None:
    world = kube_world
    # Auto-approval (team-a's policy auto-approves app-* roles).
    pod = world.add_pod("team-a", "fresh-1", "fresh", "127.0.4.2")
    assert _request(world, "team-a", "fresh")["state"] == "approved"
    world.wait_prefetched(pod["metadata"]["uid"], timeout=5)
    _first_request_is_a_hit(world, "127.0.4.2")

    # A policy change that grants: the binding exists, the policy stopped allowing its role, then allows it again.
    _policy(world, "team-c", f"arn:aws:iam::{ACCOUNT}:role/app-*")
    rid = _request(world, "team-c", "later")["id"]
    r = world.app.test_client().post(f"/v1/iam/binding-requests/{rid}/approve", headers=ADMIN, json={})
    assert r.status_code == 200
    _policy(world, "team-c", f"arn:aws:iam::{ACCOUNT}:role/other-*")
    late = world.add_pod("team-c", "later-1", "later", "127.0.4.3")
    time.sleep(0.3)
    assert not world.svc.cache.has(late["metadata"]["uid"])  # not allowed now: not prefetched
    _policy(world, "team-c", f"arn:aws:iam::{ACCOUNT}:role/app-*")
    world.wait_prefetched(late["metadata"]["uid"], timeout=5)
    _first_request_is_a_hit(world, "127.0.4.3")


@pytest.mark.slow
def test_an_approval_on_another_replica_prefetches_here(make_settings: Any, tmp_path: Any, moto: Any,
                                                        gcp_standin: Any) -> None:
    """Two replicas (one store, one API server): approving on A makes B prefetch too, by its store poll."""
    from kagiya.iam.context import iam_context
    from kagiya.iam.metadata.service import service_of
    from kagiya.web import create_app
    from tests.iam_credentials.conftest import make_world
    from tests.standins.kube_apiserver import KubeApiServer
    from tests.support.threaded import ThreadedServer

    with KubeApiServer() as kube:
        a = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube, grant_poll_seconds=0.2)
        app_b = create_app(a.app.extensions["kagiya.settings"])
        svc_b = service_of(app_b)
        ctx_b = iam_context(app_b)
        server_b = ThreadedServer(app_b).start()
        try:
            svc_b.cache.issuer("aws")._sts()
            assert ctx_b.kube is not None and ctx_b.kube.wait_synced(10)
            _policy(a, "team-c", f"arn:aws:iam::{ACCOUNT}:role/app-*")
            pod = a.add_pod("team-c", "multi-1", "multi", "127.0.4.20")
            uid = pod["metadata"]["uid"]
            req = _request(a, "team-c", "multi")
            r = a.app.test_client().post(f"/v1/iam/binding-requests/{req['id']}/approve", headers=ADMIN, json={})
            assert r.status_code == 200
            deadline = time.monotonic() + 10
            while not svc_b.cache.has(uid):
                assert time.monotonic() < deadline, "replica B never prefetched"
                time.sleep(0.05)
            misses = svc_b.cache.stats["miss"]
            status, _ = imds_credentials(server_b.url, "127.0.4.20")
            assert status == 200 and svc_b.cache.stats["miss"] == misses  # B's first request: a cache hit
        finally:
            server_b.stop()
            svc_b.stop()
            if ctx_b.watcher is not None:
                ctx_b.watcher.stop(timeout=2)
            a.close()
