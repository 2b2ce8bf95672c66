"""HTTP surface of the SubjectAccessReview authorization webhook (specs/kubernetes-webhooks.md).

`POST /authz/subjectaccessreviews` (and Guard's path `/subjectaccessreviews`) takes an `authorization.k8s.io/v1`
or `v1beta1` SubjectAccessReview and answers in the same version: allowed, denied, or no opinion. Malformed
bodies get a 400 Status (the apiserver then treats the answer as no opinion). A node agent's client certificate
(`O=agent`) gets a 403 Status, as on the TokenReview webhook: only the apiserver asks. Every decision is counted in
`kagiya_authz_decisions_total{decision,version}`; denials are audited as `authz.review` / `denied`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import Counter

from kagiya import audit
from kagiya.authz.policy import Attributes, Decision, Policy, evaluate
from kagiya.authz.reviews import parse_review, review_reply
from kagiya.authz.settings import AuthzSettings
from kagiya.authz.source import PolicySource
from kagiya.config import Settings
from kagiya.core_api import add_readiness_check
from kagiya.errors import Forbidden
from kagiya.httpjson import json_body
from kagiya.metrics import metric
from kagiya.openapi import describe
from kagiya.tls import mtls
from kagiya.web import store_of

log = logging.getLogger("kagiya.authz")
bp = Blueprint("authz", __name__)
EXTENSION = "kagiya.authz"

SAR_SCHEMA = {
    "type": "object",
    "description": "authorization.k8s.io/v1 or v1beta1 SubjectAccessReview (v1beta1 spells groups `group`).",
    "required": ["apiVersion", "kind", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "enum": ["authorization.k8s.io/v1", "authorization.k8s.io/v1beta1"]},
        "kind": {"type": "string", "enum": ["SubjectAccessReview"]},
        "spec": {"type": "object"},
    },
}
SAR_REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "status": {
            "type": "object",
            "properties": {"allowed": {"type": "boolean"}, "denied": {"type": "boolean"}, "reason": {"type": "string"}},
        },
    },
}


class AuthzState:
    """What the view needs, built once in init_app."""

    def __init__(self, app: Flask, settings: AuthzSettings) -> None:
        self.settings = settings
        self.decisions = metric(app, Counter, "kagiya_authz_decisions_total",
                                "SubjectAccessReview decisions by outcome and request version.",
                                ("decision", "version"))
        reloads = metric(app, Counter, "kagiya_authz_policy_reloads_total",
                         "Policy file reloads by outcome (error: the previous policy kept serving).", ("outcome",))
        self.source: PolicySource | None = None
        if settings.policy_file:
            self.source = PolicySource(
                settings.policy_file,
                interval=settings.reload_interval_seconds,
                on_reload=lambda outcome: reloads.labels(outcome).inc(),
            )

    def policy(self) -> Policy | None:
        return self.source.current() if self.source is not None else None


def state_of(app: Any) -> AuthzState:
    return app.extensions[EXTENSION]


def _review() -> tuple[Response, int]:
    if mtls.is_agent_certificate(mtls.peer_subject(request.environ)):
        # The agent's key lives on every node: it must not learn who may do what (nor fill the audit log).
        raise Forbidden("a node agent certificate may not ask for access reviews")
    state = state_of(current_app)
    version, attrs = parse_review(json_body())
    decision = evaluate(state.policy(), attrs)
    state.decisions.labels(decision.outcome, version.rsplit("/", 1)[1]).inc()
    if decision.denied and state.settings.audit_denials:
        _audit_denial(attrs, decision, version)
    return jsonify(review_reply(version, decision)), 200


@bp.post("/authz/subjectaccessreviews")
@describe("SubjectAccessReview webhook: allowed, denied, or no opinion, in the request's version.",
          tags=["authz"], request_schema=SAR_SCHEMA, response_schema=SAR_REPLY_SCHEMA,
          responses={"400": "Not a SubjectAccessReview (Status body)",
                     "403": "The client certificate is a node agent's (Status body)"})
def subject_access_review() -> tuple[Response, int]:
    """SubjectAccessReview webhook for kube-apiserver's --authorization-webhook-config-file."""
    return _review()


@bp.post("/subjectaccessreviews")
@describe("Guard-compatible path of the SubjectAccessReview webhook.", tags=["authz"],
          request_schema=SAR_SCHEMA, response_schema=SAR_REPLY_SCHEMA,
          responses={"400": "Not a SubjectAccessReview (Status body)",
                     "403": "The client certificate is a node agent's (Status body)"})
def subject_access_review_guard_path() -> tuple[Response, int]:
    """SubjectAccessReview webhook on Guard's path."""
    return _review()


def _audit_denial(attrs: Attributes, decision: Decision, version: str) -> None:
    rule = decision.rule
    details: dict[str, Any] = {
        "apiVersion": version,
        "rule": rule.name if rule else "",
        "ruleLine": rule.line if rule else 0,
        "groups": list(attrs.groups),
        "verb": attrs.verb,
    }
    if attrs.resource_request:
        details.update(namespace=attrs.namespace, apiGroup=attrs.api_group, resource=attrs.resource,
                       subresource=attrs.subresource, name=attrs.name)
    else:
        details["path"] = attrs.path
    try:
        audit.record(store_of(current_app), actor=attrs.user or "(groups only)", action="authz.review",
                     target=attrs.describe(), outcome="denied", request_id=g.get("request_id", ""), details=details)
    except Exception as exc:  # noqa: BLE001 - a store hiccup must not turn a deny into an error answer
        log.error("could not audit an authz denial: %s", type(exc).__name__)


def init_app(app: Flask, settings: Settings) -> None:
    section: AuthzSettings = settings.section("authz")
    state = AuthzState(app, section)
    app.extensions[EXTENSION] = state
    if state.source is not None and section.unready_on_bad_policy:
        add_readiness_check(app, "authz-policy", state.source.check_ready)
    app.register_blueprint(bp)
