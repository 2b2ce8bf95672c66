"""HTTP surface of the authn capability: the TokenReview webhook for kube-apiserver.

Spec: ../shared/specs/kubernetes-webhooks.md ("TokenReview"). Routes:
- `POST /authn/tokenreviews` and Guard's `POST /tokenreviews`: provider from the client certificate's
  `O=`/`CN=` when it names one, else the default chain;
- `POST /authn/<type>/<name>/tokenreviews`: that provider (behind a TLS terminator the cert is not visible).
Answers: 200 + `authenticated` true/false (in the request's apiVersion); 400 Status for a body that is not a
TokenReview; 403 when a verified client certificate names one provider and the path another, or is a node
agent's (`O=agent`); 404 for an
unknown provider in the path; 503 when the identity provider could not answer in time (the apiserver does not
cache non-200 answers). No failed-review rate limit: the apiserver is the only caller (docs/authn.md).
Every review is counted by provider and outcome; fresh decisions are audited with the token's fingerprint.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import Counter

from kagiya import audit, inline
from kagiya.authn import reviews, routing
from kagiya.authn.providers.base import User
from kagiya.authn.settings import AuthnSettings
from kagiya.config import Settings
from kagiya.errors import BadRequest, Forbidden, KagiyaError, UpstreamUnavailable
from kagiya.httpjson import json_body, json_object
from kagiya.metrics import metric
from kagiya.openapi import describe
from kagiya.tls import mtls

log = logging.getLogger("kagiya.authn")
bp = Blueprint("authn", __name__)
STATE = "kagiya.authn.api"

TOKEN_REVIEW_SCHEMA = {
    "type": "object",
    "description": "authentication.k8s.io/v1 or v1beta1 TokenReview",
    "required": ["apiVersion", "kind", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "enum": list(reviews.API_VERSIONS)},
        "kind": {"type": "string", "enum": ["TokenReview"]},
        "spec": {
            "type": "object",
            "required": ["token"],
            "properties": {"token": {"type": "string"}, "audiences": {"type": "array", "items": {"type": "string"}}},
        },
    },
}
TOKEN_REVIEW_REPLY_SCHEMA = {
    "type": "object",
    "description": "TokenReview in the request's apiVersion, with status",
    "properties": {
        "apiVersion": {"type": "string", "enum": list(reviews.API_VERSIONS)},
        "kind": {"type": "string", "enum": ["TokenReview"]},
        "status": {
            "type": "object",
            "properties": {
                "authenticated": {"type": "boolean"},
                "error": {"type": "string"},
                "audiences": {"type": "array", "items": {"type": "string"}},
                "user": {
                    "type": "object",
                    "properties": {
                        "username": {"type": "string"},
                        "uid": {"type": "string"},
                        "groups": {"type": "array", "items": {"type": "string"}},
                        "extra": {"type": "object",
                                  "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                    },
                },
            },
        },
    },
}
REVIEW_RESPONSES = {
    "400": "Not a TokenReview (Status body)",
    "403": "The client certificate names a different provider than the path, or is a node agent's (Status body)",
    "404": "No such provider (path route)",
    "503": "Identity provider unavailable; retry (not cached by the apiserver)",
}


@dataclass
class _State:
    authenticator: routing.Authenticator
    settings: AuthnSettings
    reviews: Counter
    _children: dict[tuple[str, str], Any] = field(default_factory=dict)

    def count(self, provider: str, outcome: str) -> None:
        """Increment the (provider, outcome) counter; labelled children are kept (labels() costs per call)."""
        child = self._children.get((provider, outcome))
        if child is None:
            child = self._children.setdefault((provider, outcome), self.reviews.labels(provider, outcome))
        child.inc()


def _state() -> _State:
    return current_app.extensions[STATE]


@bp.post("/authn/tokenreviews")
@describe("TokenReview webhook (provider from the client certificate, else the default chain).",
          tags=["authn"], request_schema=TOKEN_REVIEW_SCHEMA, response_schema=TOKEN_REVIEW_REPLY_SCHEMA,
          responses=REVIEW_RESPONSES)
def token_review() -> tuple[Response, int]:
    """TokenReview webhook (provider from the client certificate, else the default chain)."""
    return _review(None)


@bp.post("/tokenreviews")
@describe("TokenReview webhook at Guard's path.", tags=["authn"], request_schema=TOKEN_REVIEW_SCHEMA,
          response_schema=TOKEN_REVIEW_REPLY_SCHEMA, responses=REVIEW_RESPONSES)
def guard_token_review() -> tuple[Response, int]:
    """TokenReview webhook at Guard's path."""
    return _review(None)


@bp.post("/authn/<provider_type>/<name>/tokenreviews")
@describe("TokenReview webhook for one configured provider (for deployments behind a TLS terminator).",
          tags=["authn"], request_schema=TOKEN_REVIEW_SCHEMA, response_schema=TOKEN_REVIEW_REPLY_SCHEMA,
          responses=REVIEW_RESPONSES)
def provider_token_review(provider_type: str, name: str) -> tuple[Response, int]:
    """TokenReview webhook for one configured provider."""
    return _review((provider_type, name))


