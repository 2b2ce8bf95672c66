"""Core routes: health, readiness, metrics, the OpenAPI description and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from kagiya import audit
from kagiya.callers import require_admin
from kagiya.config import Settings
from kagiya.errors import KagiyaError, status_body
from kagiya.metrics import metrics_of
from kagiya.openapi import build_spec, describe

bp = Blueprint("core", __name__)

AUDIT_PAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object"}},
        "metadata": {"type": "object", "properties": {"continue": {"type": "string"}}},
    },
}


def add_readiness_check(app: Flask, name: str, check: Callable[[], None]) -> None:
    """Register `check` (raises when not ready) for `/readyz`; capabilities call this from init_app."""
    app.extensions["kagiya.readiness"][name] = check


def add_startup(app: Flask, name: str, start: Callable[[], None]) -> None:
    """Register `start` to run once in the serving process before it accepts requests (a replica is one
    process): capabilities start their background work (watches, prefetch) here instead of on the first request."""
    app.extensions["kagiya.startup"][name] = start


#: The older name of `add_startup` (from when background work started after a fork); capabilities still use it.
add_after_fork = add_startup


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: the store answers and every capability's checks pass."""
    checks: dict[str, str] = {}
    ok = True
    store = current_app.extensions["kagiya.store"]
    named: dict[str, Callable[[], None]] = {"store": store.ping, **current_app.extensions["kagiya.readiness"]}
    for name, check in named.items():
        try:
            check()
            checks[name] = "ok"
        except KagiyaError as exc:
            ok = False
            checks[name] = exc.message
    if not ok:
        body: dict[str, Any] = status_body(503, "ServiceUnavailable", "not ready")
        body["details"] = {"checks": checks}
        return jsonify(body), 503
    return jsonify({"status": "ok", "checks": checks}), 200


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus exposition of request counts, latencies and capability counters."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics_of(current_app).exposition(), content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi() -> Response:
    """OpenAPI 3 description of every route."""
    return jsonify(build_spec(current_app))


@bp.get("/v1/audit")
@describe("List audit events (admins only), oldest first, with filters and paging.", response_schema=AUDIT_PAGE_SCHEMA)
def list_audit() -> Response:
    require_admin("read the audit log")
    query = audit.parse_query(request.args)
    items, next_id = audit.query(current_app.extensions["kagiya.store"], query)
    meta = {"continue": str(next_id)} if next_id is not None else {}
    return jsonify({"kind": "AuditEventList", "apiVersion": "kagiya.io/v1", "metadata": meta, "items": items})


def init_app(app: Flask, settings: Settings) -> None:
    del settings
    app.register_blueprint(bp)

