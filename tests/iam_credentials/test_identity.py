"""Caller identification rules on the real pod index (kagiya.kube.KubeIndex), and IMDSv2 session tokens."""

from __future__ import annotations

from typing import Any

import pytest

from kagiya.errors import NotFound, Unauthorized
from kagiya.iam.identity import CallerIdentifier, CallerRefused, SessionTokens
from kagiya.kube import KubeIndex
from tests.iam_credentials.conftest import pod_json


def identifier(index: KubeIndex, reviews: dict[str, dict[str, Any]] | None = None, **kw: Any) -> CallerIdentifier:
    def reviewer(token: str, audiences: Any) -> dict[str, Any]:
        return (reviews or {}).get(token, {"authenticated": False})

    return CallerIdentifier(index, reviewer, audiences=("kagiya",), **kw)


def test_owner_change_is_reported_even_without_a_delete_event() -> None:
    index = KubeIndex()
    changes: list[tuple[str, str]] = []
    ident = identifier(index, on_owner_change=lambda ip, old: changes.append((ip, old)))
    a = pod_json("ns", "a", "sa", "10.1.0.5")
    index.apply("pods", "ADDED", a)
    assert ident.from_ip("10.1.0.5").pod_uid == "uid-ns-a"
    index.apply("pods", "DELETED", a)
    index.apply("pods", "ADDED", pod_json("ns", "b", "sa", "10.1.0.5"))
    assert ident.from_ip("10.1.0.5").pod_uid == "uid-ns-b"
    assert changes == [("10.1.0.5", "uid-ns-a")]


def test_ip_rules() -> None:
    index = KubeIndex()
    ident = identifier(index)
    with pytest.raises(NotFound):
        ident.from_ip("10.1.0.1")
    index.apply("pods", "ADDED", pod_json("ns", "host", "sa", "10.1.0.2", host_network=True))
    with pytest.raises(CallerRefused) as info:
        ident.from_ip("10.1.0.2")
    assert info.value.why == "host-network"
    index.apply("pods", "ADDED", pod_json("ns", "p", "sa", "10.1.0.3", phase="Pending"))
    assert ident.from_ip("10.1.0.3").pod_name == "p"  # init containers run while Pending: served
    index.apply("pods", "MODIFIED", pod_json("ns", "p", "sa", "10.1.0.3", phase="Unknown", rv="2"))
    with pytest.raises(CallerRefused, match="not running"):
        ident.from_ip("10.1.0.3")
    index.apply("pods", "ADDED", pod_json("ns", "done", "sa", "10.1.0.4", phase="Succeeded"))
    index.apply("pods", "ADDED", pod_json("ns", "live", "sa", "10.1.0.4"))
    assert ident.from_ip("10.1.0.4").pod_name == "live"  # a finished pod does not make the IP ambiguous
    index.apply("pods", "ADDED", pod_json("ns", "twin", "sa", "10.1.0.4"))
    with pytest.raises(CallerRefused) as info:
        ident.from_ip("10.1.0.4")
    assert info.value.why == "ambiguous-ip"
    off = identifier(index, allow_source_ip=False)
    with pytest.raises(Unauthorized):
        off.identify("10.1.0.4")


def review(username: str, audiences: list[str], pod: str = "web-1", uid: str = "uid-ns-web-1") -> dict[str, Any]:
    extra = {"authentication.kubernetes.io/pod-name": [pod], "authentication.kubernetes.io/pod-uid": [uid]}
    if not pod:
        extra = {}
    return {"authenticated": True, "audiences": audiences, "user": {"username": username, "extra": extra}}


def test_token_rules() -> None:
    index = KubeIndex()
    index.apply("pods", "ADDED", pod_json("ns", "web-1", "web", "10.2.0.1"))
    reviews = {
        "good": review("system:serviceaccount:ns:web", ["kagiya"]),
        "wrong-aud": review("system:serviceaccount:ns:web", ["https://kubernetes.default.svc"]),
        "user": review("alice", ["kagiya"]),
        "unbound": review("system:serviceaccount:ns:web", ["kagiya"], pod=""),
        "liar": review("system:serviceaccount:ns:other", ["kagiya"]),
    }
    ident = identifier(index, reviews)
    caller = ident.from_token("good")
    assert (caller.namespace, caller.pod_name, caller.service_account, caller.method) == ("ns", "web-1", "web", "token")
    assert caller.pod_ip == "10.2.0.1"
    # The token wins over the source IP.
    assert ident.identify("10.9.9.9", "good").pod_uid == "uid-ns-web-1"
    for token, match in (("wrong-aud", "audience"), ("user", "service account"), ("unbound", "bound to a pod"),
                         ("nope", "not accepted")):
        with pytest.raises(Unauthorized, match=match):
            ident.from_token(token)
    with pytest.raises(CallerRefused, match="does not match"):
        ident.from_token("liar")


def test_session_tokens_are_bound_to_the_pod_and_expire() -> None:
    now = [1_000_000.0]
    tokens = SessionTokens(clock=lambda: now[0])
    t = tokens.issue("uid-a", 60)
    tokens.check(t, "uid-a")
    with pytest.raises(Unauthorized, match="another pod"):
        tokens.check(t, "uid-b")
    kid, body, mac = t.split(".")
    with pytest.raises(Unauthorized, match="invalid"):
        tokens.check(kid + "." + body + "." + mac[::-1], "uid-a")
    with pytest.raises(Unauthorized, match="invalid"):
        SessionTokens().check(t, "uid-a")  # another process's key
    now[0] += 61
    with pytest.raises(Unauthorized, match="expired"):
        tokens.check(t, "uid-a")


def test_requests_before_the_index_synced_get_503_not_404(world: Any) -> None:
    from kagiya.kube import KubeIndex
    from tests.iam_credentials.conftest import imds_credentials

    world.ctx.kube = KubeIndex()  # a fresh worker whose watch has not listed yet
    status, body = imds_credentials(world.url, "127.0.0.40")
    assert status == 503 and "not synced" in body
