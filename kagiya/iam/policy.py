"""Namespace policy: which cloud identities a namespace's workloads may hold, and who approves requests for them.

Facts: ../shared/specs/cloud-identity.md (kube2iam `iam.amazonaws.com/allowed-roles`,
kiam `iam.amazonaws.com/permitted`).

A policy comes from two places and is merged at read time:
- the stored policy, set by platform admins (`PUT /v1/iam/policies/{namespace}`): allow rules, auto-approve rules,
  approver groups, self-approval, maximum session duration, whether annotation sources are trusted;
- the namespace's own annotations (kube2iam / kiam), which add AWS allow rules.
No rule means deny. Every pattern is anchored (the whole identity must match) and every rule says whether it is a
glob or a regex, so `arn:aws:iam::1:role/app` never allows `arn:aws:iam::1:role/app-admin`.

Glob syntax: `*` matches any run of characters except `/`, `**` any run including `/`, `?` one character except
`/`; everything else is literal. AWS rules whose pattern does not start with `arn:` name a role *name* (kiam style)
and only match roles under the configured `iam.base_role_arn`, never a role in another account.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kagiya.errors import Invalid

Cloud = Literal["aws", "gcp", "azure"]
CLOUDS: tuple[Cloud, ...] = ("aws", "gcp", "azure")
MAX_PATTERN = 512
MAX_RULES = 200
DEFAULT_MAX_SESSION = 3600
ALLOWED_ROLES_ANNOTATION = "iam.amazonaws.com/allowed-roles"
PERMITTED_ANNOTATION = "iam.amazonaws.com/permitted"


@functools.lru_cache(maxsize=4096)
def glob_to_regex(glob: str) -> re.Pattern[str]:
    """Compile an anchored glob (`*` within a path segment, `**` across, `?` one character)."""
    out = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a regex used with fullmatch (so `^`/`$` are optional and anchoring is always on)."""
    return re.compile(pattern)


@dataclass(frozen=True)
class Rule:
    """One allow (or auto-approve) rule: a cloud, a glob or a regex, and a name used in explanations."""

    cloud: Cloud
    kind: Literal["glob", "regex"]
    pattern: str
    name: str

    def matches(self, cloud: str, identity: str, base_role_arn: str = "") -> bool:
        if cloud != self.cloud:
            return False
        compiled = glob_to_regex(self.pattern) if self.kind == "glob" else compile_regex(self.pattern)
        if cloud == "aws" and not _names_arn(self.pattern, self.kind):
            # A bare role-name pattern (kiam style) matches only the role name of a role under the configured
            # base ARN, never a whole identity: `.*-reader` must not allow `arn:aws:iam::999:role/evil-reader`.
            if not base_role_arn or not identity.startswith(base_role_arn):
                return False
            return compiled.fullmatch(identity[len(base_role_arn) :]) is not None
        return compiled.fullmatch(identity) is not None

    def describe(self) -> str:
        return f"{self.name} ({self.cloud} {self.kind} {self.pattern!r})"

    def as_dict(self) -> dict[str, str]:
        return {"cloud": self.cloud, self.kind: self.pattern}


def _names_arn(pattern: str, kind: str) -> bool:
    # A regex may open with anchors or a group before the ARN: `^arn:…`, `(arn:…|arn:…)`, `(?:arn:…)`.
    return pattern.lstrip("^(?:").startswith("arn") if kind == "regex" else pattern.startswith("arn:")


def parse_rule(raw: Any, name: str) -> Rule:
    """A rule from its JSON form `{"cloud": "aws", "glob": "..."}` or `{"cloud": ..., "regex": "..."}`."""
    if not isinstance(raw, Mapping):
        raise Invalid(f"{name}: a rule must be an object with cloud and glob or regex")
    unknown = sorted(set(raw) - {"cloud", "glob", "regex"})
    if unknown:
        raise Invalid(f"{name}: unknown field {unknown[0]!r} (known: cloud, glob, regex)")
    cloud = raw.get("cloud")
    if cloud not in CLOUDS:
        raise Invalid(f"{name}.cloud must be one of {', '.join(CLOUDS)}")
    kinds = [k for k in ("glob", "regex") if k in raw]
    if len(kinds) != 1:
        raise Invalid(f"{name}: state exactly one of glob or regex")
    kind = kinds[0]
    pattern = raw[kind]
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise Invalid(f"{name}.{kind} must be a non-empty string of at most {MAX_PATTERN} characters")
    if kind == "regex":
        try:
            compile_regex(pattern)
        except re.error as exc:
            raise Invalid(f"{name}.regex is not a valid regular expression: {exc}") from None
    return Rule(cloud=cloud, kind=kind, pattern=pattern, name=name)  # type: ignore[arg-type]


