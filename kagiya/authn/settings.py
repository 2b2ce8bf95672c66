"""Settings section `authn:` (TokenReview webhook and identity providers).

See docs/authn.md for every key. Providers are validated and built once at start-up (`kagiya.authn.routing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AuthnSettings:
    #: kube-apiserver static token CSV (`token,user,uid,"g1,g2"`); env KAGIYA_AUTHN_TOKEN_FILE. Checked first.
    token_file: str = ""
    #: Identity providers: each a mapping with `type` (github, gitlab, google, azure, oidc, ldap, token-auth),
    #: `name` (the org / domain / tenant / instance name; Guard's client-cert CN) and the provider's own options.
    #: `allow_system_names: true` lets that provider return `system:` usernames and groups (refused otherwise).
    providers: tuple[dict[str, Any], ...] = ()
    #: Ordered default chain as "type/name" entries, used when neither a client cert nor the URL names a provider.
    default_chain: tuple[str, ...] = ()
    #: Review results are cached per token hash and route: positive answers this long, rejections shorter.
    cache_ttl_seconds: float = 60.0
    cache_negative_ttl_seconds: float = 10.0
    cache_max_entries: int = 10000
    #: Upper bound on one uncached review (all providers of the route); past it the answer is 503.
    review_timeout_seconds: float = 10.0
    #: HTTP API bearer tokens only: identity-provider rejections allowed per caller address per minute; past it,
    #: uncached tokens from that address get 429 while the token file and cached answers keep working. 0 disables.
    #: The TokenReview webhook is never limited (its one caller, the apiserver, speaks for every user).
    failed_reviews_per_minute: int = 120
    #: Write an audit row for answers served from the cache too (off: only fresh decisions are audited).
    audit_cache_hits: bool = False
    #: Directory for `kagiya authn init` certificates; empty means `<data_dir>/pki`.
    pki_dir: str = ""
