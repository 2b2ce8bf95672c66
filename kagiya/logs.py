"""Structured JSON log lines with the request id; one line per event, never a secret.

Log records may carry `extra={"audit": {...}}` or other JSON-able extras under known keys; the formatter
copies them into the line. Tokens never reach here: callers log `audit.fingerprint(token)` instead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

EXTRA_KEYS = ("audit", "route", "method", "status", "duration_ms", "remote", "provider", "outcome", "path")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = record.__dict__.get("request_id") or _request_id()  # given when logged outside a request
        if request_id:
            line["requestId"] = request_id
        for key in EXTRA_KEYS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["trace"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _request_id() -> str:
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - flask is a hard dependency of the service
        return ""
    if has_request_context():
        return str(g.get("request_id", ""))
    return ""


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Send kagiya's loggers to one JSON stream (stderr by default). Idempotent."""
    root = logging.getLogger("kagiya")
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if getattr(handler, "_kagiya", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._kagiya = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = True
