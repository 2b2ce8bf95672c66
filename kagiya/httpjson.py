"""Reading request bodies: one place that enforces JSON shape and size, so every view fails the same way."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from kagiya.errors import BadRequest, PayloadTooLarge


def raw_body(limit: int | None = None) -> bytes:
    """The request body, refused with 413 past `limit` (default: the app's max_request_bytes)."""
    limit = limit or current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    return data


def json_body(limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object. Content-Type is not required (kube-apiserver clients omit it)."""
    data = raw_body(limit)
    if not data.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise BadRequest(f"request body is not valid JSON{where}") from None
    if not isinstance(parsed, dict):
        raise BadRequest("request body must be a JSON object")
    return parsed


def require_str(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where}{key} must be a non-empty string")
    return value
