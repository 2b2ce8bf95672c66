"""`create_app(settings)`: the one place the service is assembled.

Core pieces (store, audit, callers, metrics, error handlers) are set up here; each capability contributes an
`init_app(app, settings)` in its `api.py`, listed in `CAPABILITIES`, which registers its blueprints.
Every error leaves as a Kubernetes `Status` JSON body: never an HTML page, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from kagiya import audit, callers, logs, metrics
from kagiya.audit import service as audit_service
from kagiya.config import Settings, load_settings
from kagiya.errors import BadRequest, Forbidden, KagiyaError, PayloadTooLarge, status_body
from kagiya.store import Store
from kagiya.store import init_app as store_errors_init_app
from kagiya.tls.mtls import ENVIRON_KEY as PEER_CERT_ENVIRON

log = logging.getLogger("kagiya.web")
access_log = logging.getLogger("kagiya.access")

#: Capability modules exposing `init_app(app, settings)`, in registration order.
CAPABILITIES = [
    "kagiya.core_api",
    "kagiya.secrets.api",
    "kagiya.authn.api",
    "kagiya.authz.api",
    "kagiya.iam.api",
    "kagiya.iam.metadata.api",
    "kagiya.console",
]

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Request ids correlate log lines and audit events; they guard nothing. os.urandom per request is a getrandom()
#: syscall that drops the GIL, and under 16 busy handler threads each reacquisition waited in line: a generator
#: seeded once from the OS gives the same 32-hex-digit ids without a syscall.
_REQUEST_IDS = random.Random(os.urandom(32))  # noqa: S311 - not a secret (see above)


def new_request_id() -> str:
    """A fresh 32-hex-digit request id (not a secret: ids are echoed to clients and logged)."""
    return f"{_REQUEST_IDS.getrandbits(128):032x}"
HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    logs.configure(settings.log_level)
    app = Flask("kagiya")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["kagiya.settings"] = settings
    app.extensions["kagiya.readiness"] = {}
    app.extensions["kagiya.startup"] = {}

    store = Store(settings.sqlalchemy_url)
    store.migrate()
    app.extensions["kagiya.store"] = store
    audit.use_fingerprint_key(store.shared_key("audit-fingerprint"))

    metrics.init_app(app)
    store_errors_init_app(app)
    audit_service.init_app(app, settings, store)
    callers.init_app(app, settings)
    _install_request_hooks(app, settings)
    _install_error_handlers(app)
    for name in CAPABILITIES:
        importlib.import_module(name).init_app(app, settings)
    return app


def store_of(app: Any) -> Store:
    return app.extensions["kagiya.store"]


def settings_of(app: Any) -> Settings:
    return app.extensions["kagiya.settings"]


def request_id(offered: str) -> str:
    """The client's `X-Request-Id` when it is a plain token, else a fresh one."""
    return offered if offered and REQUEST_ID_RE.match(offered) else new_request_id()


def check_request(environ: dict[str, Any], limit: int, cert_paths: tuple[str, ...]) -> None:
    """The refusals every route shares before its view runs (the loop's inline answers defer on them)."""
    path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
    if "\x00" in path or "%00" in query or "\x00" in query:
        # No route takes NUL characters, and PostgreSQL cannot store them: one refusal for every route.
        raise BadRequest("NUL characters are not allowed in the path or the query")
    if cert_paths and path.startswith(cert_paths) and not environ.get(PEER_CERT_ENVIRON):
        raise Forbidden("a client certificate signed by the configured client CA is required for this path")
    length = environ.get("CONTENT_LENGTH")
    if length and length.isascii() and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")


RequestChecks = Callable[[dict[str, Any]], None]
RequestRecorder = Callable[[str, str, int, float, str], None]


def request_checks(app: Any) -> RequestChecks:
    """`check_request` with this app's body limit and client-certificate paths."""
    settings = settings_of(app)
    limit = settings.max_request_bytes
    cert_paths = tuple(settings.client_cert_paths) if settings.client_ca else ()
    return lambda environ: check_request(environ, limit, cert_paths)


def request_recorder(app: Any) -> RequestRecorder:
    """Records one answered request (route rule, method, status, seconds, request id): request metrics, and the
    access log as `access_log` asks. The request id is given for answers made outside a Flask request (the
    loop's inline answers), where the log formatter cannot read it from `g`."""
    observe = metrics.metrics_of(app).observe
    log_from = {"all": 0, "errors": 400, "off": 1000}[settings_of(app).access_log]

    def record(route: str, method: str, status: int, seconds: float, request_id: str = "") -> None:
        observe(route, method, status, seconds)
        if status >= log_from:
            extra: dict[str, Any] = {"method": method, "route": route, "status": status,
                                     "duration_ms": round(seconds * 1000, 2)}
            if request_id:
                extra["request_id"] = request_id
            access_log.info("request", extra=extra)

    return record


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    checks = request_checks(app)
    record = request_recorder(app)

    @app.before_request
    def _request_id_and_size() -> None:
        g.request_id = request_id(request.headers.get("X-Request-Id", ""))
        g.kagiya_t0 = time.perf_counter()
        checks(request.environ)

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("Cache-Control", "no-store")
        seconds = time.perf_counter() - g.get("kagiya_t0", time.perf_counter())
        record(request.url_rule.rule if request.url_rule else "<unmatched>", request.method,
               response.status_code, seconds, g.get("request_id", ""))
        return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(KagiyaError)
    def _kagiya_error(exc: KagiyaError) -> tuple[Response, int]:
        if exc.http_status >= 500:
            log.warning("request failed: %s", exc.message)
        return jsonify(exc.to_status()), exc.http_status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        message = exc.description or HTTP_REASONS.get(code, "error")
        if code == 404:
            message = f"the path {request.path!r} was not found"
        elif code == 405:
            message = f"method {request.method} is not allowed on {request.path!r}"
        elif code == 413:
            message = f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        body = status_body(code, HTTP_REASONS.get(code, "InternalError"), message)
        response = jsonify(body)
        if code == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.error("unhandled error", exc_info=exc)
        message = f"internal error (request id {g.get('request_id', '-')})"
        return jsonify(status_body(500, "InternalError", message)), 500
