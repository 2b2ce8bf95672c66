"""Running the app: the HTTP front (production) or Flask's development server (`--dev`).

A replica is one process: the app is built once, its background work (Kubernetes watches, prefetchers) starts
once, and `kagiya.serving.front` reads whole requests on an event loop before a bounded thread pool runs the
app. Configuration errors stop start-up with one line. See docs/operations.md ("Serving model").
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import types
from collections.abc import Callable
from typing import Any

from kagiya.config import Settings, is_loopback
from kagiya.errors import KagiyaError, UsageError

log = logging.getLogger("kagiya.serving")


def check_listen(settings: Settings) -> None:
    """Refuse unsafe listener settings: plain HTTP is for loopback only."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if settings.client_ca and not settings.tls_cert:
        raise UsageError("--client-ca needs --tls-cert and --tls-key")
    if not is_loopback(settings.host) and not settings.tls_cert:
        raise UsageError(
            f"refusing to serve plain HTTP on {settings.host}: pass --tls-cert and --tls-key "
            "(and --client-ca for mutual TLS), or bind 127.0.0.1"
        )


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_background(flask_app: Any) -> None:
    """Start capabilities' background work (watches, prefetch) once for this process, before serving."""
    for name, start in flask_app.extensions["kagiya.startup"].items():
        try:
            start()
        except KagiyaError as exc:
            # Not fatal: readiness reports it and the capability retries on its next request.
            log.warning("%s: not started: %s", name, exc.message)


def ssl_context_factory(settings: Settings) -> Callable[[], ssl.SSLContext]:
    """Per-connection TLS context, rebuilt when the certificate, key or client CA files change.

    With a client CA, a presented certificate must verify (else the handshake fails), but one is OPTIONAL:
    kubelet probes, admission calls and bearer-token clients connect without one; web.py demands one on
    `client_cert_paths`.
    """
    from kagiya.tls.mtls import reloading_ssl_context

    conf = types.SimpleNamespace(certfile=settings.tls_cert, keyfile=settings.tls_key,
                                 ca_certs=settings.client_ca or None)

    def build() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.client_ca:
            context.load_verify_locations(settings.client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["http/1.1"])
        # No TLS 1.2 renegotiation, whatever the linked OpenSSL's default: the peer certificate is read once per
        # connection, and each renegotiation is handshake work outside the handshake deadline and caps.
        context.options |= ssl.OP_NO_RENEGOTIATION
        return context

    return lambda: reloading_ssl_context(conf, build)


def run(settings: Settings, *, dev: bool = False) -> None:
    from kagiya.web import create_app

    app = create_app(settings)
    if settings.workers != 2:
        log.warning("the workers setting is ignored: a replica is one process (see serving.threads)")
    start_background(app)
    scheme = "https" if settings.tls_cert else "http"
    log.info("kagiya listening on %s://%s", scheme, bind_address(settings.host, settings.port))
    if dev:
        dev_context: Any = None
        if settings.tls_cert:
            dev_context = ssl_context_factory(settings)()
        app.run(host=settings.host, port=settings.port, ssl_context=dev_context, threaded=True, use_reloader=False)
        return
    serve_app(app, settings)


def serve_app(app: Any, settings: Settings) -> None:
    """Serve a WSGI app on the front until SIGTERM/SIGINT, with the listener, TLS and loop `settings` name."""
    from kagiya.inline import inline_answerer
    from kagiya.serving.front import Front, listen

    config = settings.section("serving")
    front = Front(app, config, max_body_bytes=settings.max_request_bytes,
                  ssl_context=ssl_context_factory(settings) if settings.tls_cert else None,
                  inline=inline_answerer(app) if config.inline_answers else None)
    sock = listen(settings.host, settings.port)
    # The loop shares the interpreter lock with the handler threads: a 1 ms switch interval (default 5 ms) lets it
    # take ready sockets sooner while handlers run (lower latency, measured in docs/operations.md).
    sys.setswitchinterval(0.001)
    if config.event_loop == "uvloop":
        import uvloop

        uvloop.run(front.serve_forever(sock))
    else:
        asyncio.run(front.serve_forever(sock))
