"""The bytes the front writes: an app's whole answer as one HTTP/1.1 response, and the front's own refusals as
Kubernetes `Status` bodies. Kept apart from the connection's state machine (`kagiya.serving.connection`)."""

from __future__ import annotations

import json

from kagiya.errors import status_body
from kagiya.serving.http1 import PHRASES, REASONS, FrontError, RequestHead
from kagiya.serving.wsgi import Response

_NO_BODY = ("1", "204", "304")
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def response_bytes(head: RequestHead, response: Response, keep_alive: bool, date: bytes) -> bytes:
    """`response` as the answer to `head`: the front owns framing (Content-Length, Connection), the app does not."""
    lines = [f"HTTP/1.1 {response.status}\r\nDate: ".encode("latin-1") + date]
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
    elif head.version == "HTTP/1.0":  # an HTTP/1.0 client closes unless told the connection persists
        lines.append(b"Connection: keep-alive")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def status_bytes(error: FrontError, date: bytes) -> bytes:
    """A refusal the front answers itself, then closes the connection."""
    response = status_response(error)
    lines = [f"HTTP/1.1 {response.status}\r\nDate: ".encode("latin-1") + date]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in response.headers]
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
