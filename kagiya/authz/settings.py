"""Settings section `authz:` (SubjectAccessReview webhook policy; docs/authz.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuthzSettings:
    #: YAML SubjectAccessReview policy; empty means every review is "no opinion".
    policy_file: str = ""
    #: How often (seconds) the policy file's mtime/size is checked for a reload; 0 checks on every review.
    reload_interval_seconds: float = 1.0
    #: While the file on disk is broken (the previous policy keeps serving), fail the `authz-policy` readiness
    #: check so the problem is visible in /readyz and stops rollouts. Set false to report it only in log/metrics.
    unready_on_bad_policy: bool = True
    #: Write an audit event for every denial (allows and no-opinion answers are counted in /metrics only).
    audit_denials: bool = True
