"""The credential path's one-statement read of a workload's bindings and its namespace policy
(`workload_bindings_and_policy`) answers exactly what the two separate reads answer, at every step of a binding's
life: no policy, a policy, an approved binding, a tightened policy, a revoked binding."""

from __future__ import annotations

from typing import Any

from kagiya.iam.bindings import workload_bindings, workload_bindings_and_policy
from kagiya.iam.context import iam_context
from kagiya.iam.policy import load_stored
from kagiya.iam.resolve import resolve_workload
from tests.iam.test_requests_api import ADMIN, APPROVER, POLICY, ask, set_policy

WORKLOADS = (("team-a", "web"), ("team-a", "default"), ("team-b", "web"))


def same_as_separate_reads(ctx: Any) -> None:
    for namespace, account in WORKLOADS:
        found, stored = workload_bindings_and_policy(ctx, namespace, account)
        assert found == workload_bindings(ctx, namespace, account)
        assert stored == load_stored(ctx.store, namespace)


def test_one_read_matches_separate_reads_through_a_binding_life(iam_app: Any) -> None:
    client, ctx = iam_app.test_client(), iam_context(iam_app)
    same_as_separate_reads(ctx)
    set_policy(client)
    same_as_separate_reads(ctx)
    req = ask(client, "arn:aws:iam::123456789012:role/app-writer").json
    approved = client.post(f"/v1/iam/binding-requests/{req['id']}/approve", json={"reason": "ok"}, headers=APPROVER)
    assert approved.status_code == 200, approved.json
    found, stored = workload_bindings_and_policy(ctx, "team-a", "web")
    assert [b.identity for b in found] == ["arn:aws:iam::123456789012:role/app-writer"] and stored is not None
    same_as_separate_reads(ctx)
    assert resolve_workload(ctx, "team-a", "web", cloud="aws").allowed
    # A tightened policy applies on the very next resolution (no cached policy rides along with the bindings).
    set_policy(client, body={**POLICY, "allow": [{"cloud": "aws", "glob": "arn:aws:iam::123456789012:role/other"}]})
    same_as_separate_reads(ctx)
    assert not resolve_workload(ctx, "team-a", "web", cloud="aws").allowed
    set_policy(client)
    assert resolve_workload(ctx, "team-a", "web", cloud="aws").allowed
    assert client.delete(f"/v1/iam/bindings/{found[0].id}?reason=done", headers=ADMIN).status_code == 200
    assert workload_bindings_and_policy(ctx, "team-a", "web")[0] == []
    same_as_separate_reads(ctx)
    assert not resolve_workload(ctx, "team-a", "web", cloud="aws").allowed
