"""Adversarial review of the HTTP front (issue 16): desync between a lenient proxy and the front, app-controlled
response heads, HTTP/1.0 persistence, and clients that never read what they asked for."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.serving.conftest import FrontServer, parse, read_until_close
from tests.serving.test_front import assert_status

BIG = 8 * 1024 * 1024
GATE = threading.Event()
CALLS = {"/mid": 0}


def raw_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A plain WSGI app whose answer the test picks with the path (`/big`, `/inject`, `/latin`, ...)."""
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"x" * BIG]
    if path == "/inject":
        start_response("302 Found", [("Location", "/a\r\nSet-Cookie: session=attacker")])
        return [b""]
    if path == "/latin":
        start_response("200 OK", [("X-Name", "caf\u00e9 \u2603")])
        return [b"ok"]
    if path == "/mid":
        CALLS["/mid"] += 1
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"m" * 1024 * 1024]
    if path == "/nocontent":
        start_response("204 No Content", [("Content-Length", "1")])
        return [b"x"]  # a body the app should not have given: never on the wire
    if path == "/wait":
        GATE.wait(10)
    if path == "/addr":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_ADDR"].encode()]
    if path == "/status":
        start_response("200 OK\r\nX-Injected: 1", [])
        return [b"ok"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def front() -> Any:
    servers: list[FrontServer] = []

    def make(**serving: Any) -> FrontServer:
        server = FrontServer(raw_app, serving, 4096)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_a_client_that_never_reads_is_dropped_at_the_write_deadline_after_close(front: Callable[..., FrontServer]
                                                                               ) -> None:
    """`Connection: close` + never reading: the closed transport must not keep an 8 MB answer (and an uncounted
    socket) forever; it is aborted at the write deadline and counted against the caps until then."""
    server = front(write_timeout_seconds=0.5)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", server.port))
    try:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        assert server.front.total == 1  # still counted while its answer is unsent
        time.sleep(1.2)
        received = len(read_until_close(s))
    finally:
        s.close()
    assert received < BIG // 2
    assert server.front.total == 0 and not server.front.per_source


@pytest.mark.parametrize("path", ["/inject", "/latin", "/status"])
def test_a_response_head_the_app_got_wrong_is_a_500_not_an_injection_or_a_hang(
        front: Callable[..., FrontServer], path: str) -> None:
    server = front()
    answer = server.raw(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode(), timeout=3)
    assert answer, "no answer: the connection hung"
    status, headers, body = parse(answer)
    assert status == 500 and body["kind"] == "Status"
    assert b"Set-Cookie" not in answer and b"X-Injected" not in answer


@pytest.mark.parametrize("chunked", [
    b"5\n\r\nhello\r\n0\r\n\r\n",  # a bare LF before the CRLF of a chunk-size line
    b"5;a\nb\r\nhello\r\n0\r\n\r\n",  # a bare LF inside a chunk extension
    b"5\r\nhello\r\n0\r\nX: a\nContent-Length: 4\r\n\r\n",  # a bare LF inside a trailer
], ids=["size-lf", "extension-lf", "trailer-lf"])
def test_chunk_lines_with_a_bare_lf_are_refused(front: Callable[..., FrontServer], chunked: bytes) -> None:
    server = front()
    answer = server.raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert_status(answer, 400)


def test_chunk_extensions_and_trailers_are_accepted(front: Callable[..., FrontServer]) -> None:
    server = front()
    answer = server.raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                        b"5;name=\"v\"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")


def test_an_empty_transfer_encoding_is_not_ignored(front: Callable[..., FrontServer]) -> None:
    """`Transfer-Encoding:` (empty) next to a Content-Length: a proxy may take either framing, so neither is used."""
    server = front()
    answer = server.raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc")
    assert_status(answer, 400)


def test_http10_keep_alive_is_confirmed(front: Callable[..., FrontServer]) -> None:
    server = front()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = s.recv(65536)
        assert parse_head(first).get("connection") == "keep-alive"
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")  # no keep-alive: answered, then closed
        second = read_until_close(s)
    assert second.startswith(b"HTTP/1.1 200 ") and parse_head(second).get("connection") == "close"


def parse_head(answer: bytes) -> dict[str, str]:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                                  b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"],
                         ids=["none", "two", "two-http10"])
def test_host_must_be_there_once(front: Callable[..., FrontServer], head: bytes) -> None:
    assert "Host" in assert_status(front().raw(head), 400)["message"]


def test_http10_gets_no_100_continue(front: Callable[..., FrontServer]) -> None:
    server = front()
    answer = server.raw(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in answer


def test_pipelined_requests_under_overload_get_one_503_and_a_close(front: Callable[..., FrontServer]) -> None:
    """Thousands of tiny pipelined requests while the pool is full: one 503, then the connection closes (before,
    each was answered by recursing once more through the loop callback, up to a RecursionError)."""
    server = front(threads=1, max_queued_requests=1)
    GATE.clear()
    busy = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        for s in busy:
            s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        deadline = time.monotonic() + 5
        while server.front.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        answer = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3000)
        assert answer.count(b"HTTP/1.1 503 ") == 1
        assert_status(answer, 503)
    finally:
        GATE.set()
        for s in busy:
            s.close()


def test_ipv4_clients_of_a_dual_stack_listener_are_plain_ipv4() -> None:
    """`::ffff:127.0.0.1` is `127.0.0.1` for REMOTE_ADDR (pods are found by IPv4 address) and for the caps."""
    server = FrontServer(raw_app, {}, 4096, host="::")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /addr HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).endswith(b"\r\n\r\n127.0.0.1")
            assert server.front.per_source == {"127.0.0.1": 1}
    finally:
        server.stop()


