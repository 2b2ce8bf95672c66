"""`/openapi.json`: an OpenAPI 3.0 description generated from the app's URL map, so it cannot omit a route.

Views may add detail with `@describe(...)` (request/response schemas, tags); undecorated views still appear,
summarised by their docstring's first line.
"""

from __future__ import annotations

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


def describe(
    summary: str | None = None,
    *,
    tags: list[str] | None = None,
    request_schema: dict[str, Any] | None = None,
    response_schema: dict[str, Any] | None = None,
    request_content_type: str = "application/json",
    responses: dict[str, str] | None = None,
) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        fn._openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "tags": tags,
            "request_schema": request_schema,
            "request_content_type": request_content_type,
            "response_schema": response_schema,
            "responses": responses or {},
        }
        return fn

    return wrap


def build_spec(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue  # the web console's HTML pages (docs/console.md) are not part of the API
        view = app.view_functions[rule.endpoint]
        meta: dict[str, Any] = getattr(view, "_openapi", {})
        path = CONVERTER.sub(lambda m: "{" + m.group("name") + "}", rule.rule)
        params = [
            {
                "name": m.group("name"),
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if m.group("conv") == "int" else "string"},
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
            op: dict[str, Any] = {
                "operationId": op_id,
                "summary": summary,
                "tags": tag,
                "responses": {
                    "200": {"description": "OK", **_content(meta.get("response_schema"))},
                    "default": {
                        "description": "Error",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
                    },
                },
            }
            for code, text in meta.get("responses", {}).items():
                op["responses"][str(code)] = {"description": text}
            if params:
                op["parameters"] = params
            if method in {"POST", "PUT", "PATCH"}:
                schema = meta.get("request_schema") or {"type": "object"}
                ctype = meta.get("request_content_type", "application/json")
                op["requestBody"] = {"required": True, "content": {ctype: {"schema": schema}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "kagiya", "version": _version(), "description": "Keeps a Kubernetes platform's keys."},
        "paths": paths,
        "components": {
            "schemas": {"Status": STATUS_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _content(schema: dict[str, Any] | None) -> dict[str, Any]:
    if not schema:
        return {}
    return {"content": {"application/json": {"schema": schema}}}


def _version() -> str:
    from kagiya import __version__

    return __version__
