"""Generic OpenID Connect / JWT provider (OpenID Connect Core 1.0 §3.1.3.7, RFC 7519, RFC 7517, RFC 8414-style
discovery), at least as strict as kube-apiserver's own `--authentication-config` JWT authenticator
(../shared/specs/kubernetes-webhooks.md, "Structured authentication config").

- pinned issuer (`iss` must equal it exactly) and audience (`aud` must contain one of `audiences`);
- algorithm allow-list (never `none`, never HMAC: public-key signatures only);
- `exp` required, `nbf` and `iat` checked, each with `leeway_seconds`; optional `max_token_age_seconds`;
- discovery and JWKS fetched once and cached (`jwks_ttl_seconds`), refetched on an unknown `kid` at most once per
  `jwks_min_refresh_seconds`, a failed fetch retried after a short capped backoff, and an unknown kid answered 503
  (not a cacheable denial) while a refetch is impossible (`_jwks.KeyStore`); stale keys serve while the issuer is down;
- claim mappings for username, groups, uid and extra, with username and group prefixes; `email_verified`
  must not be false when the username is the `email` claim (as kube-apiserver), and `require_email_verified`
  also demands its presence. `system:` names are refused by the router unless the provider allows them.
Google and Azure AD build on `OidcProvider` (hooks `check_claims` and `groups_from`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kagiya.authn.providers._jwks import KeyStore
from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.shapes import TokenShape
from kagiya.config import from_mapping
from kagiya.errors import ConfigError

log = logging.getLogger("kagiya.authn.oidc")
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                                "EdDSA"})
MAX_JWT_CHARS = 16 * 1024


@dataclass(frozen=True)
class OidcOptions:
    issuer: str = ""
    #: Accepted `aud` values (the OAuth client IDs). Required.
    audiences: tuple[str, ...] = ()
    #: Where to find keys; empty: `<issuer>/.well-known/openid-configuration` then its `jwks_uri`.
    discovery_url: str = ""
    jwks_uri: str = ""
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    username_claim: str = "sub"
    username_prefix: str = ""
    groups_claim: str = "groups"
    groups_prefix: str = ""
    uid_claim: str = "sub"
    #: extra key -> claim name, e.g. {"example.com/tenant": "tid"}.
    extra_claims: dict[str, str] = field(default_factory=dict)
    require_email_verified: bool = False
    #: When the TokenReview names audiences: true rejects tokens whose `aud` is not among them; false answers
    #: without `status.audiences` (the apiserver then applies its own implicit audiences).
    require_request_audience: bool = False
    leeway_seconds: int = 60
    max_token_age_seconds: int = 0
    jwks_ttl_seconds: int = 3600
    #: An unknown `kid` refetches the JWKS at most this often (seconds); a failed fetch retries sooner (≤ 2 s).
    jwks_min_refresh_seconds: float = 5
    timeout: float = 5.0
    #: CA bundle for the issuer's TLS (empty: system trust store).
    ca_file: str = ""


def validate_options(opts: OidcOptions, where: str) -> None:
    if not opts.issuer:
        raise ConfigError(f"{where}.issuer is required")
    if not opts.audiences:
        raise ConfigError(f"{where}.audiences is required (the client IDs tokens must be issued to)")
    bad = [a for a in opts.algorithms if a not in ALLOWED_ALGORITHMS]
    if bad or not opts.algorithms:
        raise ConfigError(f"{where}.algorithms: {bad[0] if bad else 'empty'} is not allowed "
                          f"(allowed: {', '.join(sorted(ALLOWED_ALGORITHMS))})")
    if opts.timeout <= 0:
        raise ConfigError(f"{where}.timeout must be positive")
    if opts.jwks_min_refresh_seconds < 0 or opts.jwks_ttl_seconds < 0:
        raise ConfigError(f"{where}.jwks_min_refresh_seconds and jwks_ttl_seconds must not be negative")


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def as_strings(value: Any) -> list[str] | None:
    """A claim as a list of strings (a single string counts as one); None when it is neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


