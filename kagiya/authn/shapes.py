"""What a bearer token looks like, decided locally before any provider sees it.

Why: a token must only ever be sent to a provider that can have issued it. Before this module the default chain
asked every provider in turn, so an LDAP password (`base64("bob:bob-pass")`) or a corporate ID token also went to
GitHub's and GitLab's `/user` endpoints. Now each provider declares the shapes it accepts
(`Provider.claims(shape)`), and the router (`routing.run_chain`) asks only the providers that claim the token:
- a JWT (three base64url segments whose header and payload are JSON objects) is claimed by the OIDC, Google and
  Azure providers whose issuer equals its `iss`, read here WITHOUT verifying anything (routing only; the claimed
  provider then verifies the signature against its own keys);
- GitHub and GitLab claim their documented token prefixes (`ghp_`, `github_pat_`, `glpat-` ...); prefix-less
  legacy tokens only when the admin opts in per provider (`legacy_tokens: true`);
- LDAP claims Guard's format: standard base64 of `username:password`;
- the static token file claims the tokens it holds (a local lookup).
Nothing here performs I/O, and a `TokenShape` never shows the token in its repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Longest token inspected as a JWT (the OIDC provider's own limit).
MAX_JWT_CHARS = 16 * 1024
#: Longest token inspected as base64 `user:password`.
MAX_BASIC_CHARS = 8 * 1024
_B64URL_SEGMENT = re.compile(r"[A-Za-z0-9_-]+={0,2}")


@dataclass(frozen=True)
class TokenShape:
    """The locally visible facts about one token; computed once per review by `inspect`."""

    token: str = field(repr=False)
    #: The `iss` of a JWT-shaped token, NOT verified: only good for choosing which provider verifies it.
    unverified_issuer: str | None = None
    #: True for Guard's LDAP format, base64 (standard alphabet) of `username:password` with a non-empty username.
    basic_credentials: bool = False

    @property
    def is_jwt(self) -> bool:
        return self.unverified_issuer is not None

    def has_prefix(self, prefixes: Iterable[str]) -> bool:
        return any(p and self.token.startswith(p) for p in prefixes)

    def matches(self, pattern: re.Pattern[str]) -> bool:
        return pattern.fullmatch(self.token) is not None


def inspect(token: str) -> TokenShape:
    """The shape of `token`; never raises, never calls anything."""
    return TokenShape(token, unverified_issuer=_unverified_issuer(token), basic_credentials=_is_basic(token))


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _unverified_issuer(token: str) -> str | None:
    if len(token) > MAX_JWT_CHARS or token.count(".") != 2:
        return None
    header_b64, payload_b64, _ = token.split(".")
    if not (_B64URL_SEGMENT.fullmatch(header_b64) and _B64URL_SEGMENT.fullmatch(payload_b64)):
        return None
    try:
        header, claims = _b64url_json(header_b64), _b64url_json(payload_b64)
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        # RecursionError: a few KiB of `[[[[...` nest deeper than the json module recurses (not a ValueError).
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) and iss else None


def _is_basic(token: str) -> bool:
    if not token or len(token) > MAX_BASIC_CHARS or len(token) % 4:
        return False
    try:
        text = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return False
    username, sep, _ = text.partition(":")
    return bool(sep and username and username.isprintable())