def test_one_byte_chunks_cost_about_their_bytes_in_memory(front: Callable[..., FrontServer]) -> None:
    """A body of one-byte chunks is counted as max_request_bytes against serving.max_buffered_body_bytes; kept
    as one object per chunk it would take ~40 times that (a few connections could then exhaust memory)."""
    import tracemalloc

    server = front()
    server.front.limits.max_body_bytes = 300_000
    chunks = b"1\r\nx\r\n" * 200_000
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            GATE.clear()  # the app holds the request (and its body) until the peak is read
            s.sendall(b"POST /wait HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      + chunks + b"0\r\n\r\n")
            deadline = time.monotonic() + 10
            while server.front.in_flight < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            _current, peak = tracemalloc.get_traced_memory()
            GATE.set()
            assert read_until_close(s).startswith(b"HTTP/1.1 200 ")
    finally:
        GATE.set()
        tracemalloc.stop()
    assert peak < 4_000_000, peak


def test_pipelined_requests_wait_while_the_client_does_not_read(front: Callable[..., FrontServer]) -> None:
    """Twenty pipelined requests for 1 MB answers, none read: the front runs the next one only once the client
    takes the previous answer, so at most one answer waits in the process (before: all twenty, 20 MB)."""
    server = front(write_timeout_seconds=1)
    CALLS["/mid"] = 0
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", server.port))
    with s:
        s.sendall(b"GET /mid HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        time.sleep(0.6)
        assert CALLS["/mid"] <= 5  # what the kernel socket buffers absorb, then one in the transport
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        time.sleep(1)
        assert read_until_close(s)  # dropped at the write deadline
    assert server.front.total == 0


def echo_target(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['PATH_INFO']}|{environ['QUERY_STRING']}".encode("latin-1")]


@pytest.mark.parametrize(("target", "seen"), [(b"http://h/echo?a=1", b"/echo|a=1"), (b"http://h?a=1", b"/|a=1"),
                                              (b"https://h:8443/e%63ho/%ff", b"/echo/\xff|")])
def test_absolute_form_targets_keep_path_and_query(target: bytes, seen: bytes) -> None:
    """PATH_INFO percent-decoded as latin-1 (PEP 3333), QUERY_STRING as sent; `http://h?a=1` kept its query."""
    server = FrontServer(echo_target, {}, 1024)
    try:
        answer = server.raw(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    finally:
        server.stop()
    assert answer.endswith(b"\r\n\r\n" + seen)


@pytest.mark.parametrize("field", [b"Transfer-Encoding: \x0bchunked", b"Transfer-Encoding: chunked\x0c",
                                   b"Content-Length: 3\x0b", b"X-Note: a\x01b", b"X-Note: a\x7fb"],
                         ids=["te-vt", "te-ff", "cl-vt", "soh", "del"])
def test_control_characters_in_header_fields_are_refused(front: Callable[..., FrontServer], field: bytes) -> None:
    """A coding or length padded with control characters reads differently to a lenient proxy in front."""
    answer = front().raw(b"POST / HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert_status(answer, 400)


def test_caps_and_reservations_are_released_however_a_connection_ends(front: Callable[..., FrontServer]) -> None:
    """Reset mid-body, gone while its request runs, refused (400), idle then reset, closed with its answer unread:
    afterwards no per-source count, buffered body or in-flight request is left over."""
    import struct

    server = front(write_timeout_seconds=0.5, max_connections_per_source=8)
    linger = struct.pack("ii", 1, 0)  # close() sends RST
    GATE.clear()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
    socks[0].sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\nabc")
    socks[1].sendall(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    socks[2].sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\r\n\r\n")
    socks[3].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    socks[4].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    socks[4].sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        assert_status(read_until_close(socks[2]), 400)
        assert socks[3].recv(65536).startswith(b"HTTP/1.1 200 ")  # now idle
        deadline = time.monotonic() + 5
        while server.front.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # 5: the refused connection lingers (reading and discarding) until its client closes it
        assert server.front.buffered == 4003 and server.front.per_source == {"127.0.0.1": 5}
        for s in socks[:4]:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
    finally:
        GATE.set()
    deadline = time.monotonic() + 5
    while (server.front.per_source or server.front.buffered or server.front.in_flight) and time.monotonic() < deadline:
        time.sleep(0.02)
    socks[4].close()
    assert (server.front.per_source, server.front.buffered, server.front.in_flight, server.front.total) == ({}, 0, 0, 0)


@pytest.mark.parametrize("line", [b"G\xc3\x89T / HTTP/1.1", b"GET /\xc3\xa9 HTTP/1.1", b"GET /a\x7f HTTP/1.1",
                                  b"GET /\tx HTTP/1.1", b"GET\t/ HTTP/1.1", b"GET / HTTP/1.1 ",
                                  b"GET host:443 HTTP/1.1"],
                         ids=["method-utf8", "target-utf8", "target-del", "target-tab", "tab-separator",
                              "trailing-space", "authority-form"])
def test_request_lines_with_control_or_non_ascii_bytes_are_refused(front: Callable[..., FrontServer],
                                                                    line: bytes) -> None:
    assert_status(front().raw(line + b"\r\nHost: x\r\n\r\n"), 400)


def test_head_204_and_304_answers_carry_no_body_and_keep_the_stream_in_step(front: Callable[..., FrontServer]) -> None:
    server = front()
    answer = server.raw(b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\nGET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, second, third = answer.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and first.endswith(b"\r\n\r\n") and b"Content-Length: %d" % BIG in first
    assert second.startswith(b"204 ") and second.endswith(b"\r\n\r\n") and b"Content-Length" not in second
    assert third.startswith(b"200 ") and third.endswith(b"\r\n\r\nok")
