"""From a complete request to a complete response: the WSGI environ, and the app run in a handler thread.

The app's response is collected whole in the handler thread (kagiya's responses are small JSON documents), so
the thread is free again before a slow reader has taken a byte; the event loop writes it out.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from kagiya.serving.http1 import RequestHead

log = logging.getLogger("kagiya.serving")

#: Verified client certificate (PEM). No `HTTP_` prefix, so no client header can set it (see kagiya.tls.mtls).
PEER_CERT_KEY = "SSL_CLIENT_CERT"
_STATUS_RE = re.compile(r"[1-5][0-9][0-9](?: [\t\x20-\x7e\x80-\xff]*)?")
_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def build_environ(head: RequestHead, body: bytes, *, scheme: str, server: tuple[str, int],
                  peer: tuple[str, int], peer_cert_pem: str | None) -> dict[str, Any]:
    path, _, query = head.target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": head.target,
        "REQUEST_URI": head.target,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": head.version,
        "REMOTE_ADDR": peer[0],
        "REMOTE_PORT": str(peer[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if body or head.content_length is not None or head.chunked:
        environ["CONTENT_LENGTH"] = str(len(body))  # chunked bodies arrive whole: their length is known
    for name, value in head.headers:
        if "_" in name:
            continue  # `X_Foo` and `X-Foo` would both become HTTP_X_FOO: drop the ambiguous spelling
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH" or key == "TRANSFER_ENCODING":
            continue
        if key == "CONTENT_TYPE":
            environ[key] = value
            continue
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if peer_cert_pem:
        environ[PEER_CERT_KEY] = peer_cert_pem
    return environ


def call_app(app: WsgiApp, environ: dict[str, Any]) -> Response:
    """Run the app and collect its whole response (runs in a handler thread)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return lambda data: chunks.append(data)

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    check_head(started[0], started[1])
    return Response(started[0], started[1], b"".join(chunks))


def check_head(status: str, headers: list[tuple[str, str]]) -> None:
    """Refuse a status or header the loop could not write as one well-formed HTTP/1.1 head: CR/LF would let
    app-controlled text (a redirect target, a name from a request) inject headers or a second response, and a
    character outside latin-1 would fail only in the event loop, leaving the connection unanswered."""
    if not isinstance(status, str) or not _STATUS_RE.fullmatch(status):
        raise ValueError(f"malformed WSGI status {status!r}")
    for name, value in headers:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"malformed response header name {name!r}")
        if not isinstance(value, str) or not _VALUE_RE.fullmatch(value):
            raise ValueError(f"response header {name} has a value that is not one latin-1 line")
