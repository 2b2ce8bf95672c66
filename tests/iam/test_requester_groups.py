"""Auto-approval is for the namespace's own requesters: another team's member cannot bind identities there alone."""

from __future__ import annotations

from typing import Any

from tests.conftest import bearer
from tests.iam.conftest import arn

ADMIN, DEV, APPROVER = bearer("admin-token-0001"), bearer("dev-token-0002"), bearer("approver-token-0003")
AUTO = {"allow": [{"cloud": "aws", "glob": arn("app-*")}], "autoApprove": [{"cloud": "aws", "glob": arn("app-*")}]}


def _ask(client: Any, headers: dict[str, str], identity: str = "app-one", sa: str = "web") -> Any:
    return client.post("/v1/iam/binding-requests", headers=headers, json={
        "namespace": "team-a", "serviceAccount": sa, "cloud": "aws", "identity": arn(identity)})


def test_outsider_request_matching_auto_approve_stays_pending(iam_client: Any) -> None:
    # bob (team-a) is not in team-a's requester groups here: only approvers are.
    r = iam_client.put("/v1/iam/policies/team-a", json={**AUTO, "requesterGroups": ["approvers"]}, headers=ADMIN)
    assert r.status_code == 200 and r.json["requesterGroups"] == ["approvers"]
    outsider = _ask(iam_client, DEV)
    assert outsider.status_code == 201 and outsider.json["state"] == "pending" and outsider.json["bindingId"] is None
    assert iam_client.get("/v1/iam/bindings?namespace=team-a", headers=ADMIN).json["items"] == []
    insider = _ask(iam_client, APPROVER, "app-two")
    assert insider.status_code == 201 and insider.json["state"] == "approved"
    admin = _ask(iam_client, ADMIN, "app-three", sa="batch")  # another account: web already has app-two
    assert admin.json["state"] == "approved"  # platform admins always count


def test_requester_groups_default_to_the_approver_groups(iam_client: Any) -> None:
    iam_client.put("/v1/iam/policies/team-a", json={**AUTO, "approverGroups": ["approvers"]}, headers=ADMIN)
    assert _ask(iam_client, DEV).json["state"] == "pending"
    assert _ask(iam_client, APPROVER, "app-two").json["state"] == "approved"
    iam_client.put("/v1/iam/policies/team-a", json=AUTO, headers=ADMIN)  # neither set: admins only
    assert _ask(iam_client, DEV, "app-four").json["state"] == "pending"


def test_requester_groups_must_be_group_names(iam_client: Any) -> None:
    r = iam_client.put("/v1/iam/policies/team-a", json={**AUTO, "requesterGroups": "team-a"}, headers=ADMIN)
    assert r.status_code == 422
    assert "requesterGroups" in r.json["message"]