def _review(path_route: tuple[str, str] | None) -> tuple[Response, int]:
    state = _state()
    # The metric label comes from a resolved route only: an unknown path must not mint new label values.
    label = "unknown"
    try:
        route = _route(state.authenticator.providers, path_route, mtls.peer_subject(request.environ))
        label = route.label
        parsed = reviews.parse_token_review(json_body())
        # No failed-review limit here: the apiserver is the webhook's single caller (see Authenticator.review).
        outcome = state.authenticator.review(route, parsed.token, parsed.audiences, timeout=_query_timeout())
    except BadRequest:
        state.count(label, "bad_request")
        raise
    except UpstreamUnavailable as exc:
        state.count(label, "unavailable")
        _audit(label, "error", parsed.token, None, exc.message)
        return jsonify(exc.to_status()), exc.http_status
    except KagiyaError as exc:
        state.count(label, exc.code.lower())
        raise
    result = outcome.decision.result
    if not outcome.cached or state.settings.audit_cache_hits:
        _audit(outcome.decision.provider, "success" if isinstance(result, User) else "denied", parsed.token,
               result if isinstance(result, User) else None, "" if isinstance(result, User) else result.reason,
               cached=outcome.cached)
    return Response(_reply(state, parsed, outcome.decision), mimetype="application/json"), 200


def _cached_review(state: _State, environ: dict[str, Any], args: Mapping[str, Any]) -> tuple[int, bytes] | None:
    """The loop's answer (kagiya.inline) for a review already in the cache, as `_review` would give it; None
    for anything else (a miss, a bad body, a refused route, audited cache hits): `_review` answers those."""
    if state.settings.audit_cache_hits:
        return None  # an audit write may wait on the store
    path_route = (args["provider_type"], args["name"]) if args else None
    try:
        route = _route(state.authenticator.providers, path_route, mtls.peer_subject(environ))
        parsed = reviews.parse_token_review(json_object(environ["wsgi.input"].getvalue()))
    except KagiyaError:
        return None
    decision = state.authenticator.cached(route, parsed.token, parsed.audiences)
    if decision is None:
        return None
    return 200, _reply(state, parsed, decision)


def _reply(state: _State, parsed: reviews.TokenReviewRequest, decision: routing.Decision) -> bytes:
    """The TokenReview answer as compact JSON, counted by deciding provider and outcome."""
    result = decision.result
    if isinstance(result, User):
        state.count(decision.provider, "authenticated")
        body = reviews.authenticated_reply(parsed.api_version, result, parsed.audiences)
    else:
        state.count(decision.provider, "rejected")
        body = reviews.rejected_reply(parsed.api_version, judged_reason(decision.provider, result.reason))
    return json.dumps(body, separators=(",", ":")).encode()


def judged_reason(provider: str, reason: str) -> str:
    """The rejection as the apiserver logs it, naming the provider that judged the token (`ldap/corp: ...`)."""
    return f"{provider}: {reason}" if "/" in provider else reason


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Answer this much before the apiserver gives up, so a 503 reaches it rather than a client-side timeout.
TIMEOUT_MARGIN = 0.5


def _query_timeout() -> float | None:
    # Checking the raw query string first keeps the common no-query request from building request.args.
    return apiserver_timeout(request.args.get("timeout", "")) if request.query_string else None


def apiserver_timeout(value: str) -> float | None:
    """Seconds from the apiserver's `?timeout=` (a Go duration such as `30s` or `1m30s`), less a margin."""
    if not value or len(value) > 32 or _DURATION.sub("", value):
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    return max(0.1, seconds - TIMEOUT_MARGIN) if seconds > 0 else None


def _route(providers: routing.ProviderSet, path_route: tuple[str, str] | None,
           subject: Mapping[str, Sequence[str]] | None) -> routing.Route:
    """The verified client certificate (its `subject`) decides first; a URL path may only repeat what the
    certificate names."""
    if mtls.is_agent_certificate(subject):
        raise Forbidden("a node agent certificate may not ask for token reviews")
    cert_route = providers.cert_route(*routing.subject_fields(subject)) if subject is not None else None
    if path_route is not None:
        if cert_route is not None and not routing.path_matches_cert(cert_route, *path_route):
            raise Forbidden(f"this client certificate is for provider {cert_route.label}; "
                            f"it may not use {path_route[0]}/{path_route[1]}")
        return providers.path_route(*path_route)
    return cert_route or providers.default_route()


def _audit(provider: str, outcome: str, token: str, user: User | None, reason: str, cached: bool = False) -> None:
    details: dict[str, Any] = {"token_fingerprint": audit.fingerprint(token), "provider": provider}
    if user is not None:
        details["groups"] = list(user.groups)
        details["uid"] = user.uid
    if reason:
        details["reason"] = reason
    if cached:
        details["cached"] = True
    try:
        audit.record(current_app.extensions["kagiya.store"], actor=user.username if user else "anonymous",
                     action="authn.tokenreview", target=provider, outcome=outcome,
                     request_id=g.get("request_id", ""), details=details)
    except Exception as exc:  # noqa: BLE001 - an audit store hiccup must not turn a review into a 500
        log.error("audit write failed: %s", type(exc).__name__, extra={"provider": provider})


def init_app(app: Flask, settings: Settings) -> None:
    """Build the providers once (shared with kagiya.callers) and register the webhook routes."""
    authenticator = routing.install(app, settings)
    app.extensions[STATE] = _State(
        authenticator=authenticator,
        settings=settings.section("authn"),
        reviews=metric(app, Counter, "kagiya_authn_token_reviews_total",
                       "TokenReviews by deciding provider and outcome.", ("provider", "outcome")),
    )
    app.register_blueprint(bp)
    state = app.extensions[STATE]
    for endpoint in ("token_review", "guard_token_review", "provider_token_review"):
        inline.register(app, f"{bp.name}.{endpoint}", lambda environ, args: _cached_review(state, environ, args))
