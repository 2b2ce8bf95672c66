"""The HTTP front: one asyncio event loop reads whole requests, a bounded thread pool runs the WSGI app.

Why: a thread per connection (gunicorn's sync and gthread workers) lets a client that trickles one byte every
few seconds hold a handler thread; a few dozen such clients stop a replica. Here a slow client costs a socket
and a few kilobytes of buffer until its request is complete, within header/body deadlines and size limits, and
under a cap on connections per source address and in total. Only complete requests reach a handler thread, and
the answer is collected whole before the loop writes it, so a client that does not read holds no thread either.

Every response the front itself emits (400, 408, 413, 414, 431, 501, 503, 505) is a Kubernetes `Status` body.
TLS: the handshake runs on the loop with a deadline; the context comes from `kagiya.authn.mtls`'s reloading
cache on each connection (replaced certificate files apply to new connections), and a verified client
certificate reaches the app as `environ["SSL_CLIENT_CERT"]`, as it did under gunicorn.

Connections are asyncio Protocols (no coroutine per read) and deadlines are checked by one sweeper every
`SWEEP_SECONDS`, so the per-request cost on the loop stays small: the loop shares one interpreter lock with the
handler threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

from kagiya.errors import status_body
from kagiya.serving.http1 import (
    PHRASES,
    REASONS,
    ChunkedBody,
    FrontError,
    Limits,
    RequestHead,
    check_incomplete,
    parse_head,
)
from kagiya.serving.settings import ServingSettings
from kagiya.serving.wsgi import Response, WsgiApp, build_environ, call_app

log = logging.getLogger("kagiya.serving")
SWEEP_SECONDS = 0.1
_NO_BODY = ("1", "204", "304")
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Front:
    """Serve `app` on a listening socket until `shutdown()` (or SIGTERM/SIGINT under `serve_forever`)."""

    def __init__(self, app: WsgiApp, config: ServingSettings, *, max_body_bytes: int,
                 ssl_context: Callable[[], ssl.SSLContext] | None = None) -> None:
        self.app = app
        self.config = config
        self.ssl_context = ssl_context
        self.limits = Limits(config.max_uri_bytes, config.max_header_bytes, config.max_headers, max_body_bytes)
        self.pool = ThreadPoolExecutor(config.threads, thread_name_prefix="kagiya-handler")
        self.in_flight = 0  # requests handed to the pool and not answered yet (queued or running)
        self.per_source: dict[str, int] = {}
        self.connections: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self.handshaking: dict[str, int] = {}
        self._date = (0, b"")
        self._refusals: Any = None
        metrics = getattr(app, "extensions", {}).get("kagiya.metrics")
        if metrics is not None:  # kagiya's app: the front's own numbers next to the app's on /metrics
            from prometheus_client import Counter, Gauge

            self._refusals = metrics.get(Counter, "kagiya_front_refusals_total",
                                         "Requests and connections the HTTP front refused itself, by status code.",
                                         ("code",))
            metrics.get(Gauge, "kagiya_front_connections", "Open client connections.").set_function(
                lambda: len(self.connections))
            metrics.get(Gauge, "kagiya_front_requests_in_flight",
                        "Complete requests handed to the handler pool and not answered yet.").set_function(
                lambda: self.in_flight)

    def refused(self, code: int) -> None:
        if self._refusals is not None:
            self._refusals.labels(str(code)).inc()

    @property
    def total(self) -> int:
        return len(self.connections)

    async def start(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        if self.ssl_context is None:
            self.server = await self.loop.create_server(lambda: Connection(self), sock=sock)
        else:
            self._listener = sock
            self._acceptor = self.loop.create_task(self._accept_tls(sock))
        self._sweeper = self.loop.create_task(self._sweep())

    def over_cap(self, source: str) -> bool:
        config = self.config
        return (self.closing or self.total + sum(self.handshaking.values()) >= config.max_connections
                or self.per_source.get(source, 0) + self.handshaking.get(source, 0)
                >= config.max_connections_per_source)

    async def _accept_tls(self, listener: socket.socket) -> None:
        """TLS: accept here so each connection gets the current (reloaded) context; connections over the caps are
        closed before any handshake work."""
        assert self.loop is not None
        while not self.closing:
            try:
                sock, peer = await self.loop.sock_accept(listener)
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.05)
                continue
            source = str(peer[0])
            if self.over_cap(source):
                self.refused(503)
                sock.close()
                continue
            task = self.loop.create_task(self._handshake(sock, source))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, sock: socket.socket, source: str) -> None:
        assert self.loop is not None and self.ssl_context is not None
        self.handshaking[source] = self.handshaking.get(source, 0) + 1
        try:
            await self.loop.connect_accepted_socket(
                lambda: Connection(self), sock, ssl=self.ssl_context(),
                ssl_handshake_timeout=self.config.handshake_timeout_seconds)
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError, asyncio.CancelledError):
            sock.close()
        finally:
            left = self.handshaking[source] - 1
            if left:
                self.handshaking[source] = left
            else:
                del self.handshaking[source]

    async def serve_forever(self, sock: socket.socket) -> None:
        await self.start(sock)
        assert self.loop is not None
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: finishing in-flight requests")
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, close idle connections, finish requests already started (receiving within their
        deadlines, or running) up to the graceful timeout, answer them with `Connection: close`, close the rest."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.wait([self._acceptor], timeout=2)
            self._listener.close()
        for task in list(self._handshakes):
            task.cancel()
        if self._handshakes:
            await asyncio.wait(list(self._handshakes), timeout=2)
        for conn in list(self.connections):
            if conn.state in ("idle", "head") and not conn.buffer:
                conn.close()
        deadline = time.monotonic() + self.config.graceful_timeout_seconds
        while self._busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _busy(self) -> bool:
        """A request is being received (within its deadlines), run, or answered."""
        return bool(self.in_flight) or any(
            conn.state in ("body", "handling") or (conn.state == "head" and conn.buffer)
            for conn in self.connections)

    async def _sweep(self) -> None:
        """Enforce every connection's deadline (headers, body, idle, write); handshakes have their own."""
        assert self.loop is not None
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = self.loop.time()
            for conn in list(self.connections):
                if conn.write_deadline is not None and now >= conn.write_deadline:
                    conn.close(abort=True)  # a client that does not read its answer
                elif conn.deadline is not None and now >= conn.deadline:
                    conn.expired()

    def http_date(self) -> bytes:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True).encode("ascii"))
        return self._date[1]


