"""SubjectAccessReview policy: rules, request attributes and the decision (specs/kubernetes-webhooks.md).

A policy is an ordered list of rules, each `allow` or `deny`. A rule matches a request when its subjects
(users or groups) match and either its resource part (verbs, namespaces, API groups, resources/subresources,
resource names) or its non-resource part (verbs, URL paths) does. Patterns follow RBAC: `*` matches anything,
a trailing `*` matches a prefix, anything else must be equal.

Evaluation: any matching `deny` rule wins over every `allow`; else the first matching `allow` allows; else the
answer is "no opinion" (`allowed: false` without `denied`), so the next authorizer (usually RBAC) decides. With no
policy configured every review is no opinion. Loading and validation live in `authz_policy_file.py`, reload in
`authz_source.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Effect = Literal["allow", "deny"]
Outcome = Literal["allowed", "denied", "no_opinion"]


def pattern_matches(patterns: Sequence[str], value: str) -> bool:
    """RBAC-style match: `*` anything, `prefix*` a prefix, else equality."""
    for pattern in patterns:
        if pattern == "*" or pattern == value:
            return True
        if pattern.endswith("*") and value.startswith(pattern[:-1]):
            return True
    return False


@dataclass(frozen=True)
class Attributes:
    """What a SubjectAccessReview asks: who, and either a resource request or a non-resource request."""

    user: str
    groups: tuple[str, ...] = ()
    verb: str = ""
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def describe(self) -> str:
        """A short human description for audit targets and CLI output."""
        if not self.resource_request:
            return f"{self.verb} {self.path}"
        res = self.resource + (f"/{self.subresource}" if self.subresource else "")
        group = f".{self.api_group}" if self.api_group else ""
        where = f" in {self.namespace}" if self.namespace else " (cluster scope)"
        named = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {res}{group}{named}{where}"


@dataclass(frozen=True)
class Rule:
    """One policy rule. `None` for namespaces/api_groups/resource_names means "any" (the key was omitted)."""

    name: str
    effect: Effect
    line: int = 0
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] | None = None
    api_groups: tuple[str, ...] | None = None
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] | None = None
    non_resource_urls: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.effect} rule {self.name!r}" + (f" (line {self.line})" if self.line else "")

    def subject_matches(self, attrs: Attributes) -> bool:
        if self.users and pattern_matches(self.users, attrs.user):
            return True
        return bool(self.groups) and any(pattern_matches(self.groups, g) for g in attrs.groups)

    def matches(self, attrs: Attributes) -> bool:
        if not self.subject_matches(attrs) or not pattern_matches(self.verbs, attrs.verb):
            return False
        if not attrs.resource_request:
            return bool(self.non_resource_urls) and pattern_matches(self.non_resource_urls, attrs.path)
        if not self.resources:
            return False
        if self.namespaces is not None and not _namespace_matches(self.namespaces, attrs.namespace):
            return False
        if self.api_groups is not None and not pattern_matches(self.api_groups, attrs.api_group):
            return False
        if not _resource_matches(self.resources, attrs.resource, attrs.subresource):
            return False
        return self.resource_names is None or attrs.name in self.resource_names


def _namespace_matches(patterns: Sequence[str], namespace: str) -> bool:
    """`""` in the list matches cluster-scoped requests only; `*` matches every namespace and cluster scope."""
    if not namespace:
        return "" in patterns or "*" in patterns
    return pattern_matches([p for p in patterns if p], namespace)


def _resource_matches(patterns: Sequence[str], resource: str, subresource: str) -> bool:
    """RBAC semantics: `pods` is the resource only, `pods/log` a subresource, `pods/*` every subresource of
    pods, `*/scale` that subresource of anything, `*` everything."""
    combined = f"{resource}/{subresource}" if subresource else resource
    for pattern in patterns:
        if pattern == "*" or pattern == combined:
            return True
        if subresource:
            if pattern == f"{resource}/*" or pattern == f"*/{subresource}":
                return True
    return False


@dataclass(frozen=True)
class Decision:
    """The answer plus the rule that decided it; `also_matched` explains what a deny overrode."""

    outcome: Outcome
    rule: Rule | None = None
    also_matched: tuple[Rule, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"

    @property
    def denied(self) -> bool:
        return self.outcome == "denied"

    @property
    def reason(self) -> str:
        """Short and safe for the apiserver (it appears in its audit log and in kubectl's Forbidden message)."""
        if self.rule is None:
            return "" if self.outcome == "no_opinion" else self.outcome
        verb = "allowed" if self.allowed else "denied"
        return f"kagiya: {verb} by rule {self.rule.name!r}"


NO_OPINION = Decision("no_opinion")


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    source: str = ""

    def evaluate(self, attrs: Attributes) -> Decision:
        """Deny wins; else the first allow; else no opinion."""
        matched = [r for r in self.rules if r.matches(attrs)]
        deny = next((r for r in matched if r.effect == "deny"), None)
        if deny is not None:
            return Decision("denied", deny, tuple(r for r in matched if r is not deny))
        if matched:
            return Decision("allowed", matched[0], tuple(matched[1:]))
        return NO_OPINION

    def counts(self) -> dict[str, int]:
        return {
            "allow": sum(r.effect == "allow" for r in self.rules),
            "deny": sum(r.effect == "deny" for r in self.rules),
        }


def evaluate(policy: Policy | None, attrs: Attributes) -> Decision:
    """No policy configured means no opinion for every review."""
    return NO_OPINION if policy is None else policy.evaluate(attrs)
