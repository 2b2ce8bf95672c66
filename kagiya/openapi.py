"""`/openapi.json`: an OpenAPI 3.0 description generated from the app's URL map, so it cannot omit a route.

Views may add detail with `@describe(...)` (request/response schemas, query parameters, security, tags);
undecorated views still appear, summarised by their docstring's first line. What several routes share is
declared once here and applied by path: who may call (security), the paging and filter query parameters, and
the shapes of names and ids (`PATH_PARAMETERS`, `PROPERTY_PATTERNS`: the same regular expressions the views
check with), so clients and fuzzers can build valid requests from the description alone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask

F = TypeVar("F", bound=Callable[..., Any])
CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
STATUS_SCHEMA = {
    "type": "object",
    "description": "Kubernetes-style metav1.Status, returned for every error.",
    "properties": {
        "kind": {"type": "string", "enum": ["Status"]},
        "apiVersion": {"type": "string"},
        "status": {"type": "string"},
        "message": {"type": "string"},
        "reason": {"type": "string"},
        "code": {"type": "integer"},
    },
    "required": ["kind", "status", "message", "code"],
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A token the authn section accepts (static token file, OIDC, Kubernetes ...)."},
    "imdsToken": {"type": "apiKey", "in": "header", "name": "X-aws-ec2-metadata-token",
                  "description": "IMDSv2 session token from PUT /latest/api/token; the pod is known by its address."},
    "gceMetadata": {"type": "apiKey", "in": "header", "name": "Metadata-Flavor",
                    "description": "Must be `Google`; the pod is known by its source address."},
    "containerToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                       "description": "The pod's AWS_CONTAINER_AUTHORIZATION_TOKEN (container credentials)."},
}
MTLS_NOTE = ("With `client_ca` set, callers present a client certificate that CA verified (mutual TLS; OpenAPI 3.0 "
             "cannot declare it); the certificate's O=/CN= choose the provider.")
#: Security by path prefix, first match wins; [] means no credentials (probes, webhooks on mutual TLS).
SECURITY_BY_PREFIX: list[tuple[str, list[dict[str, list[str]]]]] = [
    ("/v1/credentials", [{"containerToken": []}]),
    ("/v1/", [{"bearer": []}]),
    ("/latest/meta-data/", [{"imdsToken": []}]),
    ("/computeMetadata/", [{"gceMetadata": []}]),
    ("/", []),
]
WEBHOOK_PREFIXES = ("/authn/", "/tokenreviews", "/authz/", "/subjectaccessreviews", "/iam/agent/")


def _paging(max_page: int) -> list[dict[str, Any]]:
    return [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": max_page, "default": 100}, "Page size."),
        _query("continue", {"type": "string", "pattern": r"^[0-9]{1,18}$"},
               "The `metadata.continue` of the previous page."),
    ]


def _query(name: str, schema: dict[str, Any], description: str = "", required: bool = False) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        param["description"] = description
    return param


def shared_parameters() -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], list[dict[str, Any]]]]:
    """(path parameter schemas by name, query parameters by (METHOD, path)); built from the views' own checks."""
    from kagiya import audit
    from kagiya.iam import bindings

    label = {"type": "string", "pattern": bindings.DNS_LABEL.pattern, "maxLength": 63}
    subdomain = {"type": "string", "pattern": bindings.DNS_SUBDOMAIN.pattern, "maxLength": 253}
    cloud = {"type": "string", "enum": ["aws", "gcp", "azure"]}
    ident = {"type": "string", "pattern": r"^[0-9]{1,18}$"}
    path: dict[str, dict[str, Any]] = {
        "rid": ident, "bid": ident, "namespace": label,
        "provider_type": {"type": "string", "pattern": r"^[a-z][a-z0-9-]{0,31}$"},
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
        "account": {"type": "string", "pattern": r"^(default|[A-Za-z0-9._@-]{1,254})$"},
        "role": {"type": "string", "pattern": r"^[\w+=,.@-]{1,128}$"},
    }
    when = {"type": "string", "format": "date-time"}
    query = {
        ("GET", "/v1/audit"): [
            _query("actor", {"type": "string"}), _query("action", {"type": "string"}),
            _query("target", {"type": "string"}),
            _query("outcome", {"type": "string", "enum": sorted(audit.OUTCOMES)}),
            _query("requestId", {"type": "string"}),
            _query("since", when, "RFC 3339; events at or after."), _query("until", when, "RFC 3339; before."),
            *_paging(audit.MAX_PAGE)],
        ("GET", "/v1/iam/binding-requests"): [
            _query("namespace", label), _query("serviceAccount", subdomain),
            _query("state", {"type": "string", "enum": list(bindings.STATES)}),
            _query("requester", {"type": "string"}), _query("cloud", cloud), *_paging(bindings.MAX_PAGE)],
        ("GET", "/v1/iam/bindings"): [
            _query("namespace", label), _query("serviceAccount", subdomain), _query("cloud", cloud),
            _query("identity", {"type": "string"}),
            _query("state", {"type": "string", "enum": list(bindings.BINDING_STATES)}), *_paging(bindings.MAX_PAGE)],
        ("GET", "/v1/iam/explain"): [
            _query("namespace", label, required=True), _query("pod", subdomain, "Give pod or serviceAccount."),
            _query("serviceAccount", subdomain), _query("cloud", cloud)],
        ("DELETE", "/v1/iam/bindings/{bid}"): [_query("reason", {"type": "string", "maxLength": 2000})],
    }
    recipients = _query("recipient", {"type": "array", "items": {"type": "string"}},
                        "Recipient key URIs (repeat the parameter); default: the service's recipients.")
    timeout = _query("timeout", {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"},
                     "The apiserver's webhook timeout (a Go duration); kagiya answers before it.")
    for op in ("encrypt", "decrypt"):
        query[("POST", f"/v1/secrets/{op}")] = [recipients]
    for hook in ("/authn/tokenreviews", "/tokenreviews", "/authn/{provider_type}/{name}/tokenreviews"):
        query[("POST", hook)] = [timeout]
    gce = "/computeMetadata/v1/instance/service-accounts"
    recursive = _query("recursive", {"type": "string", "enum": ["true", "false"]})
    query[("GET", f"{gce}/")] = [recursive]
    query[("GET", f"{gce}/{{account}}/")] = [recursive]
    for method in ("GET", "POST"):
        query[(method, f"{gce}/{{account}}/token")] = [_query("scopes", {"type": "string"}, "Comma-separated.")]
    query[("GET", f"{gce}/{{account}}/identity")] = [
        _query("audience", {"type": "string", "maxLength": 2048}, required=True),
        _query("format", {"type": "string", "enum": ["standard", "full"]})]
    return path, query


def property_patterns() -> dict[str, dict[str, Any]]:
    """Schemas for JSON body properties by name, applied wherever a request schema names them."""
    from kagiya.iam import bindings

    return {
        "namespace": {"pattern": bindings.DNS_LABEL.pattern, "maxLength": 63},
        "serviceAccount": {"pattern": bindings.DNS_SUBDOMAIN.pattern, "maxLength": 253},
        "tenant": {"pattern": bindings.AZURE_GUID.pattern},
    }


def describe(
    summary: str | None = None,
    *,
    tags: list[str] | None = None,
    request_schema: dict[str, Any] | None = None,
    response_schema: dict[str, Any] | None = None,
    request_content_type: str = "application/json",
    responses: dict[str, str] | None = None,
    query: list[dict[str, Any]] | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> Callable[[F], F]:
    """Detail for a view's operations. `responses` may name "201" (the success answer is then 201, carrying
    `response_schema`); `query` and `security` override the shared ones for this view."""
    def wrap(fn: F) -> F:
        fn._openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "tags": tags,
            "request_schema": request_schema,
            "request_content_type": request_content_type,
            "response_schema": response_schema,
            "responses": responses or {},
            "query": query,
            "security": security,
        }
        return fn

    return wrap


def _with_patterns(schema: dict[str, Any], patterns: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A copy of `schema` whose string properties named in `patterns` carry those constraints."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        for name, prop in (node.get("properties") or {}).items():
            if isinstance(prop, dict):
                if name in patterns and prop.get("type") == "string" and "enum" not in prop:
                    prop.update(patterns[name])
                stack.append(prop)
        if isinstance(node.get("items"), dict):
            stack.append(node["items"])
    return schema


def _security(path: str) -> list[dict[str, list[str]]]:
    return next(rule for prefix, rule in SECURITY_BY_PREFIX if path.startswith(prefix))


def build_spec(app: Flask) -> dict[str, Any]:
    path_params, query_params = shared_parameters()
    patterns = property_patterns()
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or rule.endpoint.endswith(".static") or rule.endpoint.startswith("console."):
            continue  # the web console's HTML pages (docs/console.md) are not part of the API
        view = app.view_functions[rule.endpoint]
        meta: dict[str, Any] = getattr(view, "_openapi", {})
        path = CONVERTER.sub(lambda m: "{" + m.group("name") + "}", rule.rule)
        params = [
            {
                "name": m.group("name"),
                "in": "path",
                "required": True,
                "schema": {"type": "integer"} if m.group("conv") == "int"
                else path_params.get(m.group("name"), {"type": "string"}),
            }
            for m in CONVERTER.finditer(rule.rule)
        ]
        doc = (view.__doc__ or "").strip().splitlines()
        summary = meta.get("summary") or (doc[0] if doc else rule.endpoint)
        tag = meta.get("tags") or [rule.endpoint.split(".")[0] if "." in rule.endpoint else "core"]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op_id = base_id = f"{rule.endpoint}.{method.lower()}".replace("/", "_")
            n = 1
            while op_id in used_ids:  # one view may serve several rules
                n += 1
                op_id = f"{base_id}{n}"
            used_ids.add(op_id)
            documented = {str(code): text for code, text in meta.get("responses", {}).items()}
            success = "201" if "201" in documented else "200"
            op: dict[str, Any] = {
                "operationId": op_id,
                "summary": summary,
                "tags": tag,
                "security": meta.get("security") if meta.get("security") is not None else _security(path),
                "responses": {
                    success: {"description": documented.pop(success, "OK"), **_content(meta.get("response_schema"))},
                    "default": {
                        "description": "Error",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
                    },
                },
            }
            if path.startswith(WEBHOOK_PREFIXES):
                op["description"] = MTLS_NOTE
            for code, text in documented.items():
                op["responses"][code] = {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
                }
            query: list[dict[str, Any]] = meta.get("query") or query_params.get((method, path), [])
            if params or query:
                op["parameters"] = params + query
            if method in {"POST", "PUT", "PATCH"}:
                schema = _with_patterns(meta.get("request_schema") or {"type": "object"}, patterns)
                ctype = meta.get("request_content_type", "application/json")
                op["requestBody"] = {"required": True, "content": {ctype: {"schema": schema}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "kagiya", "version": _version(), "description": "Keeps a Kubernetes platform's keys."},
        "paths": paths,
        "components": {"schemas": {"Status": STATUS_SCHEMA}, "securitySchemes": SECURITY_SCHEMES},
    }


def _content(schema: dict[str, Any] | None) -> dict[str, Any]:
    if not schema:
        return {}
    return {"content": {"application/json": {"schema": schema}}}


def _version() -> str:
    from kagiya import __version__

    return __version__
