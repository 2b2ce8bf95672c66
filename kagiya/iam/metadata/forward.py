"""`POST /iam/agent/forward`: the central end of `kagiya agent` (kiam's agent/server split).

The node-local agent receives a pod's metadata request and forwards the evidence (the pod's source IP, its
method, path, query and the few headers the metadata rules look at, including any token) here over mutual TLS,
authenticated as a member of `credentials.agent_groups`. The central service replays the request through the
same metadata views with the pod's IP as the source, so the agent holds no cloud rights and no policy: it only
relays. Only metadata paths can be replayed; the reply carries status, the relevant headers and the body.
Each agent is bound to its node: its identity names the node (username `system:kagiya-agent:<node>`, prefix set by
`credentials.agent_username_prefix`, or the `authentication.kubernetes.io/node-name` extra), and a request
identified by source IP is refused (403, audited) unless the pod at that IP runs on that node.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kagiya import audit
from kagiya.authn.providers.base import User
from kagiya.callers import require_groups
from kagiya.errors import BadRequest, Forbidden, Unauthorized
from kagiya.httpjson import json_body
from kagiya.iam.metadata.service import AGENT_ACTOR, AGENT_IMDS_SESSION, AGENT_NODE, AGENT_SOURCE_IP
from kagiya.openapi import describe

bp = Blueprint("metadata_forward", __name__)
PATH_PREFIXES = ("/latest/", "/computeMetadata/", "/v1/credentials")
FORWARDED_HEADERS = ("X-aws-ec2-metadata-token", "X-aws-ec2-metadata-token-ttl-seconds", "Metadata-Flavor",
                     "Authorization", "X-Forwarded-For", "User-Agent")
#: TokenReview `extra` key naming the node of a pod-bound token (Kubernetes >= 1.30).
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
REPLY_HEADERS = ("Content-Type", "Metadata-Flavor", "X-aws-ec2-metadata-token-ttl-seconds")
FORWARD_SCHEMA = {
    "type": "object",
    "required": ["sourceIp", "method", "path"],
    "properties": {
        "sourceIp": {"type": "string"}, "method": {"type": "string", "enum": ["GET", "PUT"]},
        "path": {"type": "string"}, "query": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "imdsSession": {"type": "string", "enum": ["agent"],
                        "description": "the agent issued and checked the pod's IMDSv2 session token itself"},
    },
}


def parse_forward(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the agent's envelope; raises BadRequest naming the field."""
    try:
        source = str(ipaddress.ip_address(str(body.get("sourceIp", ""))))
    except ValueError:
        raise BadRequest("sourceIp must be an IP address") from None
    method = body.get("method")
    if method not in ("GET", "PUT"):
        raise BadRequest("method must be GET or PUT")
    path = body.get("path")
    if not isinstance(path, str) or not path.startswith(PATH_PREFIXES) or ".." in path or len(path) > 1024:
        raise BadRequest("path must be a metadata path")
    query = body.get("query", "")
    headers = body.get("headers") or {}
    if not isinstance(query, str) or len(query) > 4096 or not isinstance(headers, dict):
        raise BadRequest("query must be a string and headers an object")
    wanted = {h.lower(): h for h in FORWARDED_HEADERS}
    kept = {wanted[k.lower()]: v for k, v in headers.items()
            if isinstance(k, str) and k.lower() in wanted and isinstance(v, str) and len(v) <= 16384}
    session = body.get("imdsSession")
    if session not in (None, "agent"):
        raise BadRequest("imdsSession must be \"agent\" when given")
    return {"source": source, "method": method, "path": path, "query": query, "headers": kept,
            "agent_session": session == "agent" and method == "GET" and path.startswith("/latest/")}


