"""A Google IAM Credentials API stand-in (REST), driven in tests through the real `google-cloud-iam` client.

Wire shape (specs/test-infrastructure.md, specs/cloud-identity.md):
`POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken` `{"scope":[...],"lifetime":"600s","delegates":[]}`
-> `{"accessToken","expireTime"}`; `...:generateIdToken` `{"audience","includeEmail"}` -> `{"token"}`.
Errors use Google's JSON error body. Only service accounts listed in `accounts` exist; `down = True` makes
every call a 503, like an outage. Calls are counted per method, so tests can assert cache behaviour.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
from typing import Any

from flask import Flask, Response, jsonify, request


class IamCredentialsStandin:
    def __init__(self, accounts: set[str] | None = None) -> None:
        self.accounts: set[str] = set(accounts or ())
        self.down = False
        self.calls: dict[str, int] = {"generateAccessToken": 0, "generateIdToken": 0}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = self._build()

    def _build(self) -> Flask:
        app = Flask("iam-credentials-standin")

        @app.post("/v1/projects/<project>/serviceAccounts/<path:target>")
        def call(project: str, target: str) -> tuple[Response, int]:
            email, _, method = target.rpartition(":")
            if project != "-" or method not in self.calls:
                return _error(404, "NOT_FOUND", f"method {method!r} not found")
            body = request.get_json(force=True, silent=True)
            if not isinstance(body, dict):
                return _error(400, "INVALID_ARGUMENT", "body must be a JSON object")
            with self._lock:
                self.calls[method] += 1
                self.requests.append({"method": method, "email": email, "body": body})
            if self.down:
                return _error(503, "UNAVAILABLE", "The service is currently unavailable.")
            if email not in self.accounts:
                return _error(404, "NOT_FOUND", f"Service account {email} not found or permission denied.")
            if method == "generateAccessToken":
                return self._access_token(body)
            return self._id_token(email, body)

        return app

    def _access_token(self, body: dict[str, Any]) -> tuple[Response, int]:
        scope = body.get("scope")
        if not isinstance(scope, list) or not scope:
            return _error(400, "INVALID_ARGUMENT", "scope is required")
        lifetime = str(body.get("lifetime") or "3600s")
        try:
            seconds = int(float(lifetime.rstrip("s")))
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "lifetime must look like 3600s")
        if not 1 <= seconds <= 43200:
            return _error(400, "INVALID_ARGUMENT", "lifetime out of range")
        expiry = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=seconds)
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        return jsonify({"accessToken": token, "expireTime": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}), 200

    def _id_token(self, email: str, body: dict[str, Any]) -> tuple[Response, int]:
        audience = body.get("audience")
        if not isinstance(audience, str) or not audience:
            return _error(400, "INVALID_ARGUMENT", "audience is required")
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims: dict[str, Any] = {"iss": "https://accounts.google.com", "aud": audience, "sub": "1" * 21,
                                  "iat": now, "exp": now + 3600}
        if body.get("includeEmail"):
            claims.update(email=email, email_verified=True)
        header = {"alg": "RS256", "typ": "JWT", "kid": "standin"}
        token = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims)) + "." + _b64(b"sig")
        return jsonify({"token": token}), 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _error(code: int, status: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, "status": status}}), code
