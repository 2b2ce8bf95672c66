"""The HTTP front: one asyncio event loop reads whole requests, a bounded thread pool runs the WSGI app.

Why: a thread per connection (gunicorn's sync and gthread workers) lets a client that trickles one byte every
few seconds hold a handler thread; a few dozen such clients stop a replica. Here a slow client costs a socket
and a few kilobytes of buffer until its request is complete, within header/body deadlines and size limits, and
under a cap on connections per source address and in total. Only complete requests reach a handler thread, and
the answer is collected whole before the loop writes it, so a client that does not read holds no thread either.

Every response the front itself emits (400, 408, 413, 414, 431, 501, 503, 505) is a Kubernetes `Status` body.
TLS: the handshake runs on the loop with a deadline; the context comes from `kagiya.tls.mtls`'s reloading
cache on each connection (replaced certificate files apply to new connections), and a verified client
certificate reaches the app as `environ["SSL_CLIENT_CERT"]` (the key web.py's client-certificate gate reads).

Answers already in memory (a cached TokenReview) need no thread: the app may give an `inline` answerer that
the loop asks first with the complete request; it answers only what it can without waiting on anything, and
returns None for everything else, which the pool runs as usual. A thread handoff and Flask's request machinery
cost several times the work of such an answer, and under the interpreter lock one process would otherwise
serve fewer cached reviews than the two gunicorn processes it replaced (docs/operations.md, "Serving model").

Connections are asyncio Protocols (no coroutine per read) and deadlines are checked by one sweeper every
`SWEEP_SECONDS`, so the per-request cost on the loop stays small: the loop shares one interpreter lock with the
handler threads.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

from kagiya.serving.connection import Connection, source_address
from kagiya.serving.http1 import Limits
from kagiya.serving.settings import ServingSettings
from kagiya.serving.wsgi import Response, WsgiApp

#: The app's loop-side answerer: a complete request's WSGI environ to a whole answer, or None for "run the app".
InlineAnswer = Callable[[dict[str, Any]], Response | None]

log = logging.getLogger("kagiya.serving")
SWEEP_SECONDS = 0.1
#: Pending connections the kernel queues before accept (asyncio would otherwise re-listen with 100).
LISTEN_BACKLOG = 1024


class Front:
    """Serve `app` on a listening socket until `shutdown()` (or SIGTERM/SIGINT under `serve_forever`)."""

    def __init__(self, app: WsgiApp, config: ServingSettings, *, max_body_bytes: int,
                 ssl_context: Callable[[], ssl.SSLContext] | None = None, inline: InlineAnswer | None = None) -> None:
        self.app = app
        self.inline = inline
        self.config = config
        self.ssl_context = ssl_context
        self.limits = Limits(config.max_uri_bytes, config.max_header_bytes, config.max_headers, max_body_bytes)
        self.pool = ThreadPoolExecutor(config.threads, thread_name_prefix="kagiya-handler")
        self.buffered = 0  # body bytes announced by requests being received, queued or running
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
            # asyncio listens on `sock` again with its own backlog (100 unless told): 200 pods connecting at once
            # overflowed it and the dropped SYNs came back a second later, past botocore's 1 s IMDS timeout.
            self.server = await self.loop.create_server(lambda: Connection(self), sock=sock, backlog=LISTEN_BACKLOG)
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
            source = source_address(peer[0])
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
        """A request is being received (within its deadlines), run, or answered (a last answer is still being
        taken: closing the socket now could reset it before the client has read it)."""
        return bool(self.in_flight) or any(
            conn.state in ("body", "handling") or (conn.state == "head" and conn.buffer) or conn.lingering
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


def listen(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A listening TCP socket (IPv6 when `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
