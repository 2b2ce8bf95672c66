"""Running the app: gunicorn (production) or Flask's development server (`--dev`).

The app is built once in the gunicorn master (`preload_app`), so configuration errors stop start-up with one
line instead of crash-looping workers; each worker then reopens its own database connections after fork.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Any

from kagiya.config import Settings, is_loopback
from kagiya.errors import KagiyaError, UsageError

log = logging.getLogger("kagiya.serving")


def check_listen(settings: Settings) -> None:
    """Refuse unsafe listener settings: plain HTTP is for loopback only. Used by `kagiya serve` and gunicorn.conf.py."""
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


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": [bind_address(settings.host, settings.port)],
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": 8,
        "preload_app": True,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "kagiya",
        "post_fork": _post_fork,
        "on_exit": _on_exit,
    }
    if settings.tls_cert:
        # The worker hands the verified client certificate to the app (authn routing by O=/CN=), and the
        # ssl_context hook reloads the certificate files when they change (kagiya.authn.mtls).
        from kagiya.authn.mtls import reloading_ssl_context

        options.update(certfile=settings.tls_cert, keyfile=settings.tls_key,
                       worker_class="kagiya.authn.mtls_worker.PeerCertWorker", ssl_context=reloading_ssl_context)
    if settings.client_ca:
        # OPTIONAL, not REQUIRED: a presented certificate must verify, but kubelet probes, admission calls and
        # bearer-token API clients connect without one; web.py demands one on `client_cert_paths`.
        options.update(ca_certs=settings.client_ca, cert_reqs=ssl.CERT_OPTIONAL)
    return options


def _post_fork(server: Any, worker: Any) -> None:
    """In the new worker: drop the master's database connections, then start capabilities' background work."""
    flask_app = getattr(server.app, "callable", None)
    if flask_app is None:
        return
    flask_app.extensions["kagiya.store"].engine.dispose(close=False)
    for name, start in flask_app.extensions["kagiya.after_fork"].items():
        try:
            start()
        except KagiyaError as exc:
            # Not fatal: readiness reports it and the capability retries on its next request.
            log.warning("%s: not started after fork: %s", name, exc.message)


def shared_metrics_dir(settings: Settings) -> None:
    """With several workers, counters must add up across processes, or every scrape sees one worker's numbers
    (and Prometheus reads the jumps as resets). prometheus-client's multiprocess mode keeps them in files in
    PROMETHEUS_MULTIPROC_DIR; set it (a fresh private directory) before the app creates any metric."""
    if settings.workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    import tempfile

    global _metrics_dir
    _metrics_dir = tempfile.mkdtemp(prefix="kagiya-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


_metrics_dir = ""


def _on_exit(server: Any) -> None:
    """In the gunicorn master at shutdown: remove the metrics directory this process made."""
    if _metrics_dir:
        import shutil

        shutil.rmtree(_metrics_dir, ignore_errors=True)


def run(settings: Settings, *, dev: bool = False) -> None:
    if not dev:
        shared_metrics_dir(settings)
    from kagiya.web import create_app

    app = create_app(settings)
    scheme = "https" if settings.tls_cert else "http"
    log.info("kagiya listening on %s://%s", scheme, bind_address(settings.host, settings.port))
    if dev:
        ssl_context: Any = None
        if settings.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
            if settings.client_ca:
                ssl_context.load_verify_locations(settings.client_ca)
                ssl_context.verify_mode = ssl.CERT_OPTIONAL
        app.run(host=settings.host, port=settings.port, ssl_context=ssl_context, threaded=True, use_reloader=False)
        return
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    _Gunicorn().run()
