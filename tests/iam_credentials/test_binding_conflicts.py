"""Issue 12.8: a second binding that would give the same pods a different identity in the same cloud is refused with
409 naming the existing binding (through the API and the CLI, exit status 1), so running pods never lose their
credentials to an ambiguity; the same identity again, or selectors that cannot match one pod, are fine."""

from __future__ import annotations

from typing import Any

from tests.iam_credentials.conftest import ACCOUNT, ADMIN, ROLE_READER, ROLE_WRITER, imds_credentials


def _request(client: Any, ns: str, sa: str, role: str, selector: dict[str, str] | None = None) -> Any:
    body: dict[str, Any] = {"namespace": ns, "serviceAccount": sa, "cloud": "aws", "identity": role}
    if selector:
        body["podSelector"] = {"matchLabels": selector}
    return client.post("/v1/iam/binding-requests", headers=ADMIN, json=body)


def test_auto_approved_conflict_is_409_and_pods_keep_their_role(world: Any, runner: Any) -> None:
    client = world.app.test_client()
    world.add_pod("team-a", "web-x", "web", "127.0.8.1")
    assert imds_credentials(world.url, "127.0.8.1")[0] == 200
    existing = client.get("/v1/iam/bindings?namespace=team-a&serviceAccount=web&cloud=aws",
                          headers=ADMIN).get_json()["items"][0]
    r = _request(client, "team-a", "web", ROLE_WRITER)
    assert r.status_code == 409
    body = r.get_json()
    assert body["kind"] == "Status" and body["reason"] == "Conflict"
    assert f"binding {existing['id']}" in body["message"] and ROLE_READER in body["message"]
    status, creds = imds_credentials(world.url, "127.0.8.1")  # the running pod is unaffected
    assert status == 200
    from tests.iam_credentials.conftest import sts_client

    assert "/app-reader/" in sts_client(world.moto.url, creds).get_caller_identity()["Arn"]
    # The same identity again is no conflict; a selector that cannot match the same pods is none either.
    assert _request(client, "team-a", "web", ROLE_READER).status_code == 201
    # The CLI: one line on stderr, exit status 1 (documented for 409).
    out = runner(["iam", "--server", world.url, "request", "-n", "team-a", "--service-account", "web",
                  "--role", ROLE_WRITER], env={"KAGIYA_TOKEN": "admin-token-0001"})
    assert out.exit_code == 1 and f"binding {existing['id']}" in out.stderr


def test_approving_a_conflicting_pending_request_is_409(world: Any) -> None:
    client = world.app.test_client()
    policy = {"allow": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"}], "allowSelfApproval": True}
    assert client.put("/v1/iam/policies/team-c", json=policy, headers=ADMIN).status_code == 200
    general = _request(client, "team-c", "svc", ROLE_READER).get_json()
    second = _request(client, "team-c", "svc", ROLE_WRITER).get_json()  # same tier (no selector), other role
    back = _request(client, "team-c", "svc", ROLE_WRITER, {"tier": "back"}).get_json()
    back_other = _request(client, "team-c", "svc", ROLE_READER, {"tier": "back", "app": "x"}).get_json()
    front = _request(client, "team-c", "svc", ROLE_READER, {"tier": "front"}).get_json()
    assert {general["state"], second["state"], back["state"], back_other["state"], front["state"]} == {"pending"}

    def approve(req: dict[str, Any]) -> Any:
        return client.post(f"/v1/iam/binding-requests/{req['id']}/approve", headers=ADMIN, json={})

    assert approve(general).status_code == 200
    r = approve(second)
    assert r.status_code == 409 and "already gives team-c/svc" in r.get_json()["message"]
    assert client.get(f"/v1/iam/binding-requests/{second['id']}", headers=ADMIN).get_json()["state"] == "pending"
    # A selector binding outranks the general one (documented precedence): no ambiguity, approved.
    assert approve(back).status_code == 200
    # Two selector bindings that can match the same pod (tier=back, app=x) with different roles: 409.
    assert approve(back_other).status_code == 409
    # tier=front and tier=back can never select the same pod: approved.
    assert approve(front).status_code == 200
