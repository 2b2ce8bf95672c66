"""Issue 12.1: a silently partitioned pod watch fails closed for identification by source IP.

The API server is reached through a TCP proxy that goes silent (accepts, forwards nothing, never resets), so
kagiya's real watcher (the official `kubernetes` client) sees no error, only silence. Within the bound
`kube.watch_stale_after_seconds` IP-based answers turn into a 503 Status (audited), /readyz turns 503 naming the
watch, a pod presenting a projected service-account token is still served, and all of it recovers when the
watch comes back. The pod that inherits a deleted pod's IP never gets the deleted pod's role past the bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.iam_credentials.conftest import ACCOUNT, imds_credentials, make_world, source_session
from tests.iam_credentials.stall_proxy import StallProxy

BOUND = 1.5


@pytest.fixture
def stalled_world(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any) -> Iterator[tuple[Any, Any]]:
    from tests.standins.kube_apiserver import KubeApiServer

    with KubeApiServer() as kube:
        proxy = StallProxy(kube.port)
        world = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube,
                           kube_overrides={"host": proxy.url, "watch_stale_after_seconds": BOUND,
                                           "timeout_seconds": 1})
        try:
            yield world, proxy
        finally:
            proxy.resume()
            world.close()
            proxy.close()


def _until(cond: Any, timeout: float) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("watches_only", [True, False], ids=["dead-watch-connection", "full-partition"])
def test_silent_partition_fails_closed_then_recovers(stalled_world: tuple[Any, Any], watches_only: bool) -> None:
    world, proxy = stalled_world
    ip = "127.0.0.91"
    a = world.add_pod("team-a", "web-a", "web", ip)
    status, creds = imds_credentials(world.url, ip)
    assert status == 200 and creds["Code"] == "Success"

    proxy.stall(watches_only=watches_only)
    stalled_at = time.monotonic()
    world.kube.delete("pods", "team-a", "web-a")  # the index cannot hear of it
    b = world.kube.add_pod("team-b", "batch-b", ip=ip, service_account="batch")

    # Within the bound the IP path refuses; from then on every answer is a 503 Status naming the stale watch.
    waited = _until(lambda: imds_credentials(world.url, ip)[0] == 503, BOUND + 3.0)
    assert time.monotonic() - stalled_at <= BOUND + 3.0 and waited <= BOUND + 3.0
    for _ in range(10):
        status, body = imds_credentials(world.url, ip)
        assert status == 503 and "AccessKeyId" not in body
    refused = source_session(ip).put(f"{world.url}/latest/api/token",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}, timeout=5)
    assert refused.status_code == 503
    assert refused.json()["kind"] == "Status" and "watch has shown no sign of life" in refused.json()["message"]
    ready = source_session("127.0.0.1").get(f"{world.url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert "watch has shown no sign of life" in ready.json()["details"]["checks"]["kube"]
    events = world.app.test_client().get("/v1/audit?action=iam.identify",
                                         headers={"Authorization": "Bearer admin-token-0001"}).get_json()
    denied = [e for e in events["items"] if e["outcome"] == "denied" and e["details"].get("reason") == "stale-index"]
    assert denied and denied[0]["details"]["sourceIp"] == ip
    assert all(e["details"]["watches"] and set(e["details"]["watches"]) <= {"namespaces", "serviceaccounts", "pods"}
               for e in denied)

    if watches_only:
        # The API server still answers TokenReviews: a pod presenting its projected token is served its own role.
        r = source_session("127.0.0.1").get(f"{world.url}/v1/credentials",
                                            headers={"Authorization": world.pod_token(b)}, timeout=5)
        assert r.status_code == 200, r.text
        assert r.json()["AccountId"] == ACCOUNT

    proxy.resume()
    _until(lambda: imds_credentials(world.url, ip)[0] == 200, 15)
    status, creds = imds_credentials(world.url, ip)
    assert status == 200
    who = world.index.pod_by_ip(ip)
    assert who is not None and who.name == "batch-b" and world.index.pod_by_uid(a["metadata"]["uid"]) is None
    _until(lambda: source_session("127.0.0.1").get(f"{world.url}/readyz", timeout=5).status_code == 200, 15)


@pytest.mark.slow
def test_one_silent_watch_is_enough_to_refuse_ip_identification(stalled_world: tuple[Any, Any]) -> None:
    """Only the namespaces watch goes silent; the pods watch stays healthy. The IP path's answer also rests on the
    namespace (policy labels) and service-account (annotations) indexes, so it must refuse exactly when /readyz
    names any watch (it used to check the pods watch alone: /readyz said 503 while IMDS still answered 200)."""
    world, proxy = stalled_world
    ip = "127.0.0.92"
    b = world.add_pod("team-b", "batch-b", "batch", ip)
    assert imds_credentials(world.url, ip)[0] == 200

    proxy.stall(watches_only=True, path="/api/v1/namespaces?")
    _until(lambda: source_session("127.0.0.1").get(f"{world.url}/readyz", timeout=5).status_code == 503,
           BOUND + 3.0)
    ready = source_session("127.0.0.1").get(f"{world.url}/readyz", timeout=5).json()
    assert "namespaces watch" in ready["details"]["checks"]["kube"]
    assert world.ctx.watcher.freshness.stale(["pods"]) == []  # the pods watch is healthy all along
    for _ in range(5):
        status, body = imds_credentials(world.url, ip)
        assert status == 503 and "AccessKeyId" not in str(body), body
        assert "namespaces" in body and "watch_stale_after_seconds" in body
    # the token path (a live TokenReview, the pod listed in the index) keeps working
    r = source_session("127.0.0.1").get(f"{world.url}/v1/credentials",
                                        headers={"Authorization": world.pod_token(b)}, timeout=5)
    assert r.status_code == 200, r.text

    proxy.resume()
    _until(lambda: imds_credentials(world.url, ip)[0] == 200, 15)
    _until(lambda: source_session("127.0.0.1").get(f"{world.url}/readyz", timeout=5).status_code == 200, 15)


@pytest.mark.slow
def test_a_quiet_healthy_cluster_never_trips_the_bound(make_settings: Any, tmp_path: Path, moto: Any,
                                                       gcp_standin: Any) -> None:
    """Issue 18.4: a real kube-apiserver sends no BOOKMARK on a kind that does not change (none in 150 s). The stand-in
    behaves so (`quiet_bookmarks=False`) and nothing changes for three times the bound, with `watch_seconds` (30)
    far above it: every watch request the server ends on time, and every one it accepts again, is a sign of life,
    so /readyz stays 200 and the IP path keeps answering throughout."""
    from tests.standins.kube_apiserver import KubeApiServer

    with KubeApiServer(quiet_bookmarks=False) as kube:
        world = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube,
                           kube_overrides={"watch_stale_after_seconds": BOUND, "watch_seconds": 30})
        try:
            ip = "127.0.0.94"
            world.add_pod("team-a", "web-q", "web", ip)
            assert imds_credentials(world.url, ip)[0] == 200
            watches_before = dict(kube.watch_calls)
            session = source_session("127.0.0.1")
            start = time.monotonic()
            worst = 0.0
            while time.monotonic() - start < 3 * BOUND:
                r = session.get(f"{world.url}/readyz", timeout=5)
                assert r.status_code == 200, r.text
                ages = [world.ctx.watcher.freshness.age(k) or 0.0 for k in ("namespaces", "serviceaccounts", "pods")]
                worst = max(worst, *ages)
                time.sleep(0.05)
            assert worst < BOUND
            assert imds_credentials(world.url, ip)[0] == 200
            # the quiet watches were ended by the server and re-opened (not kept alive by bookmarks or events)
            assert all(kube.watch_calls[k] > watches_before[k] for k in ("namespaces", "serviceaccounts"))
        finally:
            world.close()


@pytest.mark.parametrize(("watch_seconds", "bound", "period"), [(300, 30, 15), (4, 10, 4), (30, 1.5, 1), (300, 45, 22)])
def test_watch_requests_end_inside_half_the_bound(watch_seconds: int, bound: float, period: int) -> None:
    """Each watch request's `timeoutSeconds` (whole seconds) is at most half the bound, whatever `watch_seconds`
    says, and reads wait twice that: a quiet watch is ended by the server (a sign of life) long before the bound."""
    from kagiya.config import load_settings

    kube = load_settings(overrides={"kube": {"watch_seconds": watch_seconds, "watch_stale_after_seconds": bound}},
                         env={}).section("kube")
    assert kube.watch_period_seconds == period and period <= max(1, bound / 2)
    assert kube.watch_read_timeout_seconds == 2 * period


def test_a_bound_a_quiet_watch_could_trip_is_refused() -> None:
    from kagiya.config import load_settings
    from kagiya.errors import ConfigError

    with pytest.raises(ConfigError, match="watch_stale_after_seconds must be at least 1.5"):
        load_settings(overrides={"kube": {"watch_stale_after_seconds": 1}}, env={})
