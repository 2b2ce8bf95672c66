"""Bindings and binding requests: the reviewed, audited mapping from a workload to a cloud identity.

A binding maps namespace + service account (optionally narrowed to pods by a label selector) to one cloud identity
(`aws` role ARN, `gcp` service-account email, `azure` client id + tenant). Bindings come from requests:
`create_request` checks the namespace policy and answers approved (an auto-approve rule matched: the binding is made
at once), pending, or denied (stored, audited, and raised as 403 naming the rule). `approve`/`deny` are for the
policy's approver groups (and platform admins), never the requester unless the policy allows self-approval.
Decisions are conditional UPDATEs (`WHERE state = 'pending'`): of two replicas deciding the same request exactly
one changes a row, the other gets 409. Time-limited bindings expire at read time; no background job.
Every change is audited inside the transaction that makes it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from kagiya import audit
from kagiya.authn.providers.base import User
from kagiya.errors import Conflict, Forbidden, Invalid, NotFound
from kagiya.iam.context import IamContext
from kagiya.iam.policy import CLOUDS, approver_groups, auto_approving_groups, load_stored, policy_for
from kagiya.iam.schema import binding_requests, bindings, policies

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
AWS_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
GCP_SA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$|"
                          r"^[0-9]+-compute@developer\.gserviceaccount\.com$")
AZURE_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
STATES = ("pending", "approved", "denied")
BINDING_STATES = ("active", "expired", "revoked")
MAX_PAGE = 500


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def rfc3339(value: dt.datetime | None) -> str | None:
    value = as_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass(frozen=True)
class Binding:
    id: int
    namespace: str
    service_account: str
    pod_selector: Mapping[str, str]
    cloud: str
    identity: str
    tenant: str
    external_id: str
    source: str
    state: str
    created_by: str
    approved_by: str
    reason: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_by: str = ""
    revoked_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], now: dt.datetime) -> Binding:
        expires = as_utc(row["expires_at"])
        state = row["state"]
        if state == "active" and expires is not None and expires <= now:
            state = "expired"
        return cls(
            id=row["id"], namespace=row["namespace"], service_account=row["service_account"],
            pod_selector=json.loads(row["pod_selector"] or "{}"), cloud=row["cloud"], identity=row["identity"],
            tenant=row["tenant"], external_id=row["external_id"], source=row["source"], state=state,
            created_by=row["created_by"], approved_by=row["approved_by"], reason=row["reason"],
            created_at=as_utc(row["created_at"]) or now, expires_at=expires, revoked_by=row["revoked_by"],
            revoked_at=as_utc(row["revoked_at"]),
        )

    def selects(self, labels: Mapping[str, str] | None) -> bool:
        """Whether this binding's pod selector admits a pod with `labels` (None: no pod known)."""
        if not self.pod_selector:
            return True
        if labels is None:
            return False
        return all(labels.get(k) == v for k, v in self.pod_selector.items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "namespace": self.namespace, "serviceAccount": self.service_account,
            "podSelector": {"matchLabels": dict(self.pod_selector)} if self.pod_selector else None,
            "cloud": self.cloud, "identity": self.identity, "tenant": self.tenant or None,
            "externalId": self.external_id or None, "source": self.source, "state": self.state,
            "createdBy": self.created_by, "approvedBy": self.approved_by, "reason": self.reason,
            "createdAt": rfc3339(self.created_at), "expiresAt": rfc3339(self.expires_at),
            "revokedBy": self.revoked_by or None, "revokedAt": rfc3339(self.revoked_at),
        }


@dataclass(frozen=True)
class RequestSpec:
    namespace: str
    service_account: str
    cloud: str
    identity: str
    pod_selector: Mapping[str, str] = field(default_factory=dict)
    tenant: str = ""
    external_id: str = ""
    ttl_seconds: int | None = None
    reason: str = ""


REQUEST_FIELDS = {"namespace", "serviceAccount", "cloud", "identity", "podSelector", "tenant", "externalId",
                  "ttlSeconds", "reason"}


