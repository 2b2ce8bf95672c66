"""Stand-in Microsoft Graph: `POST /v1.0/users/{id}/getMemberObjects` (Graph REST v1.0), in-process.

It accepts only app tokens signed by the given `OidcIssuer` (checked against its JWKS, like Graph checks
Entra ID tokens), answers `{"value": [object ids]}`, 404 with Graph's error shape for unknown users, and
`fail_status` / `delay` simulate an unhealthy Graph.

    with MsGraph(issuer, members={"oid-1": ["g1", "g2"]}) as graph:
        graph.url  # graph_base_url
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from flask import Flask, Response, jsonify, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tests.standins.oidc_issuer import OidcIssuer
from tests.support.threaded import Serving, ThreadedServer


class MsGraph(Serving):
    def __init__(self, issuer: OidcIssuer, members: dict[str, list[str]] | None = None) -> None:
        self.issuer = issuer
        self.members = members or {}
        self.fail_status = 0
        self.delay = 0.0
        self.hits: Counter[str] = Counter()
        self.app = self._make_app()
        self._server = ThreadedServer(self.app, "msgraph")

    def _make_app(self) -> Flask:
        app = Flask("msgraph")

        @app.post("/v1.0/users/<user_id>/getMemberObjects")
        def member_objects(user_id: str) -> tuple[Response, int] | Response:
            self.hits["getMemberObjects"] += 1
            if self.delay:
                time.sleep(self.delay)
            if self.fail_status:
                return _error("serviceNotAvailable", "try later", self.fail_status)
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            try:
                jwt.decode(token, KeySet.import_key_set(self.issuer.jwks()))  # type: ignore[arg-type]
            except (JoseError, ValueError):
                return _error("InvalidAuthenticationToken", "Access token validation failure.", 401)
            body: Any = request.get_json(force=True, silent=True)
            if scheme != "Bearer" or not isinstance(body, dict) or "securityEnabledOnly" not in body:
                return _error("Request_BadRequest", "securityEnabledOnly is required", 400)
            if user_id not in self.members:
                return _error("Request_ResourceNotFound", f"Resource '{user_id}' does not exist", 404)
            return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
                            "value": self.members[user_id]})

        return app


def _error(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status
