"""Settings sections owned by the authn capability (`authn:` and `authz:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuthnSettings:
    #: kube-apiserver static token CSV (`token,user,uid,"g1,g2"`); env KAGIYA_AUTHN_TOKEN_FILE.
    token_file: str = ""


@dataclass(frozen=True)
class AuthzSettings:
    #: YAML SubjectAccessReview policy; empty means every review is "no opinion".
    policy_file: str = ""
