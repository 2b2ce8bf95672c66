"""Azure AD / Microsoft Entra ID provider: v2.0 tokens of one tenant, groups from the claim or Microsoft Graph.

Built on `oidc.OidcProvider` (../shared/specs/kubernetes-webhooks.md; Microsoft identity platform "ID token
claims" and "groups overage claim"): keys from the tenant's discovery document
(`<authority>/<tenant>/v2.0/.well-known/openid-configuration`), `iss` pinned to `<authority>/<tenant>/v2.0`,
`tid` must be the tenant (the provider `name` by default, as Guard's client-cert CN), `aud` one of the pinned
client IDs. Groups come from the `groups` claim (object IDs); when the user is in too many groups the token
carries `_claim_names.groups` (or `hasgroups: true`) instead, and the groups are fetched with Graph's
`POST /v1.0/users/{oid}/getMemberObjects` using an app token from the tenant's token endpoint
(client-credentials grant). Graph down or slow is UpstreamUnavailable (503), never an empty group list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kagiya.authn.providers.base import Rejected
from kagiya.authn.providers.oidc import OidcOptions, OidcProvider, _ClaimError, as_strings, validate_options
from kagiya.config import from_mapping
from kagiya.errors import ConfigError, UpstreamUnavailable

MAX_GROUPS = 11000


@dataclass(frozen=True)
class AzureOptions:
    #: Application (client) IDs accepted in `aud`. Required.
    audiences: tuple[str, ...] = ()
    #: Directory (tenant) ID; empty means the provider name.
    tenant_id: str = ""
    authority: str = "https://login.microsoftonline.com"
    username_claim: str = "upn"
    username_prefix: str = ""
    uid_claim: str = "oid"
    groups_prefix: str = ""
    #: Microsoft Graph, for the groups-overage case; credentials of an app with GroupMember.Read.All.
    graph_base_url: str = "https://graph.microsoft.com"
    graph_client_id: str = ""
    graph_client_secret_file: str = ""
    security_groups_only: bool = False
    leeway_seconds: int = 60
    jwks_ttl_seconds: int = 3600
    jwks_min_refresh_seconds: float = 5
    timeout: float = 5.0
    ca_file: str = ""


class AzureProvider(OidcProvider):
    type = "azure"

    def __init__(self, name: str, opts: OidcOptions, azure: AzureOptions, tenant: str, secret: str) -> None:
        super().__init__(name, opts)
        self.azure = azure
        self.tenant = tenant
        self._secret = secret
        self._app_token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    def check_claims(self, claims: Mapping[str, Any]) -> Rejected | None:
        if claims.get("tid") != self.tenant:
            return Rejected("token is from another tenant")
        return super().check_claims(claims)

    def groups_from(self, claims: Mapping[str, Any]) -> list[str]:
        names = claims.get("_claim_names")
        overage = (isinstance(names, Mapping) and "groups" in names) or claims.get("hasgroups") is True
        if not overage:
            return super().groups_from(claims)
        oid = claims.get("oid")
        if not isinstance(oid, str) or not oid:
            raise _ClaimError("token has a groups overage but no oid claim")
        return self._member_objects(oid)

    def _member_objects(self, oid: str) -> list[str]:
        import requests

        if not self.azure.graph_client_id or not self._secret:
            raise UpstreamUnavailable("groups overage: Microsoft Graph credentials are not configured")
        user = requests.utils.quote(oid, safe="")
        url = f"{self.azure.graph_base_url.rstrip('/')}/v1.0/users/{user}/getMemberObjects"
        try:
            resp = self.keys.session.post(
                url, json={"securityEnabledOnly": self.azure.security_groups_only},
                headers={"Authorization": f"Bearer {self._graph_token()}"},
                timeout=self.opts.timeout, allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"Microsoft Graph unreachable ({type(exc).__name__})") from None
        if resp.status_code == 404:
            raise _ClaimError("user not found in the directory")
        if resp.status_code != 200:
            if resp.status_code == 401:
                with self._token_lock:
                    self._app_token = None
            raise UpstreamUnavailable(f"Microsoft Graph answered HTTP {resp.status_code}")
        try:
            values = as_strings(resp.json().get("value"))
        except (ValueError, AttributeError):
            values = None
        if values is None or len(values) > MAX_GROUPS:
            raise UpstreamUnavailable("Microsoft Graph returned an unexpected body")
        return values

    def _graph_token(self) -> str:
        """An app-only Graph token (client-credentials grant), reused until a minute before it expires."""
        import requests

        with self._token_lock:
            if self._app_token is not None and self._app_token[1] > time.monotonic():
                return self._app_token[0]
            endpoint = self.keys.discovery.get("token_endpoint") or (
                f"{self.azure.authority.rstrip('/')}/{self.tenant}/oauth2/v2.0/token")
            form = {"grant_type": "client_credentials", "client_id": self.azure.graph_client_id,
                    "client_secret": self._secret, "scope": f"{self.azure.graph_base_url.rstrip('/')}/.default"}
            try:
                resp = self.keys.session.post(endpoint, data=form, timeout=self.opts.timeout,
                                              allow_redirects=False)
                body = resp.json() if resp.status_code == 200 else {}
            except (requests.RequestException, ValueError) as exc:
                raise UpstreamUnavailable(f"tenant token endpoint failed ({type(exc).__name__})") from None
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise UpstreamUnavailable(f"tenant token endpoint answered HTTP {resp.status_code}")
            lifetime = body.get("expires_in", 300)
            lifetime = float(lifetime) if isinstance(lifetime, (int, float, str)) else 300.0
            self._app_token = (token, time.monotonic() + max(0.0, lifetime - 60))
            return token


def from_config(name: str, options: Mapping[str, Any]) -> AzureProvider:
    where = f"authn.providers[azure/{name}]"
    az = from_mapping(AzureOptions, options, where)
    tenant = az.tenant_id or name
    opts = OidcOptions(
        issuer=f"{az.authority.rstrip('/')}/{tenant}/v2.0", audiences=az.audiences, algorithms=("RS256",),
        username_claim=az.username_claim, username_prefix=az.username_prefix, groups_claim="groups",
        groups_prefix=az.groups_prefix, uid_claim=az.uid_claim, leeway_seconds=az.leeway_seconds,
        jwks_ttl_seconds=az.jwks_ttl_seconds, jwks_min_refresh_seconds=az.jwks_min_refresh_seconds,
        timeout=az.timeout, ca_file=az.ca_file,
    )
    validate_options(opts, where)
    secret = ""
    if az.graph_client_secret_file:
        try:
            secret = Path(az.graph_client_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.graph_client_secret_file: {exc.strerror}") from None
    return AzureProvider(name, opts, az, tenant, secret)