def parse_request(body: Mapping[str, Any], max_ttl: int, default_tenant: str = "") -> RequestSpec:
    """Validate a binding-request body; raises Invalid naming the field."""
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(REQUEST_FIELDS))})")

    def text(key: str, required: bool = True, limit: int = 512) -> str:
        value = body.get(key, "")
        if not isinstance(value, str) or (required and not value) or len(value) > limit:
            raise Invalid(f"{key} must be a {'non-empty ' if required else ''}string of at most {limit} characters")
        return value

    namespace, sa_name = text("namespace", limit=63), text("serviceAccount", limit=253)
    if not DNS_LABEL.match(namespace):
        raise Invalid(f"namespace {namespace!r} is not a valid namespace name")
    if not DNS_SUBDOMAIN.match(sa_name):
        raise Invalid(f"serviceAccount {sa_name!r} is not a valid service account name")
    cloud = text("cloud", limit=16)
    if cloud not in CLOUDS:
        raise Invalid(f"cloud must be one of {', '.join(CLOUDS)}")
    identity = text("identity")
    tenant = text("tenant", required=False, limit=128) or (default_tenant if cloud == "azure" else "")
    check_identity(cloud, identity, tenant)
    ttl = body.get("ttlSeconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 60
                            or (max_ttl and ttl > max_ttl)):
        raise Invalid(f"ttlSeconds must be a whole number from 60 to {max_ttl or 'any'}")
    return RequestSpec(
        namespace=namespace, service_account=sa_name, cloud=cloud, identity=identity,
        pod_selector=parse_selector(body.get("podSelector")), tenant=tenant,
        external_id=text("externalId", required=False, limit=1224), ttl_seconds=ttl,
        reason=text("reason", required=False, limit=2000),
    )


def check_identity(cloud: str, identity: str, tenant: str = "") -> None:
    """Shape checks per cloud, so a typo is an error at request time, not a silent non-match later."""
    if cloud == "aws" and not AWS_ROLE_ARN.match(identity):
        raise Invalid(f"aws identity {identity!r} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)")
    if cloud == "gcp" and not GCP_SA_EMAIL.match(identity):
        raise Invalid(
            f"gcp identity {identity!r} is not a service-account email (NAME@PROJECT.iam.gserviceaccount.com)"
        )
    if cloud == "azure":
        if not AZURE_GUID.match(identity):
            raise Invalid(f"azure identity {identity!r} is not a client id (a GUID)")
        if not AZURE_GUID.match(tenant):
            raise Invalid("azure bindings need a tenant id (a GUID): set tenant or iam.azure_tenant_id")


def parse_selector(raw: Any) -> dict[str, str]:
    """`{"matchLabels": {...}}`, a plain label mapping, or "k=v,k2=v2"; only equality is supported."""
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, str):
        pairs = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            k, sep, v = part.partition("=")
            if not sep or "!" in k:
                raise Invalid(f"podSelector {part!r}: only key=value terms are supported")
            pairs[k.strip()] = v.strip()
        raw = pairs
    if isinstance(raw, Mapping) and "matchLabels" in raw:
        if set(raw) != {"matchLabels"}:
            raise Invalid("podSelector supports matchLabels only")
        raw = raw["matchLabels"]
    if not isinstance(raw, Mapping) or not raw:
        raise Invalid("podSelector must be {\"matchLabels\": {key: value}}")
    for k, v in raw.items():
        if not isinstance(k, str) or not LABEL_KEY.match(k) or not isinstance(v, str) or not LABEL_VALUE.match(v):
            raise Invalid(f"podSelector label {k!r}={v!r} is not a valid label")
    return dict(sorted(raw.items()))


# ---- requests --------------------------------------------------------------------------------------------------


def request_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    selector = json.loads(row["pod_selector"] or "{}")
    return {
        "id": row["id"], "namespace": row["namespace"], "serviceAccount": row["service_account"],
        "podSelector": {"matchLabels": selector} if selector else None, "cloud": row["cloud"],
        "identity": row["identity"], "tenant": row["tenant"] or None, "externalId": row["external_id"] or None,
        "ttlSeconds": row["ttl_seconds"], "reason": row["reason"], "requester": row["requester"],
        "state": row["state"], "rule": row["rule"], "decidedBy": row["decided_by"] or None,
        "decisionReason": row["decision_reason"] or None, "decidedAt": rfc3339(row["decided_at"]),
        "bindingId": row["binding_id"], "createdAt": rfc3339(row["created_at"]),
    }


