"""Google provider: Google-issued OpenID Connect ID tokens for one Workspace domain.

Built on `oidc.OidcProvider` (../shared/specs/kubernetes-webhooks.md; Google's "Authenticate with a backend
server" rules): signature from Google's JWKS, `iss` is `https://accounts.google.com` or `accounts.google.com`,
`aud` is one of the pinned client IDs, `email_verified` is true, and `hd` equals the configured domain (the
provider `name` by default, as Guard's client-cert CN). Username is the email, uid the `sub`.

Google ID tokens carry no groups. With `service_account_file` and `admin_email` (domain-wide delegation), the
user's groups are listed through the Admin SDK Directory API (`google_directory.py`); without them, users from
this provider have no groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kagiya.authn.providers.base import Rejected
from kagiya.authn.providers.google_directory import Directory, UserNotFound
from kagiya.authn.providers.oidc import OidcOptions, OidcProvider, _ClaimError, validate_options
from kagiya.config import from_mapping

GOOGLE_ISSUER = "https://accounts.google.com"


@dataclass(frozen=True)
class GoogleOptions:
    #: OAuth client IDs the ID token must be issued to. Required.
    audiences: tuple[str, ...] = ()
    #: The Workspace domain (`hd` claim); empty means the provider name.
    hosted_domain: str = ""
    issuer: str = GOOGLE_ISSUER
    discovery_url: str = ""
    jwks_uri: str = ""
    username_prefix: str = ""
    #: Group lookup: a service-account JSON key with domain-wide delegation, and the admin it acts as.
    service_account_file: str = ""
    admin_email: str = ""
    directory_base_url: str = "https://admin.googleapis.com"
    groups_prefix: str = ""
    leeway_seconds: int = 60
    jwks_ttl_seconds: int = 3600
    jwks_min_refresh_seconds: float = 5
    timeout: float = 5.0
    ca_file: str = ""


class GoogleProvider(OidcProvider):
    type = "google"

    def __init__(self, name: str, opts: OidcOptions, domain: str, directory_options: GoogleOptions | None = None,
                 where: str = "") -> None:
        super().__init__(name, opts)
        self.domain = domain
        self.directory: Directory | None = None
        g = directory_options
        if g is not None and g.service_account_file:
            self.directory = Directory(key_file=g.service_account_file, admin_email=g.admin_email,
                                       base_url=g.directory_base_url, timeout=g.timeout, session=self.keys.session,
                                       where=where)

    def groups_from(self, claims: Mapping[str, Any]) -> list[str]:
        if self.directory is None:
            return []
        try:
            return self.directory.groups_of(str(claims.get("email", "")))
        except UserNotFound:
            raise _ClaimError("user not found in the Google directory") from None

    def issuer_ok(self, iss: Any) -> bool:
        if self.opts.issuer == GOOGLE_ISSUER:
            return iss in (GOOGLE_ISSUER, "accounts.google.com")
        return super().issuer_ok(iss)

    def check_claims(self, claims: Mapping[str, Any]) -> Rejected | None:
        if claims.get("hd") != self.domain:
            return Rejected("token is not from the allowed Google domain")
        return super().check_claims(claims)


def from_config(name: str, options: Mapping[str, Any]) -> GoogleProvider:
    where = f"authn.providers[google/{name}]"
    g = from_mapping(GoogleOptions, options, where)
    opts = OidcOptions(
        issuer=g.issuer, audiences=g.audiences, discovery_url=g.discovery_url, jwks_uri=g.jwks_uri,
        algorithms=("RS256",), username_claim="email", username_prefix=g.username_prefix, groups_claim="",
        groups_prefix=g.groups_prefix,
        uid_claim="sub", require_email_verified=True, leeway_seconds=g.leeway_seconds,
        jwks_ttl_seconds=g.jwks_ttl_seconds, jwks_min_refresh_seconds=g.jwks_min_refresh_seconds,
        timeout=g.timeout, ca_file=g.ca_file,
    )
    validate_options(opts, where)
    return GoogleProvider(name, opts, g.hosted_domain or name, g, where)