def agent_node(user: User, prefix: str) -> str:
    """The node an agent speaks for: its identity's node-name extra, else the `<prefix><node>` username."""
    values = tuple(user.extra.get(EXTRA_NODE_NAME, ()))
    if len(values) == 1 and values[0]:
        return str(values[0])
    if prefix and user.username.startswith(prefix) and len(user.username) > len(prefix):
        return user.username[len(prefix):]
    return ""


def agent_from_projected_token(settings: Any) -> User:
    """An agent identified by its own pod's projected service-account token (TokenReview by the API server).

    The token must be bound to a pod, carry `agent_token_audience`, belong to one of `agent_service_accounts`, and
    name the pod's node (`authentication.kubernetes.io/node-name`, Kubernetes >= 1.30). Raises Unauthorized.
    """
    from kagiya.callers import bearer_token
    from kagiya.iam.metadata.service import service_of

    reviewer = service_of().identifier.reviewer
    token = bearer_token()
    if reviewer is None or not token:
        raise Unauthorized("invalid bearer token")
    status = _reviewed(reviewer, token, settings.agent_token_audience)
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    extra = user.get("extra") or {}
    if (not status.get("authenticated") or settings.agent_token_audience not in (status.get("audiences") or ())
            or username not in settings.agent_service_accounts
            or not extra.get("authentication.kubernetes.io/pod-uid")):
        raise Unauthorized("invalid bearer token")
    nodes = tuple(str(n) for n in extra.get(EXTRA_NODE_NAME) or ())
    return User(username=username, extra={EXTRA_NODE_NAME: nodes} if nodes else {})


_REVIEWS: dict[str, tuple[float, dict[str, Any]]] = {}
_REVIEWS_LOCK = threading.Lock()
#: A positive TokenReview of an agent's token is reused this long: one review per agent, not one per relayed request.
AGENT_REVIEW_SECONDS = 30.0


def _reviewed(reviewer: Any, token: str, audience: str) -> dict[str, Any]:
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    now = time.monotonic()
    with _REVIEWS_LOCK:
        cached = _REVIEWS.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    status: dict[str, Any] = reviewer(token, (audience,))
    if status.get("authenticated"):
        with _REVIEWS_LOCK:
            if len(_REVIEWS) > 1000:
                _REVIEWS.clear()
            _REVIEWS[digest] = (now + AGENT_REVIEW_SECONDS, status)
    return status


@bp.post("/iam/agent/forward")
@describe("Agent relay: replay a pod's metadata request with the pod's source IP (agents only, mutual TLS).",
          tags=["metadata"], request_schema=FORWARD_SCHEMA)
def forward() -> Response:
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    settings = current_app.extensions["kagiya.settings"].section("credentials")
    try:
        user = require_groups(settings.agent_groups, "forward pod metadata requests")
    except Unauthorized:
        if not settings.agent_service_accounts:
            raise
        user = agent_from_projected_token(settings)
    node = agent_node(user, settings.agent_username_prefix)
    if not node:
        message = (f"agent identity {user.username!r} names no node (username {settings.agent_username_prefix}"
                   f"<node> or extra {EXTRA_NODE_NAME})")
        audit.record(current_app.extensions["kagiya.store"], actor=user.username, action="iam.agent.forward",
                     target="nodes/", outcome="denied", details={"reason": message})
        raise Forbidden(message)
    fwd = parse_forward(json_body())
    builder = EnvironBuilder(
        path=fwd["path"], method=fwd["method"], query_string=fwd["query"], headers=fwd["headers"],
        environ_base={"REMOTE_ADDR": fwd["source"], AGENT_SOURCE_IP: fwd["source"], AGENT_NODE: node,
                      AGENT_ACTOR: user.username, AGENT_IMDS_SESSION: fwd["agent_session"]},
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    app_iter, status, headers = run_wsgi_app(current_app.wsgi_app, environ, buffered=True)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return jsonify({
        "status": int(status.split(" ", 1)[0]),
        "headers": {k: v for k, v in headers.items() if k in REPLY_HEADERS},
        "body": body.decode("utf-8", "replace"),
    })
