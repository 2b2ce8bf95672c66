"""Google Workspace group lookup through the Admin SDK Directory API, with a service account.

Why a separate module: Google ID tokens carry no groups. With domain-wide delegation, a service account may act
as a Workspace admin (`sub`) and list a user's groups: an OAuth 2.0 JWT-bearer grant (RFC 7523) at the key file's
`token_uri` for scope `admin.directory.group.readonly`, then `GET /admin/directory/v1/groups?userKey=EMAIL`,
following `nextPageToken`. The access token is reused until a minute before it expires. Directory trouble
(unreachable, slow, 5xx, 401/403 misconfiguration) is UpstreamUnavailable: a 503, never an empty group list.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from kagiya.errors import ConfigError, UpstreamUnavailable

SCOPE = "https://www.googleapis.com/auth/admin.directory.group.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_PAGES = 50


class UserNotFound(Exception):
    """The directory does not know the user (a definitive rejection, not an outage)."""


class Directory:
    def __init__(self, *, key_file: str, admin_email: str, base_url: str, timeout: float, session: Any,
                 where: str) -> None:
        try:
            info = json.loads(Path(key_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}.service_account_file: cannot read a JSON key ({type(exc).__name__})") from None
        missing = [k for k in ("client_email", "private_key", "token_uri") if not isinstance(info.get(k), str)]
        if missing:
            raise ConfigError(f"{where}.service_account_file: the key has no {missing[0]!r}")
        if not admin_email:
            raise ConfigError(f"{where}.admin_email is required with service_account_file (domain-wide delegation)")
        from joserfc.jwk import RSAKey

        try:
            self._key = RSAKey.import_key(info["private_key"])
        except Exception:  # noqa: BLE001 - joserfc raises several types for a bad PEM
            raise ConfigError(f"{where}.service_account_file: private_key is not an RSA key") from None
        self.client_email: str = info["client_email"]
        self.token_uri: str = info["token_uri"]
        self.key_id = info.get("private_key_id") or ""
        self.admin_email = admin_email
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def groups_of(self, email: str) -> list[str]:
        """Group email addresses of `email`; raises UserNotFound or UpstreamUnavailable."""
        groups: list[str] = []
        page_token = ""
        for _ in range(MAX_PAGES):
            params = {"userKey": email, "maxResults": "200"}
            if page_token:
                params["pageToken"] = page_token
            data = self._get("/admin/directory/v1/groups", params)
            for group in data.get("groups") or []:
                if isinstance(group, dict) and isinstance(group.get("email"), str):
                    groups.append(group["email"])
            page_token = data.get("nextPageToken") or ""
            if not isinstance(page_token, str) or not page_token:
                return groups
        raise UpstreamUnavailable(f"Directory API: more than {MAX_PAGES} pages of groups")

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        import requests

        try:
            resp = self.session.get(self.base_url + path, params=params, timeout=self.timeout, allow_redirects=False,
                                    headers={"Authorization": f"Bearer {self._access_token()}"})
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"Directory API unreachable ({type(exc).__name__})") from None
        if resp.status_code == 404:
            raise UserNotFound
        if resp.status_code != 200:
            if resp.status_code == 401:
                with self._lock:
                    self._token = None
            raise UpstreamUnavailable(f"Directory API answered HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamUnavailable("Directory API returned an unexpected body")
        return data

    def _access_token(self) -> str:
        import requests
        from joserfc import jwt

        with self._lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
            now = int(time.time())
            header = {"alg": "RS256", **({"kid": self.key_id} if self.key_id else {})}
            assertion = jwt.encode(header, {"iss": self.client_email, "sub": self.admin_email, "scope": SCOPE,
                                            "aud": self.token_uri, "iat": now, "exp": now + 3600}, self._key)
            try:
                resp = self.session.post(self.token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion},
                                         timeout=self.timeout, allow_redirects=False)
                body = resp.json() if resp.status_code == 200 else {}
            except (requests.RequestException, ValueError) as exc:
                raise UpstreamUnavailable(f"Google token endpoint failed ({type(exc).__name__})") from None
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise UpstreamUnavailable(f"Google token endpoint answered HTTP {resp.status_code}")
            lifetime = body.get("expires_in", 300)
            lifetime = float(lifetime) if isinstance(lifetime, (int, float)) else 300.0
            self._token = (token, time.monotonic() + max(0.0, lifetime - 60))
            return token
