"""OIDC client flows for `kagiya login`: discovery, auth-code + PKCE on a loopback redirect (RFC 6749 §4.1,
RFC 7636, RFC 8252 §7.3), the device authorization grant (RFC 8628) and the refresh grant (RFC 6749 §6).

Plain `urllib` on purpose: this runs inside every kubectl call that needs a new token, and the cached path must
not pay for an HTTP library. The ID token is read without checking its signature (`_unverified`): it came straight
from the token endpoint over the connection we opened (OpenID Connect Core §3.1.3.7 allows TLS server validation
in place of the signature check there), and the TokenReview webhook verifies it properly on every use. We still
check `iss`, `aud` and the `nonce` we sent, so a confused or mixed-up issuer is caught here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kagiya.errors import BadRequest, ConfigError, Unauthorized, UpstreamUnavailable

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_RESPONSE_BYTES = 512 * 1024


class GrantRejected(Unauthorized):
    """The issuer refused a grant (`invalid_grant`, `access_denied`, ...): a new login is needed."""


@dataclass(frozen=True)
class Client:
    issuer: str
    client_id: str
    client_secret: str = ""
    scopes: tuple[str, ...] = ("openid", "profile", "email", "offline_access")
    timeout: float = 10.0
    ca_file: str = ""
    _discovery: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- HTTP -------------------------------------------------------------------------------------------------
    def _open(self, req: Any) -> tuple[int, dict[str, Any]]:
        import ssl
        import urllib.error
        import urllib.request

        if not req.full_url.startswith(("https://", "http://")):
            raise ConfigError(f"the OIDC issuer must be an http(s) URL, not {req.full_url.split('?')[0]!r}")
        context = ssl.create_default_context(cafile=self.ca_file or None) if req.full_url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:  # noqa: S310
                status, raw = resp.status, resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(MAX_RESPONSE_BYTES + 1)
            exc.close()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpstreamUnavailable(f"cannot reach the OIDC issuer at {req.full_url.split('?')[0]}: {reason}") \
                from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise UpstreamUnavailable("the OIDC issuer's answer is too large")
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status >= 500:
            raise UpstreamUnavailable(f"the OIDC issuer answered HTTP {status}")
        return status, body

    def _get(self, url: str) -> dict[str, Any]:
        import urllib.request

        status, body = self._open(urllib.request.Request(url, headers={"Accept": "application/json"}))  # noqa: S310
        if status != 200 or not body:
            raise UpstreamUnavailable(f"GET {url} answered HTTP {status}")
        return body

    def _post(self, url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        import urllib.parse
        import urllib.request

        data = dict(form)
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        data["client_id"] = self.client_id
        if self.client_secret:
            data["client_secret"] = self.client_secret
        req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), headers=headers,  # noqa: S310
                                     method="POST")
        return self._open(req)

    def discovery(self) -> dict[str, Any]:
        if not self._discovery:
            doc = self._get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if doc.get("issuer") != self.issuer:
                raise ConfigError(f"the discovery document names issuer {doc.get('issuer')!r}, not {self.issuer!r}")
            self._discovery.update(doc)
        return self._discovery

    def endpoint(self, name: str) -> str:
        url = self.discovery().get(name)
        if not isinstance(url, str) or not url:
            raise ConfigError(f"the issuer {self.issuer} does not advertise {name}")
        return url

    # ---- tokens -----------------------------------------------------------------------------------------------
    def token_request(self, form: dict[str, str], nonce: str = "") -> dict[str, Any]:
        """POST to the token endpoint; returns the cache entry. Raises GrantRejected for OAuth errors."""
        status, body = self._post(self.endpoint("token_endpoint"), form)
        if status != 200:
            error = str(body.get("error") or f"HTTP {status}")
            raise GrantRejected(f"the issuer refused the {form.get('grant_type')} grant: {error}")
        return self.entry_from(body, nonce)

    def entry_from(self, body: dict[str, Any], nonce: str = "", old_refresh: str = "") -> dict[str, Any]:
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise BadRequest("the issuer's token answer has no id_token (is `openid` among the scopes?)")
        claims = claims_unverified(id_token)
        if claims.get("iss") != self.issuer:
            raise BadRequest(f"the ID token's issuer {claims.get('iss')!r} is not {self.issuer!r}")
        aud = claims.get("aud")
        if self.client_id not in (aud if isinstance(aud, list) else [aud]):
            raise BadRequest("the ID token was not issued to this client id")
        if nonce and claims.get("nonce") != nonce:
            raise BadRequest("the ID token's nonce does not match this login")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            raise BadRequest("the ID token has no exp")
        if not 0 < exp <= 253402300799:  # 9999-12-31: an ExecCredential cannot name a later expiry
            raise BadRequest("the ID token's exp is out of range")
        refresh = body.get("refresh_token") or old_refresh
        return {"id_token": id_token, "refresh_token": refresh if isinstance(refresh, str) else "",
                "expiry": int(exp), "sub": str(claims.get("sub", ""))}

    def refresh(self, refresh_token: str, sub: str = "") -> dict[str, Any]:
        """A new entry from the refresh grant; raises GrantRejected when refused or when it names another
        subject (OpenID Connect Core §12.2: a refreshed ID token must keep `sub`)."""
        status, body = self._post(self.endpoint("token_endpoint"),
                                  {"grant_type": "refresh_token", "refresh_token": refresh_token})
        if status != 200:
            raise GrantRejected(f"refresh refused: {body.get('error') or f'HTTP {status}'}")
        # Issuers may or may not rotate the refresh token; keep the old one when no new one is sent.
        entry = self.entry_from(body, old_refresh=refresh_token)
        if sub and entry["sub"] != sub:
            raise GrantRejected("refresh refused: the refreshed ID token names a different subject")
        return entry

    # ---- auth code + PKCE ------------------------------------------------------------------------------------
    def auth_code_login(self, open_browser: Callable[[str], bool], *, port: int = 0, timeout: float = 180.0,
                        say: Callable[[str], None]) -> dict[str, Any]:
        """Run a loopback redirect listener, send the user to the authorize endpoint, exchange the code."""
        import urllib.parse

        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        listener = LoopbackListener(port, state)
        try:
            redirect_uri = listener.redirect_uri
            query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                     "scope": " ".join(self.scopes), "state": state, "nonce": nonce,
                     "code_challenge": challenge, "code_challenge_method": "S256"}
            url = self.endpoint("authorization_endpoint") + "?" + urllib.parse.urlencode(query)
            say(f"kagiya login: open this address to sign in:\n  {url}")
            open_browser(url)
            code = listener.wait(timeout)
        finally:
            listener.close()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        return self.token_request(form, nonce)

    # ---- device code (RFC 8628) ---------------------------------------------------------------------------
    def device_login(self, *, say: Callable[[str], None], timeout: float = 180.0,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
        """The device grant (RFC 8628): poll until approved, denied, the code expires or `timeout` seconds pass
        (`--login-timeout`, as for the auth-code grant: kubectl retries a failed plugin, so an abandoned sign-in
        must not block it until the code expires)."""
        started = clock()
        status, body = self._post(self.endpoint("device_authorization_endpoint"), {"scope": " ".join(self.scopes)})
        if status != 200 or not body.get("device_code") or not body.get("user_code"):
            raise GrantRejected(f"the issuer refused the device authorization: {body.get('error') or status}")
        # RFC 8628 defaults for a missing value; an unusable one (negative, not a number) counts as missing rather
        # than crash the plugin (a negative sleep raises) or poll without pause.
        device_code, interval = str(body["device_code"]), _seconds(body.get("interval"), 5.0)
        expires_in = _seconds(body.get("expires_in"), 600.0)
        deadline = started + min(expires_in, timeout)
        where = body.get("verification_uri_complete") or body.get("verification_uri", "")
        say(f"kagiya login: on any device, open {where}\n  and enter the code {body['user_code']}")
        token_url = self.endpoint("token_endpoint")
        while (remaining := deadline - clock()) > 0:
            sleep(min(interval, remaining))
            status, answer = self._post(token_url, {"grant_type": DEVICE_GRANT, "device_code": device_code})
            if status == 200:
                return self.entry_from(answer)
            error = answer.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5
                continue
            raise GrantRejected(f"device login failed: {error or f'HTTP {status}'}")
        if timeout < expires_in:
            raise GrantRejected(f"device login timed out after {timeout:g}s (--login-timeout): the code was not "
                                "approved in time")
        raise GrantRejected("device login timed out: the code was not approved in time")


def _seconds(value: Any, default: float) -> float:
    """A positive, finite number of seconds from an issuer's JSON answer (a number or numeric string), else default."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    return seconds if 0 < seconds < 86400 * 366 else default


