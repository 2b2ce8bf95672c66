"""Reading request input in one place, so every view refuses malformed input the same way (400 Status).

Bodies: size (413), JSON syntax, nesting depth (`MAX_JSON_DEPTH`: deep nesting would exhaust the parser's
recursion), lone UTF-16 surrogates and NUL characters in strings (neither can be stored as UTF-8 text nor sent
to PostgreSQL). Query values and path ids: ASCII whole numbers in range (`str.isdigit` accepts "²" and "٣",
which `int` refuses) and RFC 3339 times that stay in range once converted to UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from flask import current_app, request

from kagiya.errors import BadRequest, PayloadTooLarge

MAX_JSON_DEPTH = 64
#: Largest id or offset a query or path may carry (fits a signed 64-bit database integer).
MAX_ID = 2**62
_ESCAPE_RE = re.compile(rb"\\u")
_BAD_TEXT_RE = re.compile("[\x00\ud800-\udfff]")
_DIGITS_RE = re.compile(r"[0-9]{1,19}")


class NotJson(BadRequest):
    """The text is not JSON at all (syntax); callers that also accept YAML fall back on this one only."""


def raw_body(limit: int | None = None) -> bytes:
    """The request body, refused with 413 past `limit` (default: the app's max_request_bytes)."""
    limit = limit or current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    return data


def parse_json(data: bytes | str, what: str = "request body") -> Any:
    """JSON text to Python, or BadRequest: syntax, nesting deeper than MAX_JSON_DEPTH, surrogates, NUL."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise NotJson(f"{what} is not valid JSON{where}") from None
    except RecursionError:
        raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # valid JSON, but an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise BadRequest(f"{what} holds a number with too many digits") from None
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    nested = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    escaped = _ESCAPE_RE.search(raw) is not None
    if nested or escaped:  # the common small body without escapes skips the walk
        _check_tree(parsed, what)
    return parsed


def _check_tree(root: Any, what: str) -> None:
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth >= MAX_JSON_DEPTH:
                raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            for key, value in node.items():
                _check_text(key, what)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth >= MAX_JSON_DEPTH:
                raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str):
            _check_text(node, what)


def _check_text(text: str, what: str) -> None:
    bad = _BAD_TEXT_RE.search(text)
    if bad:
        kind = "NUL characters" if bad.group() == "\x00" else "unpaired UTF-16 surrogates (\\ud800-\\udfff)"
        raise BadRequest(f"{what} holds {kind} in a string")


def json_body(limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object. Content-Type is not required (kube-apiserver clients omit it)."""
    return json_object(raw_body(limit))


def json_object(data: bytes) -> dict[str, Any]:
    """A request body already read (and within its size limit) as a JSON object; 400 otherwise."""
    if not data.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    parsed = parse_json(data)
    if not isinstance(parsed, dict):
        raise BadRequest("request body must be a JSON object")
    return parsed


def require_str(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where}{key} must be a non-empty string")
    return value


def whole_number(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as an ASCII whole number from `low` to `high` (`default` when absent or empty)."""
    value = args.get(name)
    if value is None or value == "":
        return default
    if not _DIGITS_RE.fullmatch(value) or not low <= int(value) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def path_id(value: str, what: str = "id") -> int:
    """A numeric id from a URL path: ASCII digits, at most MAX_ID; 400 otherwise."""
    if not _DIGITS_RE.fullmatch(value) or int(value) > MAX_ID:
        raise BadRequest(f"{value[:40]!r} is not a valid {what} (a whole number)")
    return int(value)


def rfc3339(args: Mapping[str, str], name: str) -> dt.datetime | None:
    """Query parameter `name` as an aware UTC datetime (no offset: UTC), or None when absent; 400 when not an
    RFC 3339 time or out of range once converted to UTC."""
    value = args.get(name)
    if not value:
        return None
    try:
        if not value.isascii():
            raise ValueError(value)
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be an RFC 3339 time from year 0001 to 9999 (UTC)") from None
