"""One client connection of the HTTP front (an asyncio Protocol): buffer bytes until a request is complete, answer
it on the loop (the app's inline answerer) or hand it to the handler pool, write the whole answer; refuse what the
limits exclude with a Kubernetes `Status` body (the bytes themselves: `kagiya.serving.wire`).

Deadlines are fields (`deadline`, `write_deadline`) that the front's sweeper checks, so no timer or coroutine is
made per read. See `kagiya.serving.front` for the model.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

from kagiya.serving.http1 import ChunkedBody, FrontError, RequestHead, check_incomplete, parse_head
from kagiya.serving.wire import response_bytes, status_bytes, status_response
from kagiya.serving.wsgi import Response, build_environ, call_app

if TYPE_CHECKING:
    from kagiya.serving.front import Front

log = logging.getLogger("kagiya.serving")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Pipelined requests answered inline in one go before the loop serves other connections.
INLINE_BATCH = 16
#: After a last answer, how long the front keeps reading (and discarding) what the client still sends.
LINGER_SECONDS = 2.0


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
        self.held = False  # idle with reading paused until the client takes the previous answer
        self.reserved = 0  # body bytes counted against serving.max_buffered_body_bytes until answered
        self.lingering = False  # last answer sent with a FIN; discarding input until the client closes

    # --- asyncio callbacks ------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.source = source_address(self.peer[0])
        self.peer = (self.source, *self.peer[1:])
        sockname = transport.get_extra_info("sockname") or ("", 0)
        self.server = (str(sockname[0]), int(sockname[1]))
        front = self.front
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None and front.over_cap(self.source):  # TLS connections were checked before the handshake
            self.state = "closed"
            front.refused(503)
            transport.write(status_bytes(FrontError(503, "too many connections; retry later"), front.http_date()))
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
        self.write_deadline = None
        self._forget()

    def pause_writing(self) -> None:
        assert self.loop is not None
        if self.state != "closed":  # once closed, the deadline for the rest of the answer is fixed
            self.write_deadline = self.loop.time() + self.config.write_timeout_seconds

    def resume_writing(self) -> None:
        if self.state != "closed":
            self.write_deadline = None
            if self.held:
                self._read_next()
                self._process()

    # --- request handling -------------------------------------------------------------------------------

    def _process(self) -> None:
        """Read requests from the buffer: each complete one is answered on the loop (`Front.inline`) or handed to
        the pool (then reading pauses until it is answered). A loop of its own, not recursion, so pipelined
        requests answered inline cannot exhaust the stack; after INLINE_BATCH of them the rest waits for the
        loop's next turn, so one client's pipeline cannot hold the loop, and reading pauses meanwhile, so a client
        that sends faster than the loop answers is not read ahead into memory (a turn reads up to 256 KiB)."""
        answered = 0
        while self.state in ("head", "body"):
            request = self._read_request()
            if request is None:
                return
            environ = self._environ(*request)
            if not self._answer_inline(request[0], environ):
                self._dispatch(request[0], environ)
                return
            answered += 1
            if answered >= INLINE_BATCH and self.state == "head":
                assert self.loop is not None
                self.transport.pause_reading()
                self.loop.call_soon(self._next_batch)
                return

    def _next_batch(self) -> None:
        if self.state in ("head", "body"):
            self.transport.resume_reading()
            self._process()

    def _read_request(self) -> tuple[RequestHead, bytes] | None:
        """The next complete request in the buffer, or None (incomplete, or refused and closing)."""
        try:
            if self.state == "head":
                while self.buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request line
                    del self.buffer[:2]
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    check_incomplete(self.buffer, self.front.limits)
                    return None
                self.head = head = parse_head(bytes(self.buffer[:end]), self.front.limits)
                del self.buffer[:end + 4]
                need = head.content_length or (self.front.limits.max_body_bytes if head.chunked else 0)
                if need:
                    if self.front.buffered + need > self.config.max_buffered_body_bytes:
                        raise FrontError(503, "the server is busy receiving other request bodies; retry later")
                    self.reserved = need
                    self.front.buffered += need
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
                    return None
                body = self.chunks.body()
                self.chunks = None
            elif head.content_length:
                if len(self.buffer) < head.content_length:
                    return None
                body = bytes(self.buffer[:head.content_length])
                del self.buffer[:head.content_length]
            else:
                body = b""
        except FrontError as exc:
            self.refuse(exc)
            return None
        return head, body

    def _environ(self, head: RequestHead, body: bytes) -> dict[str, Any]:
        return build_environ(head, body, scheme=self.scheme, server=self.server, peer=self.peer,
                             peer_cert_pem=self.pem)

    def _answer_inline(self, head: RequestHead, environ: dict[str, Any]) -> bool:
        """Answer on the loop when the app has the answer in memory (True); else the pool answers (False).

        The app's inline answerer returns None for anything it would have to wait for or that is unusual, and
        an exception here only means the pool answers instead."""
        inline = self.front.inline
        if inline is None:
            return False
        try:
            response = inline(environ)
        except Exception:  # noqa: BLE001 - the pool's run of the same request gives the real answer
            log.exception("the loop-side answer failed; the handler pool answers instead")
            return False
        if response is None:
            return False
        self._answer(head, response)
        return True

    def _dispatch(self, head: RequestHead, environ: dict[str, Any]) -> None:
        front = self.front
        if front.in_flight >= self.config.threads + self.config.max_queued_requests:
            # Closed, not kept alive: a closed connection sheds load, and its pipelined requests are not read.
            self.refuse(FrontError(503, "the server is overloaded; retry later"))
            return
        self.state = "handling"
        self.deadline = None
        self.transport.pause_reading()
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

    def _release(self) -> None:
        self.front.buffered -= self.reserved
        self.reserved = 0

    def _respond(self, head: RequestHead, response: Response) -> None:
        self.front.in_flight -= 1
        self._release()
        if self.state == "closed":
            return
        self._answer(head, response)
        self._process()  # a pipelined request that arrived meanwhile

    def _answer(self, head: RequestHead, response: Response) -> None:
        """Write a whole answer (from the loop or the pool), then close, or wait for the next request."""
        keep_alive = head.keep_alive and not self.front.closing
        self.transport.write(response_bytes(head, response, keep_alive, self.front.http_date()))
        self._release()
        if not keep_alive:
            self._close_after_answer()
            return
        self.head = None
        if self.write_deadline is not None:
            # The client is not reading its answers: read (and run) no further request until it does, else
            # pipelined requests would pile up their answers in the transport's buffer. The write deadline runs.
            self.state = "idle"
            self.timeout_answer = False
            self.held = True
            self.deadline = None
            self.transport.pause_reading()
            return
        self._read_next()

    def _read_next(self) -> None:
        """Wait for the next request: under the header deadline when one is already buffered (pipelined), else
        under the keep-alive deadline. The caller runs `_process` for a buffered one."""
        assert self.loop is not None
        self.held = False
        self.transport.resume_reading()
        if self.buffer:
            self.state = "head"
            self.timeout_answer = True
            self.deadline = self.loop.time() + self.config.header_timeout_seconds
        else:
            self.state = "idle"
            self.timeout_answer = False
            self.deadline = self.loop.time() + self.config.keepalive_timeout_seconds

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
        self.transport.write(status_bytes(error, self.front.http_date()))
        self._close_after_answer()

    def _close_after_answer(self) -> None:
        """Close after a last answer (`Connection: close`, a refusal, shutdown) in stages: send the answer and a
        FIN, then read and discard what the client still sends until it closes or LINGER_SECONDS pass. Closing a
        socket with unread input (pipelined requests, the rest of a refused body) makes the kernel send a reset,
        which destroys the answers the client has not read yet. TLS transports cannot half-close: closed now."""
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):  # the client reset the connection already
            self.close(abort=True)
            return
        assert self.loop is not None
        self._release()
        self.state = "closed"
        self.lingering = True
        self.buffer.clear()
        self.head = self.chunks = None
        transport.resume_reading()
        self.deadline = self.loop.time() + LINGER_SECONDS  # the sweeper closes it then (`expired`)
        if self.write_deadline is None and transport.get_write_buffer_size():
            self.write_deadline = self.loop.time() + self.config.write_timeout_seconds

    def close(self, abort: bool = False) -> None:
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
                if self.transport.get_write_buffer_size():
                    # A closed transport keeps its unsent answer until the client reads it: keep the connection
                    # counted (caps) and under the write deadline, else a client that never reads pins the buffer.
                    assert self.loop is not None
                    if self.state != "handling":
                        self._release()
                    self.state = "closed"
                    self.deadline = None
                    if self.write_deadline is None:
                        self.write_deadline = self.loop.time() + self.config.write_timeout_seconds
                    return
        self._forget()

    def _forget(self) -> None:
        if self.state == "closed" and self not in self.front.connections:
            return
        if self.state != "handling":  # else the handler still holds the body: released when it answers
            self._release()
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


def source_address(host: Any) -> str:
    """The client's address as caps and REMOTE_ADDR see it: an IPv4 client of a dual-stack listener
    (`::ffff:10.0.0.5`) is `10.0.0.5`, so it has one per-source count and the metadata service finds its pod."""
    host = str(host)
    return host[7:] if host.lower().startswith("::ffff:") and "." in host else host
