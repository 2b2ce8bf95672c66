"""Answers the HTTP front gives on its event loop, without a handler thread: requests whose answer the app
already holds in memory (a cached TokenReview).

Why: a replica is one process, and a request that goes through the handler pool costs a thread handoff each
way and Flask's request machinery, several times the work of looking up a cached review. kube-apiserver asks
for the same tokens over and over, so its reviews are the replica's hottest path (docs/operations.md, "Serving
model", has the measurements).

A capability registers a handler for one of its Flask endpoints (`register`). The handler gets the request's
WSGI environ and the route's arguments and returns (status, JSON body), or None whenever it would have to wait
(an upstream call, a store write) or anything about the request is unusual: the handler pool then runs the
request through Flask as usual, which gives the real answer or error. What web.py's request hooks do for every
route happens here too, through the same helpers: the shared refusals (which defer to the pool, so Flask
answers them), the request id, `Cache-Control: no-store`, request metrics and the access log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from werkzeug.exceptions import HTTPException

from kagiya.errors import KagiyaError
from kagiya.serving.wsgi import Response

EXTENSION = "kagiya.inline"
#: Larger bodies go to the pool: parsing one (up to max_request_bytes) would hold the loop, and with it every
#: other connection, for milliseconds. A TokenReview with the longest token allowed is about 16 KiB.
MAX_INLINE_BODY_BYTES = 64 * 1024
#: (WSGI environ, route arguments) -> (HTTP status, JSON body), or None: let the handler pool answer.
InlineHandler = Callable[[dict[str, Any], Mapping[str, Any]], tuple[int, bytes] | None]


def register(app: Any, endpoint: str, handler: InlineHandler) -> None:
    """Let the loop answer requests to Flask endpoint `endpoint` with `handler` when it can."""
    app.extensions.setdefault(EXTENSION, {})[endpoint] = handler


def inline_answerer(app: Any) -> Callable[[dict[str, Any]], Response | None] | None:
    """The front's loop-side answerer for `app`, or None when no capability registered a handler."""
    handlers: dict[str, InlineHandler] = getattr(app, "extensions", {}).get(EXTENSION) or {}
    if not handlers:
        return None
    from kagiya.web import request_checks, request_id, request_recorder

    adapter = app.url_map.bind("localhost")  # no host matching: the host name plays no part in routing
    checks = request_checks(app)
    record = request_recorder(app)

    def answer(environ: dict[str, Any]) -> Response | None:
        started = time.perf_counter()
        if int(environ.get("CONTENT_LENGTH") or 0) > MAX_INLINE_BODY_BYTES:  # the front sets the read length
            return None
        if "HTTP_UPGRADE" in environ:  # Flask's router refuses a WebSocket upgrade to an HTTP route (400)
            return None
        method = environ["REQUEST_METHOD"].upper()  # as Flask routes, counts and logs it
        # PATH_INFO carries the raw bytes as latin-1 (PEP 3333); Flask routes on their UTF-8 reading.
        path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
        try:
            rule, args = adapter.match(path, method, return_rule=True)
        except HTTPException:  # 404, 405 and redirects: Flask answers them
            return None
        handler = handlers.get(rule.endpoint)
        if handler is None or (method == "OPTIONS" and rule.provide_automatic_options):
            return None  # OPTIONS: Flask's automatic answer (Allow), not the view's
        try:
            checks(environ)
        except KagiyaError:
            return None
        result = handler(environ, args)
        if result is None:
            return None
        status, body = result
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("X-Request-Id", rid), ("Cache-Control", "no-store")]
        record(rule.rule, method, status, time.perf_counter() - started, rid)
        return Response(f"{status} {HTTPStatus(status).phrase}", headers, body)

    return answer
