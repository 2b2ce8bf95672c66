"""Stand-in OpenID Connect issuer (OpenID Connect Discovery 1.0, RFC 7517 JWKS, RFC 7519 JWTs, RFC 6749/7636/8628).

A small Flask app that speaks the real wire protocol, run in-process on a free loopback port:

    with OidcIssuer() as idp:                      # or OidcIssuer(path="/tenant-id/v2.0") for Azure's shape
        token = idp.mint(sub="alice", aud="kube", email="alice@example.com", groups=["dev"])
        idp.rotate()                               # new signing key (old one stays published unless drop_old=True)
        idp.delay = 3.0                            # every request answers after 3 s (slow upstream)
        idp.fail_status = 503                      # every request answers 503 (broken upstream)
    # idp.stop() (or leaving the block) closes the port: "upstream stopped"; idp.start() again reopens it

Routes (all under `idp.url`, which is also the `iss` claim):
- `GET  /.well-known/openid-configuration`  discovery (`issuer`, `jwks_uri`, endpoints, algorithms)
- `GET  /keys`                               the JWKS (public keys only)
- `GET  /authorize`                          auth-code + PKCE (S256): auto-approves `idp.login_as`, 302 to redirect_uri
- `POST /token`                              grants: authorization_code (PKCE checked), refresh_token,
                                             urn:ietf:params:oauth:grant-type:device_code, client_credentials
- `POST /device/code`                        RFC 8628 device authorization; `idp.approve_device(user_code)` approves

Counters `hits["discovery"]`, `hits["jwks"]`, `hits["token"]` let tests assert what was cached;
`hits["refused"]` counts requests answered with `fail_status`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.support.threaded import Serving, ThreadedServer


class OidcIssuer(Serving):
    """An OIDC issuer on 127.0.0.1:<free port>. Thread-safe enough for concurrent test clients."""

    def __init__(self, *, alg: str = "RS256", path: str = "", client_id: str = "kagiya") -> None:
        self.path = "/" + path.strip("/") if path.strip("/") else ""
        self.client_id = client_id
        self.keys: list[RSAKey | ECKey] = []
        self.signing_key: RSAKey | ECKey | None = None
        self.delay = 0.0
        self.fail_status = 0
        self.hits: Counter[str] = Counter()
        #: Subject and claims that `/authorize` and the device grant log in as.
        self.login_as: dict[str, Any] = {"sub": "alice", "email": "alice@example.com", "groups": ["dev"]}
        self.id_token_lifetime = 300
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._devices: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.rotate(alg)
        self.app = self._make_app()
        # The port is kept after stop(): tokens can still be minted and `start()` reuses the port.
        self._server = ThreadedServer(self.app, "oidc-issuer")

    # ---- lifecycle: start()/stop()/with and `port` come from Serving -----------------------------------------
    @property
    def base_url(self) -> str:
        return self._server.url

    @property
    def url(self) -> str:
        """The issuer identifier (`iss`), e.g. http://127.0.0.1:PORT or http://127.0.0.1:PORT/tenant/v2.0."""
        return self.base_url + self.path

    # ---- keys and tokens -------------------------------------------------------------------------------------
    def rotate(self, alg: str | None = None, *, drop_old: bool = False) -> str:
        """Make a new signing key (RS256 or ES256) and publish it; returns its kid."""
        alg = alg or (self.signing_key.alg if self.signing_key is not None else "RS256") or "RS256"
        kid = "k-" + secrets.token_hex(4)
        params: dict[str, Any] = {"kid": kid, "use": "sig", "alg": alg}
        key: RSAKey | ECKey
        if alg.startswith("ES"):
            key = ECKey.generate_key("P-256", parameters=params)  # type: ignore[arg-type]
        else:
            key = RSAKey.generate_key(2048, parameters=params)  # type: ignore[arg-type]
        with self._lock:
            self.keys = [key] if drop_old else [*self.keys, key]
            self.signing_key = key
        return kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def mint(
        self,
        *,
        key: RSAKey | ECKey | None = None,
        headers: dict[str, Any] | None = None,
        expires_in: int = 300,
        now: float | None = None,
        **claims: Any,
    ) -> str:
        """A signed JWT with iss/iat/nbf/exp filled in (override any by passing it; pass None to omit it)."""
        key = key or self.signing_key
        assert key is not None
        issued = int(now if now is not None else time.time())
        body: dict[str, Any] = {"iss": self.url, "iat": issued, "nbf": issued, "exp": issued + expires_in,
                                "aud": self.client_id, "sub": "alice"}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        header = {"alg": key.alg or "RS256", "kid": key.kid, **(headers or {})}
        return jwt.encode(header, body, key)

    # ---- device grant helper ---------------------------------------------------------------------------------
    def approve_device(self, user_code: str) -> None:
        with self._lock:
            for entry in self._devices.values():
                if entry["user_code"] == user_code:
                    entry["approved"] = True
                    return
        raise KeyError(user_code)

    # ---- the Flask app ---------------------------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("oidc-issuer")
        p = self.path

        @app.before_request
        def _faults() -> Response | None:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_status:
                self.hits["refused"] += 1
                return Response("upstream trouble", status=self.fail_status)
            return None

        @app.get(p + "/.well-known/openid-configuration")
        def discovery() -> Response:
            self.hits["discovery"] += 1
            return jsonify(
                issuer=self.url,
                jwks_uri=self.url + "/keys",
                authorization_endpoint=self.url + "/authorize",
                token_endpoint=self.url + "/token",
                device_authorization_endpoint=self.url + "/device/code",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256", "ES256"],
                grant_types_supported=["authorization_code", "refresh_token", "client_credentials",
                                       "urn:ietf:params:oauth:grant-type:device_code"],
                code_challenge_methods_supported=["S256"],
            )

        @app.get(p + "/keys")
        def keys() -> Response:
            self.hits["jwks"] += 1
            return jsonify(self.jwks())

        @app.get(p + "/authorize")
        def authorize() -> Response:
            args = request.args
            if args.get("response_type") != "code" or args.get("code_challenge_method") != "S256":
                return _oauth_error("invalid_request", "response_type=code and PKCE S256 are required")
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = {"challenge": args.get("code_challenge", ""), "nonce": args.get("nonce"),
                                     "redirect_uri": args.get("redirect_uri", "")}
            query = {"code": code, **({"state": args["state"]} if "state" in args else {})}
            return redirect(f"{args.get('redirect_uri', '')}?{urlencode(query)}")

        @app.post(p + "/device/code")
        def device_code() -> Response:
            device, user_code = secrets.token_urlsafe(16), secrets.token_hex(3).upper()
            with self._lock:
                self._devices[device] = {"user_code": user_code, "approved": False}
            return jsonify(device_code=device, user_code=user_code, verification_uri=self.url + "/device",
                           expires_in=300, interval=1)

        @app.post(p + "/token")
        def token() -> tuple[Response, int] | Response:
            self.hits["token"] += 1
            form = request.form
            grant = form.get("grant_type", "")
            if grant == "authorization_code":
                with self._lock:
                    entry = self._codes.pop(form.get("code", ""), None)
                if entry is None:
                    return _oauth_error("invalid_grant", "unknown or used code")
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if digest != entry["challenge"] or form.get("redirect_uri", "") != entry["redirect_uri"]:
                    return _oauth_error("invalid_grant", "PKCE verifier or redirect_uri mismatch")
                return jsonify(self._tokens(nonce=entry["nonce"]))
            if grant == "refresh_token":
                with self._lock:
                    known = form.get("refresh_token", "") in self._refresh
                if not known:
                    return _oauth_error("invalid_grant", "unknown refresh token")
                return jsonify(self._tokens())
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                with self._lock:
                    entry = self._devices.get(form.get("device_code", ""))
                if entry is None:
                    return _oauth_error("expired_token", "unknown device code")
                if not entry["approved"]:
                    return _oauth_error("authorization_pending", "not yet approved")
                return jsonify(self._tokens())
            if grant == "client_credentials":
                if not form.get("client_id") or not form.get("client_secret"):
                    return _oauth_error("invalid_client", "client_id and client_secret are required", 401)
                access = self.mint(sub=form["client_id"], aud=form.get("scope", ""), expires_in=600)
                return jsonify(access_token=access, token_type="Bearer", expires_in=600)
            return _oauth_error("unsupported_grant_type", grant or "missing grant_type")

        return app

    def _tokens(self, nonce: str | None = None) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[refresh] = {}
        id_token = self.mint(expires_in=self.id_token_lifetime, nonce=nonce, **self.login_as)
        return {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "id_token": id_token,
                "refresh_token": refresh, "expires_in": self.id_token_lifetime}


def _oauth_error(code: str, description: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=code, error_description=description), status
