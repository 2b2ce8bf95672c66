"""Issue 12.1 / 18.4: a cached positive TokenReview never outlives the pod its projected token is bound to.

kagiya keeps positive TokenReviews for `credentials.token_review_cache_seconds` (60 s). A token bound to a pod
that the index has seen deleted is refused at once (403, a Status naming the reason), whatever the cache or the
API server's own caches say; while the index is stale, the review cache is not trusted: every request is a live
TokenReview, so the API server (which checks the bound pod still exists) decides.
"""

from __future__ import annotations

from typing import Any

import pytest

from kagiya.errors import Unauthorized, UpstreamUnavailable
from kagiya.iam.identity import CallerIdentifier, CallerRefused
from kagiya.kube import KubeIndex
from kagiya.kube.freshness import WatchFreshness
from tests.iam_credentials.conftest import pod_json, source_session

SUBJECT = "system:serviceaccount:ns:web"


class Reviewer:
    """A TokenReview answerer that counts calls; `vouch` decides whether it still says yes."""

    def __init__(self) -> None:
        self.calls = 0
        self.vouch = True
        self.down = False

    def __call__(self, token: str, audiences: Any) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise UpstreamUnavailable("the Kubernetes API server is unreachable")
        if not self.vouch:
            return {"authenticated": False}
        extra = {"authentication.kubernetes.io/pod-name": ["web-1"],
                 "authentication.kubernetes.io/pod-uid": ["uid-ns-web-1"]}
        return {"authenticated": True, "audiences": ["kagiya"], "user": {"username": SUBJECT, "extra": extra}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[KubeIndex, Reviewer, CallerIdentifier, Clock]:
    index = KubeIndex()
    clock = Clock()
    index.freshness = WatchFreshness(30.0, clock=clock)
    for kind in KubeIndex.KINDS:
        index.freshness.alive(kind)
    index.apply("pods", "ADDED", pod_json("ns", "web-1", "web", "10.3.0.1"))
    reviewer = Reviewer()
    ident = CallerIdentifier(index, reviewer, audiences=("kagiya",), review_cache_seconds=60.0, clock=clock)
    return index, reviewer, ident, clock


def test_cached_review_of_a_deleted_pod_is_refused_at_once() -> None:
    index, reviewer, ident, _ = setup()
    assert ident.from_token("tok").pod_name == "web-1"
    assert ident.from_token("tok").pod_name == "web-1" and reviewer.calls == 1  # the cache serves the second
    index.apply("pods", "DELETED", pod_json("ns", "web-1", "web", "10.3.0.1"))
    # the API server (or its own cache) may still vouch for the token: the index has seen the delete, that wins
    for _ in range(3):
        with pytest.raises(CallerRefused) as info:
            ident.from_token("tok")
        assert info.value.why == "pod-deleted" and info.value.http_status == 403
        assert "ns/web-1" in info.value.message and "deleted" in info.value.message


def test_a_pod_the_index_has_not_seen_yet_is_served_on_a_live_review_only() -> None:
    index, reviewer, ident, _ = setup()
    index.apply("pods", "DELETED", pod_json("ns", "web-1", "web", "10.3.0.1"))
    index.apply("pods", "ADDED", pod_json("ns", "web-1", "web", "10.3.0.2", uid="uid-new"))
    # a token naming a uid the index never listed (a pod newer than the index): each request asks the API server
    other = CallerIdentifier(KubeIndex(), reviewer, audiences=("kagiya",), review_cache_seconds=60.0)
    assert other.from_token("tok").pod_uid == "uid-ns-web-1"
    assert other.from_token("tok").pod_uid == "uid-ns-web-1"
    assert reviewer.calls == 2  # no cached answer for a pod the index cannot confirm
    reviewer.vouch = False
    with pytest.raises(Unauthorized):
        other.from_token("tok")


def test_a_stale_index_does_not_trust_the_review_cache() -> None:
    index, reviewer, ident, clock = setup()
    assert ident.from_token("tok").pod_name == "web-1"
    clock.now += 31  # no watch has shown life for longer than the bound: the index may miss the pod's delete
    assert ident.from_token("tok").pod_name == "web-1"
    assert reviewer.calls == 2  # a live TokenReview, not the cached one
    reviewer.vouch = False  # the API server says the bound pod is gone
    with pytest.raises(Unauthorized):
        ident.from_token("tok")
    reviewer.vouch, reviewer.down = True, True  # the API server cannot be asked either: fail closed
    with pytest.raises(UpstreamUnavailable):
        ident.from_token("tok")
    reviewer.down = False
    for kind in KubeIndex.KINDS:
        index.freshness.alive(kind)  # the watch is back: the cache is trusted again
    calls = reviewer.calls
    ident.from_token("tok")
    ident.from_token("tok")
    assert reviewer.calls == calls + 1


def test_deleted_pod_token_over_http(kube_world: Any) -> None:
    """Through the container-credentials endpoint, the real watcher and the stand-in's TokenReview."""
    world = kube_world
    a = world.add_pod("team-a", "web-a", "web", "127.0.0.93")
    token = world.pod_token(a)
    s = source_session("127.0.0.1")
    r = s.get(f"{world.url}/v1/credentials", headers={"Authorization": token}, timeout=5)
    assert r.status_code == 200, r.text
    world.delete_pod(a)  # returns once the index has seen the delete
    r = s.get(f"{world.url}/v1/credentials", headers={"Authorization": token}, timeout=5)
    assert r.status_code in (401, 403), r.text
    assert r.json()["kind"] == "Status" and "AccessKeyId" not in r.text


def test_the_index_remembers_pods_it_saw_go_however_it_saw_it() -> None:
    """A DELETED event, a relist that no longer lists the pod (a delete missed during a gap), or the pod's name taken
    by a new uid: each tells the token path "deleted", not "not seen yet"."""
    index = KubeIndex()
    for name in ("a", "b", "c"):
        index.apply("pods", "ADDED", pod_json("ns", name, "web", ""))
    index.apply("pods", "DELETED", pod_json("ns", "a", "web", ""))
    index.replace("pods", [pod_json("ns", "c", "web", "", uid="uid-c2")])
    assert index.was_deleted("uid-ns-a") and index.was_deleted("uid-ns-b") and index.was_deleted("uid-ns-c")
    assert not index.was_deleted("uid-c2") and not index.was_deleted("uid-never-seen")
