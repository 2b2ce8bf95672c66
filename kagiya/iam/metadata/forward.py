"""`POST /iam/agent/forward`: the central end of `kagiya agent` (kiam's agent/server split).

The node-local agent receives a pod's metadata request and forwards the evidence (the pod's source IP, its
method, path, query and the few headers the metadata rules look at, including any token) here over mutual TLS,
authenticated as a member of `credentials.agent_groups`. The central service replays the request through the
same metadata views with the pod's IP as the source, so the agent holds no cloud rights and no policy: it only
relays. Only metadata paths can be replayed; the reply carries status, the relevant headers and the body.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kagiya.callers import require_groups
from kagiya.errors import BadRequest
from kagiya.httpjson import json_body
from kagiya.iam.metadata.service import AGENT_SOURCE_IP
from kagiya.openapi import describe

bp = Blueprint("metadata_forward", __name__)
PATH_PREFIXES = ("/latest/", "/computeMetadata/", "/v1/credentials")
FORWARDED_HEADERS = ("X-aws-ec2-metadata-token", "X-aws-ec2-metadata-token-ttl-seconds", "Metadata-Flavor",
                     "Authorization", "X-Forwarded-For", "User-Agent")
REPLY_HEADERS = ("Content-Type", "Metadata-Flavor", "X-aws-ec2-metadata-token-ttl-seconds")
FORWARD_SCHEMA = {
    "type": "object",
    "required": ["sourceIp", "method", "path"],
    "properties": {
        "sourceIp": {"type": "string"}, "method": {"type": "string", "enum": ["GET", "PUT"]},
        "path": {"type": "string"}, "query": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
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
    return {"source": source, "method": method, "path": path, "query": query, "headers": kept}


@bp.post("/iam/agent/forward")
@describe("Agent relay: replay a pod's metadata request with the pod's source IP (agents only, mutual TLS).",
          tags=["metadata"], request_schema=FORWARD_SCHEMA)
def forward() -> Response:
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    settings = current_app.extensions["kagiya.settings"].section("credentials")
    require_groups(settings.agent_groups, "forward pod metadata requests")
    fwd = parse_forward(json_body())
    builder = EnvironBuilder(
        path=fwd["path"], method=fwd["method"], query_string=fwd["query"], headers=fwd["headers"],
        environ_base={"REMOTE_ADDR": fwd["source"], AGENT_SOURCE_IP: fwd["source"]},
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
