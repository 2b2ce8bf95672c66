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
from kagiya.serving.http1 import PHRASES, REASONS, FrontError, Limits, read_body, read_head, read_line
from kagiya.serving.settings import ServingSettings
from kagiya.serving.wsgi import Response, WsgiApp, build_environ, call_app

log = logging.getLogger("kagiya.serving")
_NO_BODY = ("1", "204", "304")
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


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
        self.writing = 0  # requests read completely whose answer is not written yet
        self.total = 0
        self.per_source: dict[str, int] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None
        self.closing = False
        self._date = (0, "")

    async def start(self, sock: socket.socket) -> None:
        stream_limit = max(self.config.max_uri_bytes, self.config.max_header_bytes) + 4
        self.server = await asyncio.start_server(self._connection, sock=sock, limit=stream_limit)

    async def serve_forever(self, sock: socket.socket) -> None:
        await self.start(sock)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: finishing in-flight requests")
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let requests already read finish (up to the graceful timeout), then close the rest."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + self.config.graceful_timeout_seconds
        while self.writing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- one connection ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        source = str(peer[0])
        if (self.closing or self.total >= self.config.max_connections
                or self.per_source.get(source, 0) >= self.config.max_connections_per_source):
            if self.ssl_context is None:
                self._write_status(writer, FrontError(503, "too many connections; retry later"), close=True)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.total += 1
        self.per_source[source] = self.per_source.get(source, 0) + 1
        try:
            pem = None
            if self.ssl_context is not None:
                try:
                    await writer.start_tls(self.ssl_context(),
                                           ssl_handshake_timeout=self.config.handshake_timeout_seconds)
                except (ssl.SSLError, OSError, TimeoutError, ConnectionError):
                    return
                ssl_object = writer.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
                pem = ssl.DER_cert_to_PEM_cert(der) if der else None
            await self._requests(reader, writer, peer, pem)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.total -= 1
            left = self.per_source[source] - 1
            if left:
                self.per_source[source] = left
            else:
                del self.per_source[source]
            self.tasks.discard(task)
            writer.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any,
                        pem: str | None) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        scheme = "https" if self.ssl_context is not None else "http"
        sockname = writer.get_extra_info("sockname") or ("", 0)
        server = (str(sockname[0]), int(sockname[1]))
        first = True
        while not self.closing:
            started = loop.time()
            wait = config.header_timeout_seconds if first else config.keepalive_timeout_seconds
            try:
                async with asyncio.timeout(wait):
                    line = await read_line(reader, config.max_uri_bytes, 414, "request line")
                    while not line:  # RFC 9112 2.2: ignore empty lines before a request line
                        line = await read_line(reader, config.max_uri_bytes, 414, "request line")
            except TimeoutError:
                if first:
                    await self._refuse(writer, FrontError(408, "no complete request line in time"))
                return
            except EOFError:
                return
            except FrontError as exc:
                await self._refuse(writer, exc)
                return
            try:
                async with asyncio.timeout_at((started if first else loop.time()) + config.header_timeout_seconds):
                    head = await read_head(reader, self.limits, line)
                if head.expect_continue and (head.content_length or head.chunked):
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                async with asyncio.timeout(config.body_timeout_seconds):
                    body = await read_body(reader, head, self.limits)
            except TimeoutError:
                await self._refuse(writer, FrontError(408, "the request did not arrive in time"))
                return
            except EOFError:
                return
            except FrontError as exc:
                await self._refuse(writer, exc)
                return
            keep_alive = head.keep_alive and not self.closing
            self.writing += 1
            try:
                if self.in_flight >= config.threads + config.max_queued_requests:
                    self._write_status(writer, FrontError(503, "the server is overloaded; retry later"),
                                       close=not keep_alive)
                else:
                    environ = build_environ(head, body, scheme=scheme, server=server, peer=peer, peer_cert_pem=pem)
                    self.in_flight += 1
                    try:
                        response = await loop.run_in_executor(self.pool, call_app, self.app, environ)
                    except Exception:  # noqa: BLE001 - the app's own handlers answer errors; this is a last resort
                        log.exception("the app failed outside its error handlers")
                        response = _status_response(FrontError(500, "internal error"))
                    finally:
                        self.in_flight -= 1
                    self._write_response(writer, head, response, keep_alive)
                async with asyncio.timeout(config.write_timeout_seconds):
                    await writer.drain()
            finally:
                self.writing -= 1
            if not keep_alive:
                return
            first = False

    # --- writing ----------------------------------------------------------------------------------------

    def _http_date(self) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]

    def _write_response(self, writer: asyncio.StreamWriter, head: Any, response: Response, keep_alive: bool) -> None:
        lines = [f"HTTP/1.1 {response.status}", f"Date: {self._http_date()}"]
        declared = None
        for name, value in response.headers:
            if name.lower() in _HOP_BY_HOP:
                if name.lower() == "content-length":
                    declared = value
                continue
            lines.append(f"{name}: {value}")
        body = response.body
        if response.status.startswith(_NO_BODY):
            body = b""
        else:
            lines.append(f"Content-Length: {declared if head.method == 'HEAD' and declared else len(body)}")
            if head.method == "HEAD":
                body = b""
        if not keep_alive:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _write_status(self, writer: asyncio.StreamWriter, error: FrontError, *, close: bool) -> None:
        response = _status_response(error)
        lines = [f"HTTP/1.1 {response.status}", f"Date: {self._http_date()}"]
        lines += [f"{k}: {v}" for k, v in response.headers]
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)

    async def _refuse(self, writer: asyncio.StreamWriter, error: FrontError) -> None:
        """Answer a request the front refuses, then let the caller close the connection."""
        try:
            self._write_status(writer, error, close=True)
            async with asyncio.timeout(min(5.0, self.config.write_timeout_seconds)):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass


def _status_response(error: FrontError) -> Response:
    body = json.dumps(status_body(error.code, REASONS.get(error.code, "InternalError"), error.message)).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
               ("Content-Length", str(len(body)))]
    if error.code == 503:
        headers.append(("Retry-After", "1"))
    return Response(f"{error.code} {PHRASES.get(error.code, 'Internal Server Error')}", headers, body)


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket (IPv6 when `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
