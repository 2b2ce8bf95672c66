"""gunicorn gthread worker that exposes the verified TLS client certificate as `environ["SSL_CLIENT_CERT"]`.

See `kagiya.tls.mtls` for why; imported only by `kagiya serve` when it runs gunicorn with TLS.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from kagiya.tls.mtls import ENVIRON_KEY

_local = threading.local()


class _PeerCertMiddleware:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ.pop(ENVIRON_KEY, None)
        pem = getattr(_local, "pem", None)
        if pem:
            environ[ENVIRON_KEY] = pem
        return self.app(environ, start_response)


class PeerCertWorker(ThreadWorker):
    """gthread worker that passes the verified peer certificate to the app (one request per thread)."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = _PeerCertMiddleware(self.wsgi)  # type: ignore[has-type]

    def handle_request(self, req: Any, conn: Any) -> Any:
        _local.pem = _peer_pem(conn.sock)
        try:
            return super().handle_request(req, conn)
        finally:
            _local.pem = None


def _peer_pem(sock: Any) -> str | None:
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        der = getpeercert(binary_form=True)
    except (ValueError, OSError):
        return None
    return ssl.DER_cert_to_PEM_cert(der) if der else None