@dataclass(frozen=True)
class NamespacePolicy:
    """The effective policy of one namespace (stored part plus annotation rules)."""

    namespace: str
    allow: tuple[Rule, ...] = ()
    auto_approve: tuple[Rule, ...] = ()
    approver_groups: tuple[str, ...] = ()
    #: Whose requests auto-approve rules may approve at once; empty means the approver groups.
    requester_groups: tuple[str, ...] = ()
    allow_self_approval: bool = False
    max_session_seconds: int = DEFAULT_MAX_SESSION
    trust_annotations: bool = True
    #: How the admission webhook gives pods their AWS role: "container-credentials" (kagiya's endpoint, default) or
    #: "web-identity" (the IRSA shape of amazon-eks-pod-identity-webhook; the SDK calls STS itself).
    aws_injection: str = "container-credentials"
    #: True when a platform admin stored a policy for this namespace (not only annotations).
    stored: bool = False
    #: Annotation rules that could not be used (bad JSON, bad regex): shown by explain, never silently allowing.
    problems: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.allow and not self.auto_approve

    def check(self, cloud: str, identity: str, base_role_arn: str = "") -> Decision:
        """Whether `identity` is allowed here, and by which rule (auto-approve rules count as allow rules)."""
        for rule in self.auto_approve:
            if rule.matches(cloud, identity, base_role_arn):
                return Decision(True, rule.describe(), auto_approve=True)
        for rule in self.allow:
            if rule.matches(cloud, identity, base_role_arn):
                return Decision(True, rule.describe())
        if self.empty:
            return Decision(False, f"no policy for namespace {self.namespace!r}: default deny")
        names = ", ".join(r.name for r in (*self.auto_approve, *self.allow) if r.cloud == cloud)
        if not names:
            return Decision(False, f"policy of namespace {self.namespace!r} has no {cloud} rule: default deny")
        return Decision(False, f"{cloud} identity {identity!r} matches none of {names} in namespace {self.namespace!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "allow": [r.as_dict() | {"name": r.name} for r in self.allow],
            "autoApprove": [r.as_dict() | {"name": r.name} for r in self.auto_approve],
            "approverGroups": list(self.approver_groups),
            "requesterGroups": list(self.requester_groups),
            "allowSelfApproval": self.allow_self_approval,
            "maxSessionSeconds": self.max_session_seconds,
            "trustAnnotations": self.trust_annotations,
            "aws_injection": self.aws_injection,
            "stored": self.stored,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    auto_approve: bool = False


POLICY_FIELDS = {"allow", "autoApprove", "approverGroups", "requesterGroups", "allowSelfApproval", "maxSessionSeconds",
                 "trustAnnotations", "aws_injection"}
AWS_INJECTION_MODES = ("container-credentials", "web-identity")


def parse_policy_body(namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a PUT body; returns the canonical stored form (raises Invalid naming the field)."""
    unknown = sorted(set(body) - POLICY_FIELDS - {"namespace", "stored", "problems", "kind", "apiVersion"})
    if unknown:
        raise Invalid(f"unknown policy field {unknown[0]!r} (known: {', '.join(sorted(POLICY_FIELDS))})")
    out: dict[str, Any] = {}
    for key in ("allow", "autoApprove"):
        raw = body.get(key, [])
        if not isinstance(raw, list) or len(raw) > MAX_RULES:
            raise Invalid(f"{key} must be a list of at most {MAX_RULES} rules")
        out[key] = [parse_rule(r, f"{key}[{i}]").as_dict() for i, r in enumerate(raw)]
    for key in ("approverGroups", "requesterGroups"):
        groups = body.get(key, [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise Invalid(f"{key} must be a list of group names")
        out[key] = groups
    for key, default in (("allowSelfApproval", False), ("trustAnnotations", True)):
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise Invalid(f"{key} must be true or false")
        out[key] = value
    seconds = body.get("maxSessionSeconds", DEFAULT_MAX_SESSION)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 900 <= seconds <= 43200:
        raise Invalid("maxSessionSeconds must be a whole number from 900 to 43200 (the STS limits)")
    out["maxSessionSeconds"] = seconds
    mode = body.get("aws_injection", "container-credentials")
    if mode not in AWS_INJECTION_MODES:
        raise Invalid(f"aws_injection must be one of {', '.join(AWS_INJECTION_MODES)}")
    out["aws_injection"] = mode
    del namespace
    return out


def effective_policy(
    namespace: str, stored: Mapping[str, Any] | None, annotations: Mapping[str, str] | None
) -> NamespacePolicy:
    """Merge a stored policy (canonical form) with the namespace's kube2iam/kiam annotations."""
    allow: list[Rule] = []
    auto: list[Rule] = []
    kwargs: dict[str, Any] = {}
    if stored is not None:
        allow = [parse_rule(r, f"allow[{i}]") for i, r in enumerate(stored.get("allow", []))]
        auto = [parse_rule(r, f"autoApprove[{i}]") for i, r in enumerate(stored.get("autoApprove", []))]
        kwargs = {
            "approver_groups": tuple(stored.get("approverGroups", ())),
            "requester_groups": tuple(stored.get("requesterGroups", ())),
            "allow_self_approval": bool(stored.get("allowSelfApproval", False)),
            "max_session_seconds": int(stored.get("maxSessionSeconds", DEFAULT_MAX_SESSION)),
            "trust_annotations": bool(stored.get("trustAnnotations", True)),
            "aws_injection": str(stored.get("aws_injection", "container-credentials")),
            "stored": True,
        }
    extra, problems = annotation_rules(annotations or {})
    return NamespacePolicy(namespace, tuple(allow + extra), tuple(auto), problems=problems, **kwargs)


def annotation_rules(annotations: Mapping[str, str]) -> tuple[list[Rule], tuple[str, ...]]:
    """AWS allow rules from kube2iam `allowed-roles` (JSON list) and kiam `permitted` (one regex)."""
    rules: list[Rule] = []
    problems: list[str] = []
    permitted = annotations.get(PERMITTED_ANNOTATION)
    if permitted is not None:
        name = f"namespace annotation {PERMITTED_ANNOTATION}"
        try:
            rules.append(parse_rule({"cloud": "aws", "regex": permitted}, name))
        except Invalid as exc:
            problems.append(f"{name} ignored: {exc.message}")
    allowed = annotations.get(ALLOWED_ROLES_ANNOTATION)
    if allowed is not None:
        rules_here, problem = _allowed_roles(allowed)
        rules.extend(rules_here)
        if problem:
            problems.append(problem)
    return rules, tuple(problems)


def _allowed_roles(text: str) -> tuple[list[Rule], str]:
    base = f"namespace annotation {ALLOWED_ROLES_ANNOTATION}"
    try:
        items = json.loads(text)
    except ValueError:
        return [], f"{base} ignored: not a JSON list"
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return [], f"{base} ignored: not a JSON list of strings"
    rules = []
    for i, item in enumerate(items[:MAX_RULES]):
        # kube2iam entries are globs; an entry written as ^...$ is taken as a regex.
        kind = "regex" if item.startswith("^") and item.endswith("$") and len(item) > 1 else "glob"
        try:
            rules.append(parse_rule({"cloud": "aws", kind: item}, f"{base}[{i}]"))
        except Invalid as exc:
            return rules, f"{base}[{i}] ignored: {exc.message}"
    return rules, ""


def approver_groups(policy: NamespacePolicy, admin_groups: Sequence[str]) -> tuple[str, ...]:
    """Who may approve in this namespace: the policy's approver groups, and platform admins always."""
    return tuple(dict.fromkeys((*policy.approver_groups, *admin_groups)))


def auto_approving_groups(policy: NamespacePolicy, admin_groups: Sequence[str]) -> tuple[str, ...]:
    """Whose requests auto-approve rules approve at once: `requesterGroups` (else the approver groups) and admins.

    Anyone else's request that an auto-approve rule matches stays `pending`, so a caller cannot bind (or re-point)
    identities in another team's namespace by themselves.
    """
    return tuple(dict.fromkeys((*(policy.requester_groups or policy.approver_groups), *admin_groups)))


# ---- stored policies -------------------------------------------------------------------------------------------


@functools.cache
def _policy_body_query() -> Any:
    """Built once: the metadata path reads the policy on every credential request (so a tightened policy applies at
    once), and building the statement per call cost as much as running it."""
    import sqlalchemy as sa

    from kagiya.iam.schema import policies

    return sa.select(policies.c.body).where(policies.c.namespace == sa.bindparam("namespace"))


def load_stored(store: Any, namespace: str) -> dict[str, Any] | None:
    """The stored (canonical) policy body of `namespace`, or None (read from the store on every call)."""
    with store.connect() as conn:
        row = conn.execute(_policy_body_query(), {"namespace": namespace}).first()
    return json.loads(row[0]) if row else None


def policy_for(ctx: Any, namespace: str) -> NamespacePolicy:
    """The effective policy of `namespace`: stored rules plus the namespace's annotations (when kube is on)."""
    return policy_from_stored(ctx, namespace, load_stored(ctx.store, namespace))


def policy_from_stored(ctx: Any, namespace: str, stored: Mapping[str, Any] | None) -> NamespacePolicy:
    """`policy_for` with the stored body already read (the credential path reads it with the bindings)."""
    annotations: Mapping[str, str] | None = None
    if ctx.kube is not None:
        ns = ctx.kube.namespace(namespace)
        annotations = ns.annotations if ns is not None else None
    return effective_policy(namespace, stored, annotations)


def save_policy(ctx: Any, namespace: str, body: Mapping[str, Any], actor: str, request_id: str) -> dict[str, Any]:
    """Validate and store `body` as the policy of `namespace` (audited); returns the canonical form."""
    import sqlalchemy as sa

    from kagiya import audit
    from kagiya.iam.schema import policies

    canonical = parse_policy_body(namespace, body)
    encoded = json.dumps(canonical, sort_keys=True)
    now = ctx.clock()
    with ctx.store.begin() as conn:
        row = conn.execute(sa.select(policies.c.version).where(policies.c.namespace == namespace)).first()
        if row is None:
            try:
                conn.execute(policies.insert().values(namespace=namespace, body=encoded, version=1,
                                                      updated_by=actor, updated_at=now))
            except sa.exc.IntegrityError:  # another writer stored the first policy since our read: a 409, not a 500
                from kagiya.errors import Conflict

                raise Conflict(f"policy of namespace {namespace!r} changed concurrently; retry") from None
            version = 1
        else:
            version = row[0] + 1
            result = conn.execute(
                policies.update().where(policies.c.namespace == namespace, policies.c.version == row[0])
                .values(body=encoded, version=version, updated_by=actor, updated_at=now)
            )
            if result.rowcount != 1:
                from kagiya.errors import Conflict

                raise Conflict(f"policy of namespace {namespace!r} changed concurrently; retry")
        audit.record(ctx.store, actor=actor, action="iam.policy.update", target=f"iam/policies/{namespace}",
                     outcome="success", request_id=request_id, details={"version": version, "policy": canonical},
                     conn=conn)
    ctx.grants_changed(namespace)
    return canonical


def delete_policy(ctx: Any, namespace: str, actor: str, request_id: str) -> None:
    import sqlalchemy as sa

    from kagiya import audit
    from kagiya.errors import NotFound
    from kagiya.iam.schema import policies

    with ctx.store.begin() as conn:
        result = conn.execute(sa.delete(policies).where(policies.c.namespace == namespace))
        if result.rowcount != 1:
            raise NotFound(f"namespace {namespace!r} has no stored policy")
        audit.record(ctx.store, actor=actor, action="iam.policy.delete", target=f"iam/policies/{namespace}",
                     outcome="success", request_id=request_id, conn=conn)
