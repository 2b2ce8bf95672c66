"""HTTP surface of the iam capability: binding requests, bindings, namespace policies and explain.

Routes (docs/iam.md): `POST/GET /v1/iam/binding-requests`, `POST /v1/iam/binding-requests/{id}/approve|deny`,
`GET /v1/iam/bindings`, `DELETE /v1/iam/bindings/{id}`, `GET/PUT/DELETE /v1/iam/policies/{namespace}`,
`GET /v1/iam/explain`. Every route needs an authenticated caller; policies are written by platform admins.
Views are thin: parse, call `bindings` / `policy` / `resolve`, shape the reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from kagiya.callers import caller_from_request, require_admin
from kagiya.config import Settings
from kagiya.core_api import add_after_fork, add_readiness_check
from kagiya.errors import BadRequest, KagiyaError, NotFound
from kagiya.httpjson import MAX_ID, json_body, path_id, whole_number
from kagiya.iam import bindings, policy
from kagiya.iam.context import EXTENSION, IamContext, iam_context
from kagiya.iam.policy import CLOUDS, MAX_PATTERN, MAX_RULES
from kagiya.iam.resolve import resolve_all
from kagiya.openapi import describe

bp = Blueprint("iam", __name__)
log = logging.getLogger("kagiya.iam")
API_VERSION = "kagiya.io/v1"

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["namespace", "serviceAccount", "cloud", "identity"],
    "additionalProperties": False,
    "properties": {
        "namespace": {"type": "string"}, "serviceAccount": {"type": "string"},
        "cloud": {"type": "string", "enum": ["aws", "gcp", "azure"]},
        "identity": {"type": "string", "description": "role ARN, service-account email or Azure client id"},
        "tenant": {"type": "string"}, "externalId": {"type": "string", "maxLength": 1224},
        "podSelector": {"type": "object", "additionalProperties": False, "properties": {"matchLabels": {
            "type": "object", "additionalProperties": {"type": "string",
                                                       "pattern": bindings.LABEL_VALUE.pattern}}}},
        "ttlSeconds": {"type": "integer", "minimum": 60}, "reason": {"type": "string", "maxLength": 2000},
    },
    # the identity's shape follows the cloud (bindings.check_identity)
    "anyOf": [
        {"properties": {"cloud": {"enum": ["aws"]}, "identity": {"pattern": bindings.AWS_ROLE_ARN.pattern}}},
        {"properties": {"cloud": {"enum": ["gcp"]}, "identity": {"pattern": bindings.GCP_SA_EMAIL.pattern}}},
        {"properties": {"cloud": {"enum": ["azure"]}, "identity": {"pattern": bindings.AZURE_GUID.pattern}},
         "required": ["tenant"]},
    ],
}
_PATTERN = {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN}
RULE_SCHEMA = {"type": "object", "additionalProperties": False,
               "properties": {"cloud": {"type": "string", "enum": list(CLOUDS)}, "glob": _PATTERN, "regex": _PATTERN},
               "required": ["cloud"], "oneOf": [{"required": ["glob"]}, {"required": ["regex"]}]}
_RULES = {"type": "array", "maxItems": MAX_RULES, "items": RULE_SCHEMA}
POLICY_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "allow": _RULES, "autoApprove": _RULES,
        "approverGroups": {"type": "array", "items": {"type": "string"}},
        "requesterGroups": {"type": "array", "items": {"type": "string"}},
        "allowSelfApproval": {"type": "boolean"},
        "maxSessionSeconds": {"type": "integer", "minimum": 900, "maximum": 43200},
        "trustAnnotations": {"type": "boolean"},
        "aws_injection": {"type": "string", "enum": ["container-credentials", "web-identity"],
                          "description": "what the admission webhook injects for an AWS role"},
    },
}
LIST_SCHEMA = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                                "metadata": {"type": "object"}}}


def _ctx() -> IamContext:
    return iam_context(current_app)


def _page(kind: str, items: list[dict[str, Any]], next_id: int | None) -> Response:
    meta = {"continue": str(next_id)} if next_id is not None else {}
    return jsonify({"kind": kind, "apiVersion": API_VERSION, "metadata": meta, "items": items})


def _paging(args: Mapping[str, str], allowed: set[str]) -> tuple[dict[str, str], int, int]:
    unknown = sorted(set(args) - allowed - {"limit", "continue"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r} (known: {', '.join(sorted(allowed))}, limit, "
                         "continue)")
    after = whole_number(args, "continue", 0, 0, MAX_ID)
    limit = whole_number(args, "limit", 100, 1, bindings.MAX_PAGE)
    return {k: v for k, v in args.items() if k in allowed}, after, limit


def _id(value: str) -> int:
    return path_id(value)


@bp.post("/v1/iam/binding-requests")
@describe("Request a binding; the namespace policy answers approved, pending or denied (403 naming the rule).",
          request_schema=REQUEST_SCHEMA, responses={"201": "created (approved or pending)", "403": "denied"})
def create_request() -> tuple[Response, int]:
    caller = caller_from_request()
    ctx = _ctx()
    spec = bindings.parse_request(json_body(), ctx.iam.max_binding_ttl_seconds, ctx.iam.azure_tenant_id)
    return jsonify(bindings.create_request(ctx, caller, spec, g.request_id)), 201


@bp.get("/v1/iam/binding-requests")
@describe("List binding requests (filters: namespace, serviceAccount, state, requester, cloud; paging).",
          response_schema=LIST_SCHEMA)
def list_requests() -> Response:
    caller_from_request()
    filters, after, limit = _paging(request.args, {"namespace", "serviceAccount", "state", "requester", "cloud"})
    if filters.get("state") and filters["state"] not in bindings.STATES:
        raise BadRequest(f"state must be one of {', '.join(bindings.STATES)}")
    items, next_id = bindings.list_requests(_ctx(), filters, after, limit)
    return _page("BindingRequestList", items, next_id)


@bp.get("/v1/iam/binding-requests/<rid>")
def get_request(rid: str) -> Response:
    """One binding request."""
    caller_from_request()
    return jsonify(bindings.request_dict(bindings.get_request(_ctx(), _id(rid))))


def _decide(rid: str, verdict: str) -> Response:
    caller = caller_from_request()
    body = json_body() if request.content_length else {}
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise BadRequest("reason must be a string of at most 2000 characters")
    return jsonify(bindings.decide(_ctx(), caller, _id(rid), verdict, reason, g.request_id))


@bp.post("/v1/iam/binding-requests/<rid>/approve")
@describe("Approve a pending request (approver groups; not the requester unless self-approval is allowed).",
          responses={"403": "not an approver, or own request", "409": "already decided"})
def approve(rid: str) -> Response:
    return _decide(rid, "approved")


@bp.post("/v1/iam/binding-requests/<rid>/deny")
@describe("Deny a pending request (approver groups).", responses={"403": "not an approver", "409": "decided"})
def deny(rid: str) -> Response:
    return _decide(rid, "denied")


@bp.get("/v1/iam/bindings")
@describe("List bindings (filters: namespace, serviceAccount, cloud, identity, state=active|expired|revoked).",
          response_schema=LIST_SCHEMA)
def list_bindings() -> Response:
    caller_from_request()
    filters, after, limit = _paging(request.args, {"namespace", "serviceAccount", "cloud", "identity", "state"})
    if filters.get("state") and filters["state"] not in bindings.BINDING_STATES:
        raise BadRequest(f"state must be one of {', '.join(bindings.BINDING_STATES)}")
    items, next_id = bindings.list_bindings(_ctx(), filters, after, limit)
    return _page("BindingList", items, next_id)


@bp.get("/v1/iam/bindings/<bid>")
def get_binding(bid: str) -> Response:
    """One binding."""
    caller_from_request()
    return jsonify(bindings.get_binding(_ctx(), _id(bid)).as_dict())


@bp.delete("/v1/iam/bindings/<bid>")
@describe("Revoke a binding (its creator, the namespace's approvers, platform admins).")
def revoke(bid: str) -> Response:
    caller = caller_from_request()
    reason = request.args.get("reason", "")
    return jsonify(bindings.revoke(_ctx(), caller, _id(bid), reason[:2000], g.request_id))


@bp.get("/v1/iam/policies/<namespace>")
@describe("The effective policy of a namespace (stored rules plus kube2iam/kiam namespace annotations).")
def get_policy(namespace: str) -> Response:
    caller_from_request()
    return jsonify(policy.policy_for(_ctx(), namespace).as_dict())


@bp.put("/v1/iam/policies/<namespace>")
@describe("Set the stored policy of a namespace (platform admins).", request_schema=POLICY_SCHEMA)
def put_policy(namespace: str) -> Response:
    caller = require_admin("set iam policies")
    if not bindings.DNS_LABEL.match(namespace):
        raise BadRequest(f"{namespace!r} is not a valid namespace name")
    ctx = _ctx()
    policy.save_policy(ctx, namespace, json_body(), caller.username, g.request_id)
    return jsonify(policy.policy_for(ctx, namespace).as_dict())


@bp.delete("/v1/iam/policies/<namespace>")
def delete_policy(namespace: str) -> Response:
    """Delete the stored policy of a namespace (platform admins); annotation rules remain."""
    caller = require_admin("delete iam policies")
    policy.delete_policy(_ctx(), namespace, caller.username, g.request_id)
    return jsonify({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})


@bp.get("/v1/iam/explain")
@describe("Which identity a pod or service account gets, from which source, allowed or refused by which rule.")
def explain() -> Response:
    caller_from_request()
    args = request.args
    unknown = sorted(set(args) - {"namespace", "pod", "serviceAccount", "cloud"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}")
    return jsonify(explanation(_ctx(), args.get("namespace", ""), args.get("pod", ""), args.get("serviceAccount", ""),
                               args.get("cloud", "")))


def explanation(ctx: IamContext, namespace: str, pod_name: str, sa_name: str, cloud: str = "") -> dict[str, Any]:
    """What `GET /v1/iam/explain` answers (the web console shows the same); raises BadRequest, NotFound."""
    if not namespace or bool(pod_name) == bool(sa_name):
        raise BadRequest("give namespace and exactly one of pod or serviceAccount")
    pod = None
    if pod_name:
        pod = ctx.kube_index().pod(namespace, pod_name)
        if pod is None:
            raise NotFound(f"pod {namespace}/{pod_name} not found in the Kubernetes index")
        sa_name = pod.service_account
    results = resolve_all(ctx, namespace, sa_name, pod)
    if cloud:
        if cloud not in results:
            raise BadRequest("cloud must be one of aws, gcp, azure")
        results = {cloud: results[cloud]}
    return {
        "kind": "IamExplanation", "apiVersion": API_VERSION, "namespace": namespace, "serviceAccount": sa_name,
        "pod": pod.name if pod else None, "podUid": pod.uid if pod else None,
        "policy": policy.policy_for(ctx, namespace).as_dict(),
        "results": [r.as_dict() for r in results.values()],
    }


def init_app(app: Flask, settings: Settings) -> None:
    ctx = IamContext.build(settings, app.extensions["kagiya.store"])
    app.extensions[EXTENSION] = ctx
    if ctx.watcher is not None:
        watcher = ctx.watcher
        add_readiness_check(app, "kube", watcher.check_ready)
        add_after_fork(app, "kube watches", watcher.ensure_running)

        @app.before_request
        def _kube_watch_running() -> None:
            # Start (or restart after a failure) the watches in the serving process, once per process.
            # A failure here must not break unrelated routes; /readyz reports it (its check retries the start).
            try:
                watcher.ensure_running()
            except KagiyaError as exc:
                log.warning("kubernetes watches not started: %s", exc.message)

    app.register_blueprint(bp)
