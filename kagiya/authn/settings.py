"""Settings section `authn:` (TokenReview webhook and identity providers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AuthnSettings:
    #: kube-apiserver static token CSV (`token,user,uid,"g1,g2"`); env KAGIYA_AUTHN_TOKEN_FILE. Checked first.
    token_file: str = ""
    #: Identity providers: each a mapping with `type` (github, gitlab, google, azure, oidc, ldap, token-auth),
    #: `name` (the org / domain / tenant / instance name; Guard's client-cert CN) and the provider's own options.
    providers: tuple[dict[str, Any], ...] = ()
    #: Ordered default chain as "type/name" entries, used when neither a client cert nor the URL names a provider.
    default_chain: tuple[str, ...] = ()
