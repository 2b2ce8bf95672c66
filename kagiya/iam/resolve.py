"""Resolution: which cloud identity a workload gets, from which source, and which policy rule allowed or refused it.

Facts: ../shared/specs/cloud-identity.md. This is the stable contract the credential path (identity.py,
credentials.py, metadata/, admission.py) calls:

    from kagiya.iam.context import iam_context          # ctx = iam_context(current_app)  (or app)
    from kagiya.iam.resolve import resolve_workload, resolve_all, Resolution, CloudIdentity

    ctx = iam_context(app)
    index = ctx.kube_index()              # KubeIndex; raises UpstreamUnavailable when kube.mode is off
    pod = index.pod_by_uid(uid)           # or index.pods_by_ip(ip) (len != 1: refuse) / index.pod(ns, name)
    res = resolve_workload(ctx, pod.namespace, pod.service_account, pod, cloud="aws")
    if res.allowed:
        res.identity.identity             # role ARN / SA email / Azure client id
        res.identity.external_id, res.identity.session_name, res.identity.max_session_seconds, res.identity.tenant
        res.source                        # "binding:12", "pod-annotation:iam.amazonaws.com/role", ...
        res.binding_id                    # int or None
        res.rule                          # the policy rule that allowed it
    else:
        res.reason                        # why not (default deny, refused by rule, ambiguous...)
    index.subscribe(lambda event, pod: ...)   # "added" / "modified" / "deleted" pods: prefetch / drop credentials

`resolve_workload` never raises for a missing identity (that is `allowed=False` with a reason); it reads the store
on every call, so a revocation takes effect on the next call in every replica. `pod=None` resolves a service
account alone: bindings with a pod selector and pod annotations are then not considered.

Precedence within one cloud (first tier with an allowed candidate wins): bindings with a pod selector, bindings
without, the pod's `iam.amazonaws.com/role` annotation, the service account's annotation. Two different allowed
identities in the winning tier are refused as ambiguous rather than guessed. Every candidate is re-checked against
the current namespace policy, so tightening a policy also stops existing bindings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kagiya.errors import Invalid
from kagiya.iam.bindings import AZURE_GUID, Binding, check_identity, workload_bindings, workload_bindings_and_policy
from kagiya.iam.context import IamContext
from kagiya.iam.issuers.base import session_name as sts_session_name
from kagiya.iam.policy import CLOUDS, NamespacePolicy, policy_for, policy_from_stored
from kagiya.kube import PodInfo

POD_ROLE = "iam.amazonaws.com/role"
POD_EXTERNAL_ID = "iam.amazonaws.com/external-id"
POD_SESSION_NAME = "iam.amazonaws.com/session-name"
IRSA_ROLE = "eks.amazonaws.com/role-arn"
GKE_SA = "iam.gke.io/gcp-service-account"
AZURE_CLIENT = "azure.workload.identity/client-id"
AZURE_TENANT = "azure.workload.identity/tenant-id"
MAX_SHOWN = 512


@dataclass(frozen=True)
class CloudIdentity:
    cloud: str
    identity: str
    tenant: str = ""
    external_id: str = ""
    #: The STS session name the issuer will use (shown by explain; built by the issuer, see `requested_session_name`).
    session_name: str = ""
    max_session_seconds: int = 3600
    #: Only the pod's explicit `iam.amazonaws.com/session-name`: what the Grant carries. Empty lets the issuer build
    #: its default from the namespace and the calling pod (keeping the pod-name suffix when it must shorten).
    requested_session_name: str = ""


@dataclass(frozen=True)
class Candidate:
    """One source considered for a cloud, with the verdict of the policy."""

    source: str
    cloud: str
    identity: str
    allowed: bool
    rule: str
    tier: int
    binding_id: int | None = None
    tenant: str = ""
    external_id: str = ""
    session_name: str = ""


@dataclass(frozen=True)
class Resolution:
    namespace: str
    service_account: str
    pod: str
    cloud: str
    allowed: bool
    identity: CloudIdentity | None
    source: str
    binding_id: int | None
    rule: str
    reason: str
    candidates: tuple[Candidate, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud, "allowed": self.allowed,
            "identity": asdict(self.identity) if self.identity else None, "source": self.source or None,
            "bindingId": self.binding_id, "rule": self.rule, "reason": self.reason,
            "considered": [
                {"source": c.source, "identity": c.identity, "allowed": c.allowed, "rule": c.rule}
                for c in self.candidates
            ],
        }


def resolve_workload(ctx: IamContext, namespace: str, service_account: str, pod: PodInfo | None = None,
                     *, cloud: str = "aws", policy: NamespacePolicy | None = None) -> Resolution:
    """The identity of one workload in one cloud (see the module docstring for the contract)."""
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}")
    found: list[Binding] | None = None
    if policy is None:
        # The credential path runs this on every request: the bindings and the policy in one read of the store.
        found, stored = workload_bindings_and_policy(ctx, namespace, service_account)
        policy = policy_from_stored(ctx, namespace, stored)
    cands = [c for c in candidates(ctx, namespace, service_account, pod, policy, found) if c.cloud == cloud]
    return _pick(ctx, namespace, service_account, pod, cloud, policy, cands)


def resolve_all(ctx: IamContext, namespace: str, service_account: str,
                pod: PodInfo | None = None) -> dict[str, Resolution]:
    """One resolution per cloud (what `explain` shows and what the admission webhook injects)."""
    policy = policy_for(ctx, namespace)
    cands = candidates(ctx, namespace, service_account, pod, policy)
    return {c: _pick(ctx, namespace, service_account, pod, c, policy, [x for x in cands if x.cloud == c])
            for c in CLOUDS}


def candidates(ctx: IamContext, namespace: str, service_account: str, pod: PodInfo | None,
               policy: NamespacePolicy, found: list[Binding] | None = None) -> list[Candidate]:
    """Every source that names an identity for this workload, each judged by `policy` (`found`: the workload's
    bindings when the caller already read them, else they are read now)."""
    base = ctx.iam.base_role_arn
    out: list[Candidate] = []
    for b in found if found is not None else workload_bindings(ctx, namespace, service_account):
        if not b.selects(pod.labels if pod else None):
            continue
        verdict = policy.check(b.cloud, b.identity, base)
        out.append(Candidate(f"binding:{b.id}", b.cloud, b.identity, verdict.allowed, verdict.rule,
                             0 if b.pod_selector else 1, b.id, b.tenant, b.external_id))
    for source, cloud, identity, extras in _annotation_sources(ctx, namespace, service_account, pod):
        tier = 2 if source.startswith("pod-") else 3
        if not policy.trust_annotations:
            out.append(Candidate(source, cloud, identity, False,
                                 f"policy of namespace {namespace!r} does not trust annotations", tier))
            continue
        problem = extras.get("problem", "")
        if not problem:
            try:
                check_identity(cloud, identity, extras.get("tenant", ""))
            except Invalid as exc:
                problem = exc.message
        if problem:
            out.append(Candidate(source, cloud, identity[:MAX_SHOWN], False, problem[:MAX_SHOWN * 2], tier))
            continue
        verdict = policy.check(cloud, identity, base)
        out.append(Candidate(source, cloud, identity, verdict.allowed, verdict.rule, tier,
                             tenant=extras.get("tenant", ""), external_id=extras.get("external_id", ""),
                             session_name=extras.get("session_name", "")))
    return out


def _annotation_sources(ctx: IamContext, namespace: str, service_account: str,
                        pod: PodInfo | None) -> list[tuple[str, str, str, dict[str, str]]]:
    settings = ctx.iam
    found: list[tuple[str, str, str, dict[str, str]]] = []
    if pod is not None and settings.pod_role_annotation and pod.annotations.get(POD_ROLE):
        role = pod.annotations[POD_ROLE].strip()
        extras = {"external_id": pod.annotations.get(POD_EXTERNAL_ID, ""),
                  "session_name": pod.annotations.get(POD_SESSION_NAME, "")}
        if not role.startswith("arn:"):
            if settings.base_role_arn:
                role = settings.base_role_arn + role.lstrip("/")
            else:
                extras["problem"] = f"bare role name {role!r} needs iam.base_role_arn"
        found.append((f"pod-annotation:{POD_ROLE}", "aws", role, extras))
    sa = ctx.kube.service_account(namespace, service_account) if ctx.kube is not None else None
    if sa is not None:
        notes = sa.annotations
        if settings.irsa_annotation and notes.get(IRSA_ROLE):
            found.append((f"serviceaccount-annotation:{IRSA_ROLE}", "aws", notes[IRSA_ROLE].strip(), {}))
        if settings.gke_annotation and notes.get(GKE_SA):
            found.append((f"serviceaccount-annotation:{GKE_SA}", "gcp", notes[GKE_SA].strip(), {}))
        if settings.azure_annotation and notes.get(AZURE_CLIENT):
            tenant = notes.get(AZURE_TENANT, "").strip() or settings.azure_tenant_id
            extras = {"tenant": tenant}
            if not AZURE_GUID.match(tenant):
                extras["problem"] = f"no tenant: set {AZURE_TENANT} or iam.azure_tenant_id"
            found.append((f"serviceaccount-annotation:{AZURE_CLIENT}", "azure", notes[AZURE_CLIENT].strip(), extras))
    return found


def _pick(ctx: IamContext, namespace: str, service_account: str, pod: PodInfo | None, cloud: str,
          policy: NamespacePolicy, cands: list[Candidate]) -> Resolution:
    base: dict[str, Any] = {"namespace": namespace, "service_account": service_account, "pod": pod.name if pod else "",
            "cloud": cloud, "candidates": tuple(cands)}
    allowed = [c for c in cands if c.allowed]
    if not allowed:
        if cands:
            first = cands[0]
            reason = f"{first.source} ({first.identity}) refused: {first.rule}"
            return Resolution(allowed=False, identity=None, source="", binding_id=None, rule=first.rule,
                              reason=reason, **base)
        who = f"pod {namespace}/{pod.name}" if pod else f"service account {namespace}/{service_account}"
        return Resolution(allowed=False, identity=None, source="", binding_id=None, rule="",
                          reason=f"no {cloud} binding or annotation applies to {who}", **base)
    tier = min(c.tier for c in allowed)
    winners = [c for c in allowed if c.tier == tier]
    if len({(c.identity, c.tenant) for c in winners}) > 1:
        names = ", ".join(f"{c.source} ({c.identity})" for c in winners)
        return Resolution(allowed=False, identity=None, source="", binding_id=None, rule="",
                          reason=f"ambiguous: {names} all apply; refusing to guess", **base)
    win = winners[0]
    identity = CloudIdentity(
        cloud=cloud, identity=win.identity, tenant=win.tenant, external_id=win.external_id,
        session_name=(sts_session_name(namespace, pod.name if pod else service_account, win.session_name)
                      if cloud == "aws" else ""),
        max_session_seconds=policy.max_session_seconds,
        requested_session_name=win.session_name if cloud == "aws" else "",
    )
    return Resolution(allowed=True, identity=identity, source=win.source, binding_id=win.binding_id, rule=win.rule,
                      reason=f"{win.source} allowed by {win.rule}", **base)