def claims_unverified(jwt: str) -> dict[str, Any]:
    """The payload of a compact JWS, NOT verified (see the module docstring for why that is fine here)."""
    parts = jwt.split(".")
    if len(parts) != 3:
        raise BadRequest("the ID token is not a JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise BadRequest("the ID token's payload is not JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the ID token's payload is not an object")
    return payload


class LoopbackListener:
    """A one-shot HTTP listener on 127.0.0.1 for the authorization redirect (RFC 8252 §7.3)."""

    def __init__(self, port: int, state: str) -> None:
        from http.server import BaseHTTPRequestHandler, HTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.state = state
        self.result: dict[str, str] = {}
        self.done = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlsplit(self.path)
                if url.path != "/callback":
                    self.send_error(404)
                    return
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                if params.get("state") != listener.state:
                    self._page(400, "This sign-in answer does not belong to the running kagiya login.")
                    return
                listener.result = params
                ok = "code" in params
                self._page(200 if ok else 400, "Signed in: you can close this window." if ok
                           else "Sign-in failed: see the terminal.")
                listener.done.set()

            def _page(self, status: int, text: str) -> None:
                body = f"<!doctype html><title>kagiya login</title><p>{text}</p>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep codes out of logs
                return

        try:
            self.server = HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on 127.0.0.1:{port} for the sign-in redirect: {exc.strerror}") \
                from None
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/callback"

    def wait(self, timeout: float) -> str:
        if not self.done.wait(timeout):
            raise GrantRejected(f"no sign-in answer within {int(timeout)} s")
        if "code" not in self.result:
            error = self.result.get("error", "no code")
            raise GrantRejected(f"the issuer refused the sign-in: {error}")
        return self.result["code"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stderr_say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
