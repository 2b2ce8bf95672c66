"""Cached TokenReviews answered on the front's event loop (kagiya.inline): the same answer the app gives, counted
and logged the same way, still given while every handler thread waits on a hung identity provider, and never
for a request the app would answer differently (a miss, a bad body, an agent certificate, audited hits)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from kagiya.serving import connection
from tests.serving.conftest import FrontServer, parse
from tests.standins.oidc_issuer import OidcIssuer

URL = "/authn/tokenreviews"


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(client_id="kube") as idp:
        yield idp


@pytest.fixture
def settings(make_settings: Any, issuer: OidcIssuer, token_file: Any) -> Any:
    return make_settings({"authn": {
        "token_file": str(token_file), "review_timeout_seconds": 4, "failed_reviews_per_minute": 0,
        "providers": [{"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": ["kube"],
                       "jwks_min_refresh_seconds": 0}]}})


def review(token: str, api_version: str = "authentication.k8s.io/v1") -> bytes:
    return json.dumps({"apiVersion": api_version, "kind": "TokenReview", "spec": {"token": token}}).encode()


def post(server: FrontServer, body: bytes, headers: dict[str, str] | None = None,
         timeout: float = 10) -> requests.Response:
    return requests.post(server.url + URL, data=body, headers=headers or {}, timeout=timeout)


def metric(server: FrontServer, name: str, **labels: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_cached_review_is_answered_as_the_app_answers_it(serve: Callable[..., FrontServer],
                                                           issuer: OidcIssuer) -> None:
    inline, pool = serve(), serve(inline_answers=False)
    token = issuer.mint(sub="alice", groups=["dev"], expires_in=600)
    for api_version in ("authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"):
        first = post(pool, review(token, api_version))  # a miss: the app reviews it and caches the decision
        assert first.json()["status"]["authenticated"] is True
        answers = [post(server, review(token, api_version), {"X-Request-Id": "req-42"}) for server in (inline, pool)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].content == answers[1].content
        assert answers[0].json()["apiVersion"] == api_version
        user = answers[0].json()["status"]["user"]
        assert (user["username"], user["groups"]) == ("alice", ["dev"])
        for answer in answers:
            assert answer.headers["X-Request-Id"] == "req-42"
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["Content-Type"] == "application/json"
        assert {k.lower() for k in answers[0].headers} == {k.lower() for k in answers[1].headers}
    # a cached rejection too (the token file's answer for an unknown token), naming the same judge
    bad = review("not-a-token-anyone-issued")
    post(pool, bad)
    assert post(inline, bad).content == post(pool, bad).content


def test_inline_answers_are_counted_like_the_apps(serve: Callable[..., FrontServer], issuer: OidcIssuer) -> None:
    server = serve()
    token = issuer.mint(sub="bob", groups=["dev"], expires_in=600)
    post(server, review(token))
    before = (metric(server, "kagiya_authn_token_reviews_total", provider="oidc/corp", outcome="authenticated"),
              metric(server, "kagiya_http_requests_total", route=URL, method="POST", status="200"))
    for _ in range(5):
        assert post(server, review(token)).json()["status"]["authenticated"] is True
    after = (metric(server, "kagiya_authn_token_reviews_total", provider="oidc/corp", outcome="authenticated"),
             metric(server, "kagiya_http_requests_total", route=URL, method="POST", status="200"))
    assert after[0] - before[0] == 5
    assert after[1] - before[1] == 5


@pytest.mark.slow
def test_cached_reviews_keep_flowing_while_every_handler_thread_waits_on_a_hung_idp(
        serve: Callable[..., FrontServer], issuer: OidcIssuer) -> None:
    """The hot path does not depend on a free thread: with both handler threads held by reviews that wait on an
    identity provider that stopped answering, a cached user still authenticates at once; without inline answers
    the same review waits behind them (the control shows the test can fail)."""
    inline, pool = serve(threads=2), serve(threads=2, inline_answers=False)
    cached = issuer.mint(sub="carol", groups=["dev"], expires_in=600)
    assert post(inline, review(cached)).json()["status"]["authenticated"] is True
    issuer.delay = 3.0  # the issuer now takes 3 s to answer
    try:
        for server in (inline, pool):
            issuer.rotate()  # new kid: reviews of tokens signed with it must fetch the keys again
            stuck = [threading.Thread(target=post, args=(server, review(issuer.mint(sub=f"u{i}", expires_in=600))),
                                      daemon=True) for i in range(2)]
            for t in stuck:
                t.start()
            time.sleep(0.5)  # both handler threads are now waiting on the issuer
            t0 = time.monotonic()
            answer = post(server, review(cached))
            took = time.monotonic() - t0
            assert answer.json()["status"]["authenticated"] is True
            if server is inline:
                assert took < 0.5, f"a cached review waited {took:.2f}s for a handler thread"
            else:
                assert took > 1.0, "control: without inline answers the review waits for a free handler thread"
            for t in stuck:
                t.join(10)
    finally:
        issuer.delay = 0.0


def test_requests_the_app_must_answer_are_not_answered_inline(serve: Callable[..., FrontServer],
                                                              issuer: OidcIssuer) -> None:
    server = serve()
    token = issuer.mint(sub="dave", expires_in=600)
    post(server, review(token))
    not_json = post(server, b"{" + review(token))
    assert not_json.status_code == 400 and not_json.json()["kind"] == "Status"
    wrong_kind = post(server, review(token).replace(b"TokenReview", b"SubjectAccessReview"))
    assert wrong_kind.status_code == 400 and "kind must be TokenReview" in wrong_kind.json()["message"]
    nul_query = requests.post(server.url + URL + "?timeout=%00", data=review(token), timeout=10)
    assert nul_query.status_code == 400 and "NUL" in nul_query.json()["message"]
    unknown = requests.post(server.url + "/authn/oidc/nobody/tokenreviews", data=review(token), timeout=10)
    assert unknown.status_code == 404 and unknown.json()["kind"] == "Status"
    routed = requests.post(server.url + "/authn/oidc/corp/tokenreviews", data=review(token), timeout=10)
    assert routed.json()["status"]["authenticated"] is True  # the path route's own cache entry, then inline
    assert requests.post(server.url + "/authn/oidc/corp/tokenreviews", data=review(token),
                         timeout=10).content == routed.content


def test_pipelined_cached_reviews_are_answered_in_order_without_holding_the_loop(
        serve: Callable[..., FrontServer], issuer: OidcIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 pipelined cached reviews in one write: every one answered, in order, on one connection (answered
    in a loop, not by recursion), while another client's /healthz is served between the batches."""
    server = serve()
    tokens = [issuer.mint(sub=f"p{i}", expires_in=600) for i in range(3)]
    for token in tokens:
        post(server, review(token))
    count = 3000
    payload = b"".join(
        b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: n%d\r\nContent-Length: %d\r\n\r\n%s"
        % (URL.encode(), i, len(review(tokens[i % 3])), review(tokens[i % 3])) for i in range(count))
    calls = {"batches": 0}
    original = connection.Connection._process

    def counting(self: connection.Connection) -> None:
        calls["batches"] += 1
        original(self)

    monkeypatch.setattr(connection.Connection, "_process", counting)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        sender.start()
        health = requests.get(server.url + "/healthz", timeout=5)
        assert health.status_code == 200
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < count:
            chunk = s.recv(1 << 20)
            assert chunk, f"closed after {data.count(b'HTTP/1.1 200 OK')} answers"
            data += chunk
        sender.join(10)
    ids = re.findall(rb"X-Request-Id: n(\d+)", data)
    assert [int(i) for i in ids] == list(range(count))
    subs = [json.loads(body)["status"]["user"]["username"] for body in re.findall(rb"\r\n\r\n(\{.*?\}\}\})", data)]
    assert subs[:6] == ["p0", "p1", "p2", "p0", "p1", "p2"]
    assert calls["batches"] >= count // connection.INLINE_BATCH  # the loop came back between batches


