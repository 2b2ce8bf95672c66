"""`serving:` settings: the HTTP front's limits and the handler pool (KAGIYA_SERVING_*).

The defaults bound what one client can hold: a socket and a few kilobytes until its request is complete, never
a handler thread. See docs/operations.md ("Serving model").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ServingSettings:
    #: The front's event loop: uvloop (libuv, less CPU per request; measured in docs/operations.md) or the stdlib's.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: Answer what the app can answer from memory (a cached TokenReview) on the event loop, without a handler
    #: thread; everything else, and anything unusual about such a request, still goes to the handler pool.
    inline_answers: bool = True
    #: Handler threads running the app. Requests wait for one only once they are completely read.
    threads: int = 16
    #: Complete requests allowed to wait for a thread; past it the front answers 503 + Retry-After.
    max_queued_requests: int = 256
    #: Request bodies held at once (being received, queued or running; a chunked body counts as
    #: max_request_bytes); past it a new body gets 503 + Retry-After, so slow uploads cannot exhaust memory.
    max_buffered_body_bytes: int = 128 * 1024 * 1024
    #: Deadline for the request line and headers, from the connection's first byte (408 past it).
    header_timeout_seconds: float = 10.0
    #: Deadline for the whole body once the headers are in (408 past it).
    body_timeout_seconds: float = 30.0
    #: How long an idle kept-alive connection waits for its next request before it is closed.
    keepalive_timeout_seconds: float = 5.0
    #: Deadline for writing a response to a client that does not read; the connection is dropped past it.
    write_timeout_seconds: float = 30.0
    #: Deadline for the TLS handshake.
    handshake_timeout_seconds: float = 10.0
    #: Longest request line (method, target, version); longer gets 414.
    max_uri_bytes: int = 8192
    #: Largest header block (all header lines together) and most header fields; more gets 431.
    max_header_bytes: int = 16384
    max_headers: int = 100
    #: Open connections in total and per source address; past them a connection is refused (503 on plain HTTP,
    #: closed before the handshake on TLS).
    max_connections: int = 2048
    max_connections_per_source: int = 256
    #: On SIGTERM, how long in-flight requests may take before the process exits.
    graceful_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        ranges = {
            "threads": (1, 512), "max_queued_requests": (1, 100_000), "max_uri_bytes": (256, 1024 * 1024),
            "max_header_bytes": (1024, 1024 * 1024), "max_headers": (8, 10_000),
            "max_connections": (1, 1_000_000), "max_connections_per_source": (1, 1_000_000),
            "max_buffered_body_bytes": (1024 * 1024, 64 * 1024**3),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be from {low} to {high}, got {value}")
        for name in ("header_timeout_seconds", "body_timeout_seconds", "keepalive_timeout_seconds",
                     "write_timeout_seconds", "handshake_timeout_seconds", "graceful_timeout_seconds"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must be above 0 and at most 3600, got {value}")
        if self.max_connections_per_source > self.max_connections:
            raise ValueError("max_connections_per_source must not exceed max_connections")
