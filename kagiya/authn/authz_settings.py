"""Settings section `authz:` (SubjectAccessReview webhook policy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuthzSettings:
    #: YAML SubjectAccessReview policy; empty means every review is "no opinion".
    policy_file: str = ""
