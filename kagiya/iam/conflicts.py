"""One identity per pod and cloud: refuse a binding that would make running pods' identity ambiguous (409).

Resolution (kagiya/iam/resolve.py) refuses to guess between two different identities of the same precedence tier,
so such a second binding would silently take credentials away from running pods. It is refused when it is made
instead, naming the binding already in place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from kagiya.errors import Conflict
from kagiya.iam.bindings import Binding
from kagiya.iam.context import IamContext
from kagiya.iam.schema import bindings


def _overlap(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether both bindings are in the same precedence tier (both without a selector, or both with one) and some pod
    can match both (no label required with two different values). A binding with a selector beats one without
    (kagiya/iam/resolve.py), so that pair is never ambiguous."""
    if bool(a) != bool(b):
        return False
    return all(a[k] == b[k] for k in a.keys() & b.keys())


#: PostgreSQL advisory lock id serialising binding creation ("kgbind").
BINDING_LOCK_KEY = 0x6B6762696E64


def _serialise(conn: Any) -> None:
    """Hold the binding-creation lock until the transaction ends: a transaction-scoped advisory lock on PostgreSQL;
    on SQLite a (no-op) write, which takes the database's write lock now (pysqlite only begins a transaction at the
    first write, so a read-then-insert would otherwise check outside any lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": BINDING_LOCK_KEY})
    else:
        conn.execute(bindings.update().where(sa.false()).values(state=bindings.c.state))


def check_no_conflict(ctx: IamContext, conn: Any, req: Mapping[str, Any]) -> None:
    """Refuse (409 naming it) a binding that would make a running pod's identity ambiguous: an active binding of the
    same namespace, service account and cloud to a *different* identity, of the same precedence tier, whose pod
    selector overlaps this one.

    Without this, resolution sees two identities for one pod and refuses both, so the pods lose credentials.
    Revoke the existing binding first (or use pod selectors that cannot match the same pod).
    Called first in the transaction that makes the binding: `_serialise` makes concurrent approvals wait here, so
    the second one sees the first one's binding instead of both passing the check.
    """
    _serialise(conn)
    selector = json.loads(req["pod_selector"] or "{}")
    now = ctx.clock()
    t = bindings
    rows = conn.execute(sa.select(t).where(
        t.c.namespace == req["namespace"], t.c.service_account == req["service_account"], t.c.cloud == req["cloud"],
        t.c.state == "active").order_by(t.c.id)).mappings().all()
    for row in rows:
        other = Binding.from_row(row, now)
        if other.state != "active" or (other.identity, other.tenant) == (req["identity"], req["tenant"]):
            continue
        if _overlap(selector, other.pod_selector):
            raise Conflict(
                f"binding {other.id} already gives {req['namespace']}/{req['service_account']} the {req['cloud']} "
                f"identity {other.identity!r}; revoke it first (kagiya iam revoke {other.id}) or use pod selectors "
                "that cannot match the same pod",
                details={"name": str(other.id), "kind": "Binding"})