def create_request(ctx: IamContext, caller: User, spec: RequestSpec, request_id: str = "") -> dict[str, Any]:
    """Store a request, decided by policy; raises Forbidden (after storing and auditing) when denied."""
    policy = policy_for(ctx, spec.namespace)
    decision = policy.check(spec.cloud, spec.identity, ctx.iam.base_role_arn)
    auto = decision.auto_approve and caller.in_any(auto_approving_groups(policy, ctx.settings.admin_groups))
    state = "approved" if auto else ("pending" if decision.allowed else "denied")
    now = ctx.clock()
    values = {
        "namespace": spec.namespace, "service_account": spec.service_account,
        "pod_selector": json.dumps(dict(spec.pod_selector), sort_keys=True), "cloud": spec.cloud,
        "identity": spec.identity, "tenant": spec.tenant, "external_id": spec.external_id,
        "ttl_seconds": spec.ttl_seconds, "reason": spec.reason, "requester": caller.username, "state": state,
        "rule": decision.rule, "created_at": now,
    }
    if state != "pending":
        values.update(decided_by="policy", decided_at=now, decision_reason=decision.rule)
    with ctx.store.begin() as conn:
        if state == "approved":
            from kagiya.iam.conflicts import check_no_conflict

            try:
                check_no_conflict(ctx, conn, values)
            except Conflict as exc:
                audit.record(ctx.store, actor=caller.username, action="iam.request.create",
                             target=f"iam/bindings/{exc.details['name']}", outcome="denied", request_id=request_id,
                             details={"namespace": spec.namespace, "serviceAccount": spec.service_account,
                                      "cloud": spec.cloud, "identity": spec.identity, "reason": exc.message})
                raise
        rid = conn.execute(binding_requests.insert().values(**values)).inserted_primary_key[0]
        target = f"iam/binding-requests/{rid}"
        details = {"namespace": spec.namespace, "serviceAccount": spec.service_account, "cloud": spec.cloud,
                   "identity": spec.identity, "rule": decision.rule}
        audit.record(ctx.store, actor=caller.username, action="iam.request.create", target=target,
                     outcome=state if state != "denied" else "denied", request_id=request_id, details=details,
                     conn=conn)
        if state == "approved":
            _make_binding(ctx, conn, rid, values, approved_by=f"policy {decision.rule}", now=now,
                          actor=caller.username, request_id=request_id)
        row = conn.execute(sa.select(binding_requests).where(binding_requests.c.id == rid)).mappings().one()
    ctx.emit("request.filed", request_dict(row))
    if state == "approved":
        ctx.grants_changed(spec.namespace, spec.service_account)
    if state == "denied":
        raise Forbidden(f"binding request {rid} denied: {decision.rule}",
                        details={"name": str(rid), "kind": "BindingRequest", "rule": decision.rule})
    return request_dict(row)


def _make_binding(ctx: IamContext, conn: Any, rid: int, req: Mapping[str, Any], *, approved_by: str,
                  now: dt.datetime, actor: str, request_id: str) -> int:
    ttl = req["ttl_seconds"]
    bid = conn.execute(bindings.insert().values(
        namespace=req["namespace"], service_account=req["service_account"], pod_selector=req["pod_selector"],
        cloud=req["cloud"], identity=req["identity"], tenant=req["tenant"], external_id=req["external_id"],
        source=f"request:{rid}", state="active", created_by=req["requester"], approved_by=approved_by,
        reason=req["reason"], created_at=now, expires_at=now + dt.timedelta(seconds=ttl) if ttl else None,
    )).inserted_primary_key[0]
    conn.execute(binding_requests.update().where(binding_requests.c.id == rid).values(binding_id=bid))
    audit.record(ctx.store, actor=actor, action="iam.binding.create", target=f"iam/bindings/{bid}", outcome="success",
                 request_id=request_id, details={"namespace": req["namespace"], "serviceAccount":
                 req["service_account"], "cloud": req["cloud"], "identity": req["identity"], "request": rid,
                 "ttlSeconds": ttl}, conn=conn)
    return int(bid)


def get_request(ctx: IamContext, rid: int) -> Mapping[str, Any]:
    with ctx.store.connect() as conn:
        row = conn.execute(sa.select(binding_requests).where(binding_requests.c.id == rid)).mappings().first()
    if row is None:
        raise NotFound(f"binding request {rid} not found")
    return row


