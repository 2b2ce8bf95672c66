"""The HTTP front: whole requests before a handler thread, deadlines, size limits, connection caps, and a
Kubernetes `Status` body on every answer the front gives itself."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.serving.conftest import FrontServer, parse, read_until_close

STATIC = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "dev-token-0002"}}


def assert_status(answer: bytes, code: int) -> dict[str, Any]:
    status, headers, body = parse(answer)
    assert status == code, answer[:300]
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["message"]
    return body


def test_keep_alive_requests_reach_the_app(serve: Callable[..., FrontServer]) -> None:
    server = serve()
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
        resp = session.post(f"{server.url}/authn/tokenreviews", json=STATIC, timeout=5)
    assert resp.json()["status"]["user"]["username"] == "bob"


def test_chunked_body_within_the_limit_reaches_the_app(serve: Callable[..., FrontServer]) -> None:
    server = serve()
    payload = json.dumps(STATIC).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 7]), payload[i:i + 7]) for i in range(0, len(payload), 7))
    answer = server.raw(b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    status, _, body = parse(answer)
    assert status == 200 and body["status"]["user"]["username"] == "bob"


def test_chunked_body_over_the_limit_is_413_not_truncated(serve: Callable[..., FrontServer],
                                                          client: Any) -> None:
    """Issue 16.3: a chunked POST /v1/secrets/encrypt past max_request_bytes is refused whole."""
    server = serve(max_body_bytes=4096)
    data = {f"k{i}": "v" * 20 for i in range(400)}
    payload = json.dumps({"data": data}).encode()
    assert len(payload) > 4096
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 1000]), payload[i:i + 1000])
                      for i in range(0, len(payload), 1000))
    answer = server.raw(b"POST /v1/secrets/encrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-0001\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    body = assert_status(answer, 413)
    assert body["reason"] == "RequestEntityTooLarge" and "4096" in body["message"]


def test_content_length_over_the_limit_is_413_before_the_body(serve: Callable[..., FrontServer]) -> None:
    server = serve(max_body_bytes=4096)
    answer = server.raw(b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n")
    assert_status(answer, 413)


@pytest.mark.parametrize(("request_bytes", "code", "reason"), [
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "RequestURITooLong"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431, "RequestHeaderFieldsTooLarge"),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(40)) + b"\r\n", 431,
     "RequestHeaderFieldsTooLarge"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400, "BadRequest"),
    (b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "BadRequest"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "BadRequest"),
    (b"GARBAGE\r\n\r\n", 400, "BadRequest"),
    (b"GET /healthz HTTP/2.0\r\n\r\n", 505, "HTTPVersionNotSupported"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "BadRequest"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "BadRequest"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400, "BadRequest"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "NotImplemented"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "BadRequest"),
], ids=["long-uri", "big-header", "many-headers", "nul-header", "nul-target", "folding", "garbage", "http2",
        "cl-and-te", "two-lengths", "signed-length", "gzip-te", "bad-chunk"])
def test_the_fronts_own_refusals_are_status_bodies(serve: Callable[..., FrontServer], request_bytes: bytes,
                                                   code: int, reason: str) -> None:
    server = serve(max_uri_bytes=2048, max_header_bytes=4096, max_headers=32)
    assert assert_status(server.raw(request_bytes), code)["reason"] == reason


def test_header_deadline_counts_from_the_first_byte_not_the_last(serve: Callable[..., FrontServer]) -> None:
    """A client trickling its headers does not extend the deadline: 408 at ~the header timeout."""
    server = serve(header_timeout_seconds=0.6)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(20):
            try:
                s.sendall(b"X: y\r\n")
            except OSError:
                break
            time.sleep(0.1)
        answer = read_until_close(s)
        elapsed = time.monotonic() - started
    assert_status(answer, 408)
    assert elapsed < 2.5


def test_body_deadline(serve: Callable[..., FrontServer]) -> None:
    server = serve(body_timeout_seconds=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"")
        started = time.monotonic()
        answer = read_until_close(s)
    assert_status(answer, 408)
    assert time.monotonic() - started < 2


def test_idle_keep_alive_connection_is_closed_quietly(serve: Callable[..., FrontServer]) -> None:
    server = serve(keepalive_timeout_seconds=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        assert parse(first)[0] == 200
        assert read_until_close(s) == b""  # closed after the idle timeout, no 408 that a client could misread


def test_per_source_connection_cap(serve: Callable[..., FrontServer]) -> None:
    server = serve(max_connections_per_source=4, max_connections=10)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        for s in held:  # the server has accepted all four before the fifth arrives
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert parse(s.recv(65536))[0] == 200
        refused = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        body = assert_status(refused, 503)
        assert "too many connections" in body["message"]
        # another source address still gets in: the cap is per source
        with socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.2", 0)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert parse(read_until_close(s))[0] == 200
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while server.front.total and time.monotonic() < deadline:
        time.sleep(0.02)
    assert parse(server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))[0] == 200


def test_overload_answers_503_with_retry_after() -> None:
    """Past threads + max_queued_requests complete requests waiting, the front answers 503 at once."""
    gate = threading.Event()

    def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        gate.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    server = FrontServer(slow_app, {"threads": 1, "max_queued_requests": 1}, 1024)
    try:
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        deadline = time.monotonic() + 5
        while server.front.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        answer = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = assert_status(answer, 503)
        assert parse(answer)[1]["retry-after"] == "1" and body["reason"] == "ServiceUnavailable"
        gate.set()
        for s in socks:
            assert read_until_close(s).endswith(b"done")
            s.close()
    finally:
        gate.set()
        server.stop()


def test_client_headers_cannot_set_the_peer_certificate(serve: Callable[..., FrontServer]) -> None:
    """`SSL_CLIENT_CERT` comes only from the TLS socket: header spellings with `_` are dropped, `-` ones become
    HTTP_SSL_CLIENT_CERT."""
    from kagiya.serving.http1 import RequestHead
    from kagiya.serving.wsgi import build_environ

    head = RequestHead("GET", "/x", "HTTP/1.1", headers=[("SSL_CLIENT_CERT", "forged"), ("SSL-Client-Cert", "f2")])
    environ = build_environ(head, b"", scheme="https", server=("h", 1), peer=("p", 2), peer_cert_pem=None)
    assert "SSL_CLIENT_CERT" not in environ and environ["HTTP_SSL_CLIENT_CERT"] == "f2"


def test_shutdown_finishes_a_request_being_received_and_closes_idle_ones(serve: Callable[..., FrontServer]) -> None:
    import asyncio

    server = serve()
    payload = json.dumps(STATIC).encode()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        busy.sendall(b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload)
                     + payload[:10])
        time.sleep(0.2)
        stopping = asyncio.run_coroutine_threadsafe(server.front.shutdown(), server.loop)
        assert read_until_close(idle) == b""  # idle: closed at once
        busy.sendall(payload[10:])
        status, headers, body = parse(read_until_close(busy))
        assert status == 200 and body["status"]["user"]["username"] == "bob"
        assert headers["connection"] == "close"
        stopping.result(10)
    finally:
        idle.close()
        busy.close()


def test_the_fronts_refusals_and_connections_show_on_metrics(serve: Callable[..., FrontServer]) -> None:
    server = serve(max_uri_bytes=1024)
    assert_status(server.raw(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n"), 414)
    assert_status(server.raw(b"GARBAGE\r\n\r\n"), 400)
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'kagiya_front_refusals_total{code="414"} 1.0' in text
    assert 'kagiya_front_refusals_total{code="400"} 1.0' in text
    assert "kagiya_front_connections 1.0" in text  # the scrape's own connection


@pytest.mark.parametrize(("key", "value"), [("threads", "0"), ("header_timeout_seconds", "0"),
                                            ("max_connections_per_source", "5000"), ("event_loop", "trio")])
def test_serving_settings_are_checked(key: str, value: str) -> None:
    from kagiya.config import load_settings
    from kagiya.errors import ConfigError

    with pytest.raises(ConfigError, match=key if key != "event_loop" else "serving.event_loop"):
        load_settings(env={f"KAGIYA_SERVING_{key.upper()}": value})


def test_oversized_heads_are_refused_before_they_end(serve: Callable[..., FrontServer]) -> None:
    """414/431 as soon as the buffered head passes the limit: the client need not finish (nor close) first."""
    server = serve(max_uri_bytes=1024, max_header_bytes=2048)
    for partial, code in ((b"GET /" + b"a" * 1500, 414),
                          (b"GET / HTTP/1.1\r\nX: " + b"b" * 4000, 431)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(partial)
            assert_status(read_until_close(s), code)


def test_pipelined_requests_are_answered_in_order(serve: Callable[..., FrontServer]) -> None:
    server = serve()
    payload = json.dumps(STATIC).encode()
    both = (b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (len(payload), payload))
    answer = server.raw(both)
    first, _, rest = answer.partition(b"HTTP/1.1 404")
    assert parse(first)[0] == 200 and b'"username":"bob"' in first
    assert b'"reason":"NotFound"' in rest


def test_expect_continue_gets_100_before_the_body(serve: Callable[..., FrontServer]) -> None:
    server = serve()
    payload = json.dumps(STATIC).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(payload))
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(payload)
        assert parse(read_until_close(s))[0] == 200


def test_bodies_being_received_are_bounded_in_total(serve: Callable[..., FrontServer]) -> None:
    """Slow uploads cannot exhaust memory: past max_buffered_body_bytes announced, a new body gets 503."""
    server = serve(max_buffered_body_bytes=2 * 1024 * 1024)
    big = b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    try:
        for s in held:
            s.sendall(big + b"{")
        time.sleep(0.2)
        body = assert_status(server.raw(big), 503)
        assert "request bodies" in body["message"]
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while server.front.buffered and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.front.buffered == 0  # released when those connections went away
    payload = json.dumps(STATIC).encode()
    ok = server.raw(b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(payload), payload))
    assert parse(ok)[0] == 200 and server.front.buffered == 0


def test_two_hundred_connects_while_the_loop_is_busy_are_all_queued(serve: Callable[..., FrontServer]) -> None:
    """200 pods connecting at once must all be queued by the kernel, not have SYNs dropped (retried a second later,
    past botocore's 1 s IMDS timeout): asyncio re-listens with a backlog of 100 unless the front passes its own."""
    server = serve()
    busy, free = threading.Event(), threading.Event()
    server.loop.call_soon_threadsafe(lambda: (busy.set(), time.sleep(1.5), free.set()))  # nothing accepted meanwhile
    assert busy.wait(5)
    conns: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(200):
            s = socket.socket()
            conns.append(s)
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", server.port))
            except OSError:
                refused += 1
    finally:
        for s in conns:
            s.close()
    assert refused == 0
    assert free.wait(5)
    deadline = time.monotonic() + 10  # let the front accept and close them all before it is stopped
    time.sleep(0.3)
    while server.front.total and time.monotonic() < deadline:
        time.sleep(0.05)
