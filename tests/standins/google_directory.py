"""Stand-in for Google's OAuth token endpoint (JWT-bearer grant, RFC 7523) and the Admin SDK Directory API
`GET /admin/directory/v1/groups?userKey=…` with `nextPageToken` paging, in-process on a free loopback port.

    with GoogleDirectory(domain="example.com", page_size=2) as gd:
        gd.memberships["gina@example.com"] = ["dev@example.com", "ops@example.com", "all@example.com"]
        gd.write_key(path)        # a service-account JSON key whose token_uri points here

The token endpoint verifies the assertion's RS256 signature with the service account's public key and checks
`aud`, `scope` and `sub` (the delegated admin), like Google does.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from tests.support.threaded import Serving, ThreadedServer

SCOPE = "https://www.googleapis.com/auth/admin.directory.group.readonly"


class GoogleDirectory(Serving):
    def __init__(self, *, domain: str = "example.com", admin: str = "admin@example.com", page_size: int = 2) -> None:
        self.domain, self.admin, self.page_size = domain, admin, page_size
        self.key = RSAKey.generate_key(2048, parameters={"kid": "sa-key-1"})
        self.client_email = "kagiya-reader@project.iam.gserviceaccount.com"
        self.memberships: dict[str, list[str]] = {}
        self.fail_status = 0
        self.delay = 0.0
        self.hits: Counter[str] = Counter()
        self._tokens: set[str] = set()
        self.app = self._make_app()
        self._server = ThreadedServer(self.app, "google-directory")

    def write_key(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "project", "private_key_id": "sa-key-1",
            "private_key": self.key.as_pem(private=True).decode(), "client_email": self.client_email,
            "token_uri": self.url + "/token",
        }))
        return path

    def _make_app(self) -> Flask:
        app = Flask("google-directory")

        @app.before_request
        def _faults() -> Response | None:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_status:
                return Response(json.dumps({"error": {"code": self.fail_status}}), status=self.fail_status)
            return None

        @app.post("/token")
        def token() -> tuple[Response, int] | Response:
            self.hits["token"] += 1
            if request.form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                return jsonify(error="unsupported_grant_type"), 400
            try:
                claims = jwt.decode(request.form.get("assertion", ""), self.key, algorithms=["RS256"]).claims
            except (JoseError, ValueError):
                return jsonify(error="invalid_grant", error_description="Invalid JWT Signature."), 400
            ok = (claims.get("iss") == self.client_email and claims.get("aud") == self.url + "/token"
                  and claims.get("scope") == SCOPE and claims.get("sub") == self.admin
                  and int(claims.get("exp", 0)) > time.time())
            if not ok:
                return jsonify(error="unauthorized_client"), 401
            access = "ya29." + secrets.token_urlsafe(24)
            self._tokens.add(access)
            return jsonify(access_token=access, token_type="Bearer", expires_in=3599)

        @app.get("/admin/directory/v1/groups")
        def groups() -> tuple[Response, int] | Response:
            self.hits["groups"] += 1
            scheme, _, access = request.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or access not in self._tokens:
                return jsonify(error={"code": 401, "message": "Invalid Credentials"}), 401
            user = request.args.get("userKey", "")
            if user not in self.memberships:
                return jsonify(error={"code": 404, "message": "Resource Not Found: userKey"}), 404
            size = min(int(request.args.get("maxResults", "200")), self.page_size)
            start = int(request.args.get("pageToken") or 0)
            page = self.memberships[user][start:start + size]
            body: dict[str, Any] = {"kind": "admin#directory#groups", "etag": '"x"',
                                    "groups": [{"kind": "admin#directory#group", "id": f"id-{g}", "email": g,
                                                "name": g.split("@")[0]} for g in page]}
            if start + size < len(self.memberships[user]):
                body["nextPageToken"] = str(start + size)
            return jsonify(body)

        return app