def decide(ctx: IamContext, caller: User, rid: int, verdict: str, reason: str = "",
           request_id: str = "") -> dict[str, Any]:
    """Approve or deny a pending request (`verdict` is `approved` or `denied`). Raises Forbidden, Conflict."""
    row = get_request(ctx, rid)
    policy = policy_for(ctx, row["namespace"])
    verb = "approve" if verdict == "approved" else "deny"
    target = f"iam/binding-requests/{rid}"
    groups = approver_groups(policy, ctx.settings.admin_groups)
    refusal = ""
    if not caller.in_any(groups):
        refusal = (f"user {caller.username!r} may not {verb} requests in namespace {row['namespace']!r} "
                   f"(approver groups: {', '.join(groups)})")
    elif caller.username == row["requester"] and verdict == "approved" and not policy.allow_self_approval:
        refusal = (f"user {caller.username!r} may not approve their own request: the policy of namespace "
                   f"{row['namespace']!r} does not allow self-approval")
    if refusal:
        audit.record(ctx.store, actor=caller.username, action=f"iam.request.{verb}", target=target,
                     outcome="denied", request_id=request_id, details={"reason": refusal})
        raise Forbidden(refusal)
    if row["state"] != "pending":
        raise Conflict(f"binding request {rid} is already {row['state']}")
    rule = row["rule"]
    if verdict == "approved":
        check = policy.check(row["cloud"], row["identity"], ctx.iam.base_role_arn)
        if not check.allowed:
            raise Invalid(f"binding request {rid} is no longer allowed: {check.rule}")
        rule = check.rule
    now = ctx.clock()
    with ctx.store.begin() as conn:
        if verdict == "approved":
            from kagiya.iam.conflicts import check_no_conflict

            check_no_conflict(ctx, conn, row)
        result = conn.execute(
            binding_requests.update()
            .where(binding_requests.c.id == rid, binding_requests.c.state == "pending")
            .values(state=verdict, decided_by=caller.username, decided_at=now, decision_reason=reason, rule=rule)
        )
        if result.rowcount != 1:
            raise Conflict(f"binding request {rid} was decided concurrently")
        audit.record(ctx.store, actor=caller.username, action=f"iam.request.{verb}", target=target,
                     outcome="approved" if verdict == "approved" else "success", request_id=request_id,
                     details={"reason": reason, "rule": rule}, conn=conn)
        if verdict == "approved":
            _make_binding(ctx, conn, rid, row, approved_by=caller.username, now=now, actor=caller.username,
                          request_id=request_id)
        fresh = conn.execute(sa.select(binding_requests).where(binding_requests.c.id == rid)).mappings().one()
    ctx.emit("request.decided", request_dict(fresh))
    if verdict == "approved":
        ctx.grants_changed(row["namespace"], row["service_account"])
    return request_dict(fresh)


