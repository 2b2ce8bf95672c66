"""Settings section `console:` (the approver web console under `/ui/`, docs/console.md)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    #: The address people reach the service at (`https://kagiya.example.com`): links in notifications and the
    #: OIDC redirect URI. Empty: links are left out and the redirect URI is built from the request's host.
    public_url: str = ""
    #: OIDC issuer for sign-in; empty: the issuer of the first `oidc` provider in `authn.providers`. With no issuer
    #: at all the console offers the local static-token sign-in (token file users).
    oidc_issuer: str = ""
    #: OAuth client id; empty: the first audience of that provider.
    oidc_client_id: str = ""
    #: A file holding the client secret, for confidential clients (PKCE is used either way).
    oidc_client_secret_file: str = ""
    oidc_scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: CA bundle for the issuer's TLS (empty: that provider's `ca_file`, else the system trust store).
    oidc_ca_file: str = ""
    #: A session ends after this long without a request, and in any case this long after sign-in.
    session_idle_seconds: int = 30 * 60
    session_absolute_seconds: int = 8 * 3600
    #: Failed static-token sign-ins allowed per client address per minute (per replica); past it, 429.
    signin_failures_per_minute: int = 10
    #: How often the pending-request queue asks for new requests.
    poll_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.public_url:
            url = urllib.parse.urlsplit(self.public_url)
            if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
                raise ValueError("public_url must be an http(s) URL without query or fragment")
        if not 60 <= self.session_idle_seconds <= 24 * 3600:
            raise ValueError("session_idle_seconds must be from 60 to 86400")
        if not self.session_idle_seconds <= self.session_absolute_seconds <= 7 * 24 * 3600:
            raise ValueError("session_absolute_seconds must be from session_idle_seconds to 604800")
        if not 1 <= self.signin_failures_per_minute <= 1000:
            raise ValueError("signin_failures_per_minute must be from 1 to 1000")
        if not 0.5 <= self.poll_seconds <= 300:
            raise ValueError("poll_seconds must be from 0.5 to 300")
        if "openid" not in self.oidc_scopes:
            raise ValueError("oidc_scopes must include openid")