class Connection(asyncio.Protocol):
    """One client connection: buffer until a request is complete, hand it to the pool, write the answer."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.config = front.config
        self.loop = front.loop
        assert self.loop is not None
        self.transport: Any = None
        self.buffer = bytearray()
        self.state = "new"  # head, body, handling, idle, closed
        self.deadline: float | None = None
        self.write_deadline: float | None = None
        self.timeout_answer = True  # False while idle between requests: close quietly
        self.head: RequestHead | None = None
        self.chunks: ChunkedBody | None = None
        self.source = ""
        self.peer: Any = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.pem: str | None = None
        self.scheme = "http"

    # --- asyncio callbacks ------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.source = str(self.peer[0])
        sockname = transport.get_extra_info("sockname") or ("", 0)
        self.server = (str(sockname[0]), int(sockname[1]))
        front = self.front
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None and front.over_cap(self.source):  # TLS connections were checked before the handshake
            self.state = "closed"
            front.refused(503)
            transport.write(self._status_bytes(FrontError(503, "too many connections; retry later")))
            transport.close()
            return
        if ssl_object is not None:
            self.scheme = "https"
            der = ssl_object.getpeercert(binary_form=True)
            self.pem = ssl.DER_cert_to_PEM_cert(der) if der else None
        front.connections.add(self)
        front.per_source[self.source] = front.per_source.get(self.source, 0) + 1
        assert self.loop is not None
        self.state = "head"
        self.deadline = self.loop.time() + self.config.header_timeout_seconds

    def data_received(self, data: bytes) -> None:
        if self.state == "closed":
            return
        self.buffer += data
        if self.state == "idle":
            assert self.loop is not None
            self.state = "head"  # the header deadline runs from the first byte of the next request
            self.timeout_answer = True
            self.deadline = self.loop.time() + self.config.header_timeout_seconds
        if self.state in ("head", "body"):
            self._process()

    def eof_received(self) -> bool:
        return False  # half-closed clients get no answer: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def pause_writing(self) -> None:
        assert self.loop is not None
        self.write_deadline = self.loop.time() + self.config.write_timeout_seconds

    def resume_writing(self) -> None:
        self.write_deadline = None

    # --- request handling -------------------------------------------------------------------------------

    def _process(self) -> None:
        try:
            if self.state == "head":
                while self.buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request line
                    del self.buffer[:2]
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    check_incomplete(self.buffer, self.front.limits)
                    return
                self.head = head = parse_head(bytes(self.buffer[:end]), self.front.limits)
                del self.buffer[:end + 4]
                self.state = "body"
                assert self.loop is not None
                self.deadline = self.loop.time() + self.config.body_timeout_seconds
                if head.chunked:
                    self.chunks = ChunkedBody(self.front.limits)
                if head.expect_continue and (head.content_length or head.chunked):
                    self.transport.write(_CONTINUE)
            assert self.head is not None
            head = self.head
            if head.chunked:
                assert self.chunks is not None
                if not self.chunks.feed(self.buffer):
                    return
                body = self.chunks.body()
                self.chunks = None
            elif head.content_length:
                if len(self.buffer) < head.content_length:
                    return
                body = bytes(self.buffer[:head.content_length])
                del self.buffer[:head.content_length]
            else:
                body = b""
        except FrontError as exc:
            self.refuse(exc)
            return
        self._dispatch(head, body)

    def _dispatch(self, head: RequestHead, body: bytes) -> None:
        front = self.front
        self.state = "handling"
        self.deadline = None
        if front.in_flight >= self.config.threads + self.config.max_queued_requests:
            front.refused(503)
            self.transport.write(self._status_bytes(FrontError(503, "the server is overloaded; retry later"),
                                                    close=not head.keep_alive))
            self._next(head.keep_alive)
            return
        self.transport.pause_reading()
        environ = build_environ(head, body, scheme=self.scheme, server=self.server, peer=self.peer,
                                peer_cert_pem=self.pem)
        front.in_flight += 1
        front.pool.submit(self._run, head, environ)

    def _run(self, head: RequestHead, environ: dict[str, Any]) -> None:
        """In a handler thread: run the app, then hand the whole answer back to the loop."""
        try:
            response = call_app(self.front.app, environ)
        except Exception:  # noqa: BLE001 - the app's own handlers answer errors; this is a last resort
            log.exception("the app failed outside its error handlers")
            response = status_response(FrontError(500, "internal error"))
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(self._respond, head, response)
        except RuntimeError:  # the loop is gone (shutdown)
            pass

    def _respond(self, head: RequestHead, response: Response) -> None:
        self.front.in_flight -= 1
        if self.state == "closed":
            return
        keep_alive = head.keep_alive and not self.front.closing
        self.transport.write(self._response_bytes(head, response, keep_alive))
        self._next(keep_alive)

    def _next(self, keep_alive: bool) -> None:
        """After an answer: close, or wait (idle) for the next request on this connection."""
        if not keep_alive:
            self.close()
            return
        assert self.loop is not None
        self.head = None
        self.state = "idle"
        self.timeout_answer = False
        self.deadline = self.loop.time() + self.config.keepalive_timeout_seconds
        self.transport.resume_reading()
        if self.buffer:  # a pipelined request already arrived
            self.state = "head"
            self.timeout_answer = True
            self.deadline = self.loop.time() + self.config.header_timeout_seconds
            self._process()

    def expired(self) -> None:
        """The sweeper found this connection past its deadline."""
        if self.state in ("head", "body") and self.timeout_answer and self.state != "closed":
            self.refuse(FrontError(408, "the request did not arrive in time"))
        else:
            self.close(abort=self.state == "handling")

    def refuse(self, error: FrontError) -> None:
        """Answer a request the front refuses, then close once the answer is flushed."""
        if self.state == "closed":
            return
        self.front.refused(error.code)
        self.transport.write(self._status_bytes(error))
        self.close()

    def close(self, abort: bool = False) -> None:
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self._forget()

    def _forget(self) -> None:
        if self.state == "closed" and self not in self.front.connections:
            return
        self.state = "closed"
        self.deadline = self.write_deadline = None
        front = self.front
        if self in front.connections:
            front.connections.discard(self)
            left = front.per_source.get(self.source, 1) - 1
            if left > 0:
                front.per_source[self.source] = left
            else:
                front.per_source.pop(self.source, None)

    # --- bytes on the wire ------------------------------------------------------------------------------

    def _response_bytes(self, head: RequestHead, response: Response, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {response.status}\r\nDate: ".encode("latin-1") + self.front.http_date()]
        declared = None
        for name, value in response.headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                if lower == "content-length":
                    declared = value
                continue
            lines.append(f"{name}: {value}".encode("latin-1"))
        body = response.body
        if response.status.startswith(_NO_BODY):
            body = b""
        else:
            length = declared if head.method == "HEAD" and declared else len(body)
            lines.append(f"Content-Length: {length}".encode("latin-1"))
            if head.method == "HEAD":
                body = b""
        if not keep_alive:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def _status_bytes(self, error: FrontError, close: bool = True) -> bytes:
        response = status_response(error)
        lines = [f"HTTP/1.1 {response.status}\r\nDate: ".encode("latin-1") + self.front.http_date()]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in response.headers]
        if close:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + response.body


def status_response(error: FrontError) -> Response:
    """A Kubernetes `Status` answer for a request the front refuses (503 adds Retry-After)."""
    body = json.dumps(status_body(error.code, REASONS.get(error.code, "InternalError"), error.message)).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
               ("Content-Length", str(len(body)))]
    if error.code == 503:
        headers.append(("Retry-After", "1"))
    return Response(f"{error.code} {PHRASES.get(error.code, 'Error')}", headers, body)


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket (IPv6 when `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
