"""Binding requests over HTTP: request -> approve -> explain -> revoke with audit events, denials naming the rule,
approver rules (self-approval, non-approvers), concurrent decisions, expiry, filters and paging."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from tests.conftest import bearer
from tests.iam.conftest import arn

ADMIN, DEV, APPROVER = bearer("admin-token-0001"), bearer("dev-token-0002"), bearer("approver-token-0003")
POLICY = {
    "allow": [{"cloud": "aws", "glob": arn("app-*")},
              {"cloud": "gcp", "regex": r"[a-z-]+@proj-1\.iam\.gserviceaccount\.com"}],
    "autoApprove": [{"cloud": "aws", "glob": arn("app-readonly")}],
    "approverGroups": ["approvers"],
    "requesterGroups": ["team-a"],
}


def set_policy(client: Any, namespace: str = "team-a", body: dict[str, Any] | None = None) -> None:
    resp = client.put(f"/v1/iam/policies/{namespace}", json=body or POLICY, headers=ADMIN)
    assert resp.status_code == 200, resp.json


def ask(client: Any, identity: str, headers: dict[str, str] = DEV, **extra: Any) -> Any:
    body = {"namespace": "team-a", "serviceAccount": "web", "cloud": "aws", "identity": identity, **extra}
    return client.post("/v1/iam/binding-requests", json=body, headers=headers)


def audit_actions(client: Any) -> list[tuple[str, str, str, str]]:
    items = client.get("/v1/audit?action=iam&limit=500", headers=ADMIN).json["items"]
    return [(e["actor"], e["action"], e["target"], e["outcome"]) for e in items]


def test_request_approve_explain_revoke_with_audit(iam_client: Any) -> None:
    set_policy(iam_client)
    created = ask(iam_client, arn("app-writer"), reason="needs to write the bucket")
    assert created.status_code == 201
    req = created.json
    assert req["state"] == "pending" and req["requester"] == "bob" and "allow[0]" in req["rule"]

    before = iam_client.get("/v1/iam/explain?namespace=team-a&pod=web-1&cloud=aws", headers=DEV).json
    assert before["results"][0]["allowed"] is False

    approved = iam_client.post(f"/v1/iam/binding-requests/{req['id']}/approve", json={"reason": "ok"},
                               headers=APPROVER)
    assert approved.status_code == 200, approved.json
    assert approved.json["state"] == "approved" and approved.json["decidedBy"] == "carol"
    bid = approved.json["bindingId"]

    explained = iam_client.get("/v1/iam/explain?namespace=team-a&pod=web-1", headers=DEV).json
    aws = next(r for r in explained["results"] if r["cloud"] == "aws")
    assert aws["allowed"] and aws["identity"]["identity"] == arn("app-writer")
    assert aws["source"] == f"binding:{bid}" and aws["bindingId"] == bid and "allow[0]" in aws["rule"]
    assert aws["identity"]["session_name"] == "team-a.web-1"
    assert explained["podUid"] and explained["serviceAccount"] == "web"

    revoked = iam_client.delete(f"/v1/iam/bindings/{bid}?reason=done", headers=APPROVER)
    assert revoked.status_code == 200 and revoked.json["state"] == "revoked" and revoked.json["revokedBy"] == "carol"
    after = iam_client.get("/v1/iam/explain?namespace=team-a&pod=web-1&cloud=aws", headers=DEV).json
    assert after["results"][0]["allowed"] is False
    assert iam_client.delete(f"/v1/iam/bindings/{bid}", headers=APPROVER).status_code == 409

    assert audit_actions(iam_client) == [
        ("alice", "iam.policy.update", "iam/policies/team-a", "success"),
        ("bob", "iam.request.create", f"iam/binding-requests/{req['id']}", "pending"),
        ("carol", "iam.request.approve", f"iam/binding-requests/{req['id']}", "approved"),
        ("carol", "iam.binding.create", f"iam/bindings/{bid}", "success"),
        ("carol", "iam.binding.revoke", f"iam/bindings/{bid}", "success"),
    ]


def test_out_of_policy_request_is_denied_naming_the_rule(iam_client: Any) -> None:
    set_policy(iam_client)
    resp = ask(iam_client, arn("admin"))
    assert resp.status_code == 403
    assert resp.json["kind"] == "Status"
    assert "matches none of autoApprove[0], allow[0]" in resp.json["message"]
    rid = resp.json["details"]["name"]
    stored = iam_client.get(f"/v1/iam/binding-requests/{rid}", headers=DEV).json
    assert stored["state"] == "denied" and stored["decidedBy"] == "policy"
    assert ("bob", "iam.request.create", f"iam/binding-requests/{rid}", "denied") in audit_actions(iam_client)


def test_no_policy_means_deny(iam_client: Any) -> None:
    resp = ask(iam_client, arn("app-reader"))
    assert resp.status_code == 403
    assert "no policy for namespace 'team-a': default deny" in resp.json["message"]


def test_requester_cannot_approve_own_request(iam_client: Any) -> None:
    set_policy(iam_client)
    rid = ask(iam_client, arn("app-x"), headers=APPROVER).json["id"]  # carol requests, carol approves
    resp = iam_client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=APPROVER)
    assert resp.status_code == 403
    assert "may not approve their own request" in resp.json["message"]
    assert iam_client.get(f"/v1/iam/binding-requests/{rid}", headers=DEV).json["state"] == "pending"
    assert ("carol", "iam.request.approve", f"iam/binding-requests/{rid}", "denied") in audit_actions(iam_client)
    # The requester may still deny (withdraw) it only if an approver; carol is one.
    assert iam_client.post(f"/v1/iam/binding-requests/{rid}/deny", headers=APPROVER).json["state"] == "denied"


def test_self_approval_when_policy_allows_it(iam_client: Any) -> None:
    set_policy(iam_client, body={**POLICY, "allowSelfApproval": True})
    rid = ask(iam_client, arn("app-x"), headers=APPROVER).json["id"]
    resp = iam_client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=APPROVER)
    assert resp.status_code == 200 and resp.json["state"] == "approved"


def test_non_approver_gets_403(iam_client: Any) -> None:
    set_policy(iam_client)
    rid = ask(iam_client, arn("app-x"), headers=APPROVER).json["id"]
    for verb in ("approve", "deny"):
        resp = iam_client.post(f"/v1/iam/binding-requests/{rid}/{verb}", headers=DEV)  # bob is in team-a only
        assert resp.status_code == 403
        assert "approver groups: approvers, kagiya:admins" in resp.json["message"]
    assert iam_client.post(f"/v1/iam/binding-requests/{rid}/approve").status_code == 401


def test_non_admin_cannot_set_policy(iam_client: Any) -> None:
    resp = iam_client.put("/v1/iam/policies/team-a", json=POLICY, headers=APPROVER)
    assert resp.status_code == 403
    assert iam_client.get("/v1/iam/policies/team-a", headers=DEV).json["stored"] is False


def test_auto_approve_makes_the_binding_at_once(iam_client: Any) -> None:
    set_policy(iam_client)
    resp = ask(iam_client, arn("app-readonly"))
    assert resp.status_code == 201 and resp.json["state"] == "approved" and resp.json["bindingId"]
    binding = iam_client.get(f"/v1/iam/bindings/{resp.json['bindingId']}", headers=DEV).json
    assert binding["approvedBy"].startswith("policy autoApprove[0]") and binding["state"] == "active"


def test_exactly_one_of_two_replicas_approving_wins(iam_client: Any, iam_settings: Any) -> None:
    from kagiya.web import create_app

    set_policy(iam_client)
    rid = ask(iam_client, arn("app-x")).json["id"]
    replicas = [create_app(iam_settings.replace(sections={**iam_settings.sections, "kube": iam_settings.section(
        "kube").__class__()})) for _ in range(2)]  # two more apps on the same database, no kube watch
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def approve(app: Any, token: dict[str, str]) -> None:
        client = app.test_client()
        barrier.wait()
        codes.append(client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=token).status_code)

    threads = [threading.Thread(target=approve, args=(app, t)) for app, t in zip(replicas, (ADMIN, APPROVER),
                                                                                  strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for app in replicas:
        app.extensions["kagiya.store"].dispose()
    assert sorted(codes) == [200, 409]
    bindings = iam_client.get("/v1/iam/bindings?namespace=team-a", headers=DEV).json["items"]
    assert len(bindings) == 1
    events = [e for e in audit_actions(iam_client) if e[1] == "iam.request.approve"]
    assert len(events) == 1


def test_time_limited_binding_expires_by_itself(iam_client: Any, iam_app: Any) -> None:
    from kagiya.iam.context import iam_context

    set_policy(iam_client)
    rid = ask(iam_client, arn("app-x"), ttlSeconds=600).json["id"]
    bid = iam_client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=APPROVER).json["bindingId"]
    binding = iam_client.get(f"/v1/iam/bindings/{bid}", headers=DEV).json
    assert binding["state"] == "active" and binding["expiresAt"]
    ctx = iam_context(iam_app)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=601)
    ctx.clock = lambda: later
    assert iam_client.get(f"/v1/iam/bindings/{bid}", headers=DEV).json["state"] == "expired"
    explained = iam_client.get("/v1/iam/explain?namespace=team-a&pod=web-1&cloud=aws", headers=DEV).json
    assert explained["results"][0]["allowed"] is False
    assert [b["id"] for b in iam_client.get("/v1/iam/bindings?state=expired", headers=DEV).json["items"]] == [bid]
    assert iam_client.get("/v1/iam/bindings?state=active", headers=DEV).json["items"] == []


def test_filters_and_paging(iam_client: Any) -> None:
    set_policy(iam_client)
    ids = [ask(iam_client, arn(f"app-{i}")).json["id"] for i in range(5)]
    ask(iam_client, arn("admin"))
    page = iam_client.get("/v1/iam/binding-requests?state=pending&limit=2", headers=DEV).json
    assert [r["id"] for r in page["items"]] == ids[:2]
    seen = [r["id"] for r in page["items"]]
    while page["metadata"].get("continue"):
        page = iam_client.get(f"/v1/iam/binding-requests?state=pending&limit=2&continue={page['metadata']['continue']}",
                              headers=DEV).json
        seen += [r["id"] for r in page["items"]]
    assert seen == ids
    denied = iam_client.get("/v1/iam/binding-requests?state=denied&requester=bob", headers=DEV).json["items"]
    assert len(denied) == 1
    assert iam_client.get("/v1/iam/binding-requests?colour=red", headers=DEV).status_code == 400
    assert iam_client.get("/v1/iam/binding-requests?limit=0", headers=DEV).status_code == 400


def test_bad_requests_get_clear_errors(iam_client: Any) -> None:
    set_policy(iam_client)
    cases = [
        ({"namespace": "team-a", "serviceAccount": "web", "cloud": "aws", "identity": "app-x"}, "not an IAM role ARN"),
        ({"namespace": "Team_A", "serviceAccount": "web", "cloud": "aws", "identity": arn("a")},
         "not a valid namespace"),
        ({"namespace": "team-a", "serviceAccount": "web", "cloud": "oracle", "identity": "x"}, "cloud must be one of"),
        ({"namespace": "team-a", "serviceAccount": "web", "cloud": "aws", "identity": arn("a"), "ttlSeconds": 5},
         "ttlSeconds"),
        ({"namespace": "team-a", "serviceAccount": "web", "cloud": "aws", "identity": arn("a"), "colour": 1},
         "unknown field 'colour'"),
        ({"namespace": "team-a", "serviceAccount": "web", "cloud": "aws", "identity": arn("a"),
          "podSelector": "app!=web"}, "only key=value"),
    ]
    for body, message in cases:
        resp = iam_client.post("/v1/iam/binding-requests", json=body, headers=DEV)
        assert resp.status_code == 422, body
        assert message in resp.json["message"]
    resp = iam_client.post("/v1/iam/binding-requests", data=b"{nope", headers=DEV)
    assert resp.status_code == 400 and "not valid JSON" in resp.json["message"]
    bad = iam_client.put("/v1/iam/policies/team-a", json={"allow": [{"cloud": "aws", "regex": "(unclosed"}]},
                         headers=ADMIN)
    assert bad.status_code == 422 and "allow[0].regex is not a valid regular expression" in bad.json["message"]
    both = iam_client.put("/v1/iam/policies/team-a", json={"allow": [{"cloud": "aws", "glob": "a", "regex": "b"}]},
                          headers=ADMIN)
    assert both.status_code == 422 and "exactly one of glob or regex" in both.json["message"]
    assert iam_client.get("/v1/iam/binding-requests/999", headers=DEV).status_code == 404
    assert iam_client.get("/v1/iam/explain?namespace=team-a&pod=nope", headers=DEV).status_code == 404
    assert iam_client.get("/v1/iam/explain?namespace=team-a", headers=DEV).status_code == 400


def test_routes_appear_in_openapi(iam_client: Any) -> None:
    paths = iam_client.get("/openapi.json").json["paths"]
    for path in ("/v1/iam/binding-requests", "/v1/iam/binding-requests/{rid}/approve", "/v1/iam/bindings/{bid}",
                 "/v1/iam/policies/{namespace}", "/v1/iam/explain"):
        assert path in paths


def test_policy_changes_are_rechecked_at_approval(iam_client: Any) -> None:
    set_policy(iam_client)
    rid = ask(iam_client, arn("app-x")).json["id"]
    set_policy(iam_client, body={"allow": [{"cloud": "aws", "glob": arn("svc-*")}], "approverGroups": ["approvers"]})
    resp = iam_client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=APPROVER)
    assert resp.status_code == 422 and "no longer allowed" in resp.json["message"]
    assert iam_client.get(f"/v1/iam/binding-requests/{rid}", headers=DEV).json["state"] == "pending"


def test_only_creator_approvers_and_admins_revoke(iam_client: Any, token_file: Any) -> None:
    set_policy(iam_client)
    bid = ask(iam_client, arn("app-readonly"), headers=APPROVER).json["bindingId"]  # created by carol
    resp = iam_client.delete(f"/v1/iam/bindings/{bid}", headers=DEV)  # bob: neither creator nor approver
    assert resp.status_code == 403 and f"may not revoke binding {bid}" in resp.json["message"]
    assert iam_client.delete(f"/v1/iam/bindings/{bid}", headers=ADMIN).status_code == 200
    mine = ask(iam_client, arn("app-readonly")).json["bindingId"]  # created by bob
    assert iam_client.delete(f"/v1/iam/bindings/{mine}", headers=DEV).json["state"] == "revoked"
    assert iam_client.delete("/v1/iam/bindings/424242", headers=ADMIN).status_code == 404


def test_policy_delete_returns_to_default_deny(iam_client: Any) -> None:
    set_policy(iam_client)
    assert iam_client.delete("/v1/iam/policies/team-a", headers=APPROVER).status_code == 403
    assert iam_client.delete("/v1/iam/policies/team-a", headers=ADMIN).status_code == 200
    assert iam_client.delete("/v1/iam/policies/team-a", headers=ADMIN).status_code == 404
    assert ask(iam_client, arn("app-x")).status_code == 403
    actions = [a[1] for a in audit_actions(iam_client)]
    assert actions[:2] == ["iam.policy.update", "iam.policy.delete"]