def test_audited_cache_hits_go_through_the_app(make_settings: Any, issuer: OidcIssuer, token_file: Any) -> None:
    from kagiya import audit
    from kagiya.web import create_app

    app = create_app(make_settings({"authn": {
        "token_file": str(token_file), "audit_cache_hits": True,
        "providers": [{"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": ["kube"]}]}}))
    server = FrontServer(app, {}, app.config["MAX_CONTENT_LENGTH"])
    try:
        token = issuer.mint(sub="erin", expires_in=600)
        for _ in range(3):
            assert post(server, review(token)).json()["status"]["authenticated"] is True
        store = app.extensions["kagiya.store"]
        events, _ = audit.query(store, audit.AuditQuery(actor="erin", action="authn.tokenreview"))
        assert len(events) == 3
        assert sum(1 for e in events if e["details"].get("cached")) == 2
    finally:
        server.stop()


@pytest.mark.slow
def test_an_answer_too_big_to_take_holds_the_connection(serve: Callable[..., FrontServer],
                                                        issuer: OidcIssuer) -> None:
    """A client that pipelines cached reviews and reads nothing: the front stops reading from it once its
    answers back up (no unbounded buffer), and the connection is dropped at the write deadline."""
    server = serve(write_timeout_seconds=2)
    token = issuer.mint(sub="frank", groups=["g" * 200] * 40, expires_in=600)
    post(server, review(token))
    one = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (URL.encode(), len(review(token)),
                                                                           review(token))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.setblocking(False)
        blocked_since = None
        pending = memoryview(one * 50)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # send until the front stops reading (our sends block)
            try:
                pending = pending[s.send(pending):] or memoryview(one * 50)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 0.2:
                    break
                time.sleep(0.01)
        assert blocked_since is not None, "the front kept reading from a client that takes no answers"
        assert [c.held for c in server.front.connections] == [True]
        time.sleep(3.0)
        assert not server.front.connections, "the connection that never read was not dropped"
    assert parse(server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))[0] == 200


def test_a_large_body_is_parsed_by_the_pool_not_the_loop(serve: Callable[..., FrontServer], issuer: OidcIssuer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A body past MAX_INLINE_BODY_BYTES (padding a cached review) is not parsed on the loop, where it would
    hold every other connection; the pool answers it the same."""
    from kagiya import inline
    from kagiya.authn import api

    server = serve()
    token = issuer.mint(sub="gina", expires_in=600)
    post(server, review(token))
    padded = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token},
                         "metadata": {"annotations": {"pad": "x" * (inline.MAX_INLINE_BODY_BYTES + 1)}}}).encode()
    parsed: list[int] = []  # bodies the loop-side handler parsed
    real = api.json_object

    def watching(data: bytes) -> Any:
        parsed.append(len(data))
        return real(data)

    monkeypatch.setattr(api, "json_object", watching)
    answer = post(server, padded)
    assert answer.json()["status"]["authenticated"] is True
    assert parsed == []  # the loop-side handler never saw it
    post(server, review(token))
    assert parsed == [len(review(token))]  # the small one was parsed on the loop