def list_requests(ctx: IamContext, filters: Mapping[str, str], after: int = 0,
                  limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    t = binding_requests
    stmt = sa.select(t).where(t.c.id > after).order_by(t.c.id).limit(limit + 1)
    for key, column in (("namespace", t.c.namespace), ("serviceAccount", t.c.service_account),
                        ("state", t.c.state), ("requester", t.c.requester), ("cloud", t.c.cloud)):
        if filters.get(key):
            stmt = stmt.where(column == filters[key])
    with ctx.store.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [request_dict(r) for r in rows], (rows[-1]["id"] if more else None)


# ---- bindings --------------------------------------------------------------------------------------------------


#: Built once: the metadata path runs this query on every credential request (a revocation must apply at once), and
#: building the statement per call cost as much as running it.
_WORKLOAD_BINDINGS = (sa.select(bindings).where(bindings.c.namespace == sa.bindparam("namespace"),
                                                bindings.c.service_account == sa.bindparam("service_account"),
                                                bindings.c.state == "active").order_by(bindings.c.id))


def workload_bindings(ctx: IamContext, namespace: str, service_account: str) -> list[Binding]:
    """Active, unexpired bindings of one workload, oldest first (read from the store on every call)."""
    now = ctx.clock()
    with ctx.store.connect() as conn:
        rows = conn.execute(_WORKLOAD_BINDINGS,
                            {"namespace": namespace, "service_account": service_account}).mappings().all()
    return [b for b in (Binding.from_row(r, now) for r in rows) if b.state == "active"]


#: The same rows as `_WORKLOAD_BINDINGS`, each carrying the namespace's stored policy body (one statement: one
#: snapshot, one connection, half the SQLite round trips of two queries on the per-request credential path).
_WORKLOAD_BINDINGS_WITH_POLICY = (
    sa.select(
        sa.select(policies.c.body).where(policies.c.namespace == sa.bindparam("namespace"))
        .scalar_subquery().label("policy_body"),
        bindings,
    )
    .where(bindings.c.namespace == sa.bindparam("namespace"),
           bindings.c.service_account == sa.bindparam("service_account"), bindings.c.state == "active")
    .order_by(bindings.c.id)
)


def workload_bindings_and_policy(ctx: IamContext, namespace: str,
                                 service_account: str) -> tuple[list[Binding], dict[str, Any] | None]:
    """`workload_bindings` and the namespace's stored policy body (`load_stored`), both read from the store now."""
    now = ctx.clock()
    params = {"namespace": namespace, "service_account": service_account}
    with ctx.store.connect() as conn:
        rows = conn.execute(_WORKLOAD_BINDINGS_WITH_POLICY, params).mappings().all()
    if not rows:  # no binding row to carry the policy: read it alone
        return [], load_stored(ctx.store, namespace)
    body = rows[0]["policy_body"]
    stored = json.loads(body) if body is not None else None
    return [b for b in (Binding.from_row(r, now) for r in rows) if b.state == "active"], stored


def get_binding(ctx: IamContext, bid: int) -> Binding:
    with ctx.store.connect() as conn:
        row = conn.execute(sa.select(bindings).where(bindings.c.id == bid)).mappings().first()
    if row is None:
        raise NotFound(f"binding {bid} not found")
    return Binding.from_row(row, ctx.clock())


def list_bindings(ctx: IamContext, filters: Mapping[str, str], after: int = 0,
                  limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """Bindings matching the filters; `state` may be active, expired or revoked (expiry judged now)."""
    t = bindings
    now = ctx.clock()
    stmt = sa.select(t).where(t.c.id > after).order_by(t.c.id)
    for key, column in (("namespace", t.c.namespace), ("serviceAccount", t.c.service_account),
                        ("cloud", t.c.cloud), ("identity", t.c.identity)):
        if filters.get(key):
            stmt = stmt.where(column == filters[key])
    wanted = filters.get("state")
    if wanted == "revoked":
        stmt = stmt.where(t.c.state == "revoked")
    elif wanted in ("active", "expired"):
        stmt = stmt.where(t.c.state == "active")
    items: list[Binding] = []
    last_id: int | None = None
    with ctx.store.connect() as conn:
        for row in conn.execute(stmt).mappings():
            b = Binding.from_row(row, now)
            if wanted and b.state != wanted:
                continue
            if len(items) == limit:
                return [i.as_dict() for i in items], last_id
            items.append(b)
            last_id = b.id
    return [i.as_dict() for i in items], None


def revoke(ctx: IamContext, caller: User, bid: int, reason: str = "", request_id: str = "") -> dict[str, Any]:
    """Revoke a binding: its creator, the namespace's approvers and platform admins may. Raises Forbidden, Conflict."""
    binding = get_binding(ctx, bid)
    policy = policy_for(ctx, binding.namespace)
    target = f"iam/bindings/{bid}"
    if caller.username != binding.created_by and not caller.in_any(approver_groups(policy, ctx.settings.admin_groups)):
        message = f"user {caller.username!r} may not revoke binding {bid} in namespace {binding.namespace!r}"
        audit.record(ctx.store, actor=caller.username, action="iam.binding.revoke", target=target, outcome="denied",
                     request_id=request_id, details={"reason": message})
        raise Forbidden(message)
    now = ctx.clock()
    with ctx.store.begin() as conn:
        result = conn.execute(bindings.update().where(bindings.c.id == bid, bindings.c.state == "active")
                              .values(state="revoked", revoked_by=caller.username, revoked_at=now))
        if result.rowcount != 1:
            raise Conflict(f"binding {bid} is already revoked")
        audit.record(ctx.store, actor=caller.username, action="iam.binding.revoke", target=target, outcome="success",
                     request_id=request_id, details={"reason": reason, "identity": binding.identity,
                                                     "namespace": binding.namespace}, conn=conn)
    return get_binding(ctx, bid).as_dict()