class OidcProvider:
    """Provider `oidc`: JWTs from one pinned issuer."""

    type = "oidc"
    #: Tokens are verified here against the issuer's public keys; the token itself is never sent anywhere.
    third_party = False

    def __init__(self, name: str, opts: OidcOptions, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.opts = opts
        self.clock = clock
        self.keys = KeyStore(opts)
        self.algorithms = frozenset(opts.algorithms)

    def claims(self, shape: TokenShape) -> bool:
        """A JWT whose (unverified) `iss` is this provider's issuer."""
        return shape.unverified_issuer is not None and self.issuer_ok(shape.unverified_issuer)

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected:
        """Raises UpstreamUnavailable only when keys are needed and the issuer cannot be reached."""
        if len(token) > MAX_JWT_CHARS or token.count(".") != 2:
            return Rejected("not a JWT")
        header_b64, payload_b64, _ = token.split(".")
        try:
            header = _b64json(header_b64)
            unverified_claims = _b64json(payload_b64)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return Rejected("malformed JWT")
        if not self.issuer_ok(unverified_claims.get("iss")):
            return Rejected("token issuer not accepted")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return Rejected("token signing algorithm not allowed")
        kid = header.get("kid")
        iat = unverified_claims.get("iat")
        keys = self.keys.keys_for(kid if isinstance(kid, str) else None, alg,
                                  iat if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None)
        if not keys:
            return Rejected("token signed by an unknown key")
        from joserfc import jwt
        from joserfc.errors import JoseError

        claims: dict[str, Any] | None = None
        for key in keys:  # one key for a token with a kid; a kid-less token may match any key of its alg
            try:
                claims = jwt.decode(token, key, algorithms=[alg]).claims
                break
            except (JoseError, ValueError):
                continue
        if claims is None:
            return Rejected("invalid token signature")
        if not self.issuer_ok(claims.get("iss")):
            return Rejected("token issuer not accepted")
        problem = self.check_times(claims) or self.check_audience(claims, audiences) or self.check_claims(claims)
        if problem is not None:
            return problem
        return self.user_from(claims, audiences)

    def issuer_ok(self, iss: Any) -> bool:
        return bool(iss == self.opts.issuer)

    def check_times(self, claims: Mapping[str, Any]) -> Rejected | None:
        now, leeway = self.clock(), self.opts.leeway_seconds
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            return Rejected("token has no expiry")
        if exp + leeway < now:
            return Rejected("token expired")
        if nbf is not None and (not isinstance(nbf, (int, float)) or nbf - leeway > now):
            return Rejected("token not yet valid")
        if iat is not None and (not isinstance(iat, (int, float)) or iat - leeway > now):
            return Rejected("token issued in the future")
        if self.opts.max_token_age_seconds and (
            not isinstance(iat, (int, float)) or now - iat > self.opts.max_token_age_seconds + leeway
        ):
            return Rejected("token too old")
        return None

    def token_audiences(self, claims: Mapping[str, Any]) -> list[str]:
        return as_strings(claims.get("aud")) or []

    def check_audience(self, claims: Mapping[str, Any], requested: Sequence[str]) -> Rejected | None:
        aud = self.token_audiences(claims)
        if not set(aud) & set(self.opts.audiences):
            return Rejected("token audience not accepted")
        if requested and self.opts.require_request_audience and not set(aud) & set(requested):
            return Rejected("token audience does not match the requested audiences")
        return None

    def check_claims(self, claims: Mapping[str, Any]) -> Rejected | None:
        """Provider-specific checks (Google `hd`, Azure `tid`); the generic one checks `email_verified`."""
        verified = claims.get("email_verified")
        if self.opts.require_email_verified and verified not in (True, "true"):
            return Rejected("email address not verified")
        if self.opts.username_claim == "email" and "email_verified" in claims and verified not in (True, "true"):
            # As kube-apiserver: an email username is only trusted when the issuer has not said it is unverified.
            return Rejected("email address not verified")
        return None

    def groups_from(self, claims: Mapping[str, Any]) -> list[str]:
        """Group names from the token (Azure overrides this for the groups-overage case)."""
        value = claims.get(self.opts.groups_claim)
        if value is None:
            return []
        groups = as_strings(value)
        if groups is None:
            raise _ClaimError(f"claim {self.opts.groups_claim!r} is not a string list")
        return groups

    def user_from(self, claims: Mapping[str, Any], requested: Sequence[str]) -> User | Rejected:
        username = claims.get(self.opts.username_claim)
        if not isinstance(username, str) or not username:
            return Rejected(f"token has no {self.opts.username_claim!r} claim")
        uid = claims.get(self.opts.uid_claim, "")
        try:
            groups = self.groups_from(claims)
        except _ClaimError as exc:
            return Rejected(str(exc))
        extra: dict[str, tuple[str, ...]] = {}
        for key, claim in self.opts.extra_claims.items():
            values = as_strings(claims.get(claim))
            if values:
                extra[key] = tuple(values)
        valid_for = tuple(a for a in self.token_audiences(claims) if a in set(requested))
        return User(
            username=self.opts.username_prefix + username,
            uid=str(uid) if isinstance(uid, (str, int)) and not isinstance(uid, bool) else "",
            groups=tuple(self.opts.groups_prefix + g for g in groups),
            extra=extra,
            audiences=valid_for,
        )


class _ClaimError(ValueError):
    pass


def from_config(name: str, options: Mapping[str, Any]) -> OidcProvider:
    where = f"authn.providers[oidc/{name}]"
    opts = from_mapping(OidcOptions, options, where)
    validate_options(opts, where)
    return OidcProvider(name, opts)
