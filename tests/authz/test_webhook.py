"""POST /authz/subjectaccessreviews: v1 and v1beta1 parsed and answered in the request's version, decisions
counted, denials audited, and a bad policy edit keeps the old policy serving."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

V1 = "authorization.k8s.io/v1"
V1BETA1 = "authorization.k8s.io/v1beta1"


def sar(version: str, groups: list[str], *, resource: dict[str, str] | None = None,
        path: str | None = None, verb: str = "get", user: str = "dave") -> dict[str, Any]:
    spec: dict[str, Any] = {"user": user, "uid": "u-1", "extra": {"scopes": ["a"]}}
    spec["group" if version == V1BETA1 else "groups"] = groups
    if path is not None:
        spec["nonResourceAttributes"] = {"path": path, "verb": verb}
    else:
        spec["resourceAttributes"] = {"verb": verb, "version": "v1", **(resource or {})}
    return {"apiVersion": version, "kind": "SubjectAccessReview", "spec": spec}


def post(client: Any, body: Any) -> Any:
    # kube-apiserver sends no Content-Type we can rely on
    import json

    return client.post("/authz/subjectaccessreviews", data=json.dumps(body))


PODS_DEV = {"namespace": "dev", "resource": "pods", "group": ""}


@pytest.mark.parametrize("version", [V1, V1BETA1])
def test_allow_in_the_request_version_with_groups_field_of_that_version(authz_client: Any, version: str) -> None:
    r = post(authz_client, sar(version, ["oidc:dev-web"], resource=PODS_DEV, verb="list"))
    assert r.status_code == 200
    assert r.get_json() == {
        "apiVersion": version,
        "kind": "SubjectAccessReview",
        "status": {"allowed": True, "reason": "kagiya: allowed by rule 'devs-read-pods'"},
    }


@pytest.mark.parametrize("version", [V1, V1BETA1])
def test_group_deny_is_seen_in_both_spellings(authz_client: Any, version: str) -> None:
    secrets = {"namespace": "dev", "resource": "secrets"}
    r = post(authz_client, sar(version, ["oidc:dev-web", "contractors"], resource=secrets))
    assert r.get_json()["apiVersion"] == version
    assert r.get_json()["status"] == {
        "allowed": False, "denied": True, "reason": "kagiya: denied by rule 'no-secrets-for-contractors'",
    }


@pytest.mark.parametrize(("version", "wrong"), [(V1, "group"), (V1BETA1, "groups")])
def test_the_other_versions_groups_spelling_is_refused_not_ignored(authz_client: Any, version: str,
                                                                   wrong: str) -> None:
    body = sar(version, [], resource={"namespace": "dev", "resource": "secrets"})
    body["spec"][wrong] = ["contractors"]
    r = post(authz_client, body)
    assert r.status_code == 400
    assert r.get_json()["kind"] == "Status" and f"spec.{wrong} is not a {version} field" in r.get_json()["message"]


@pytest.mark.parametrize("version", [V1, V1BETA1])
def test_no_opinion_is_allowed_false_without_denied(authz_client: Any, version: str) -> None:
    r = post(authz_client, sar(version, ["oidc:dev-web"], resource={"namespace": "prod", "resource": "pods"}))
    assert r.get_json() == {"apiVersion": version, "kind": "SubjectAccessReview", "status": {"allowed": False}}


@pytest.mark.parametrize("version", [V1, V1BETA1])
def test_non_resource_allow_deny_no_opinion(authz_client: Any, version: str) -> None:
    groups = ["system:authenticated"]
    assert post(authz_client, sar(version, groups, path="/version")).get_json()["status"]["allowed"] is True
    denied = post(authz_client, sar(version, groups, path="/debug/pprof/")).get_json()["status"]
    assert denied == {"allowed": False, "denied": True, "reason": "kagiya: denied by rule 'no-debug'"}
    assert post(authz_client, sar(version, groups, path="/metrics")).get_json()["status"] == {"allowed": False}


def test_guard_path_answers_too(authz_client: Any) -> None:
    import json

    r = authz_client.post("/subjectaccessreviews", data=json.dumps(sar(V1, ["system:authenticated"], path="/version")))
    assert r.get_json()["status"]["allowed"] is True


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"apiVersion": "authentication.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}}, "apiVersion"),
        ({"apiVersion": V1, "kind": "TokenReview", "spec": {}}, "kind must be SubjectAccessReview"),
        ({"apiVersion": V1, "kind": "SubjectAccessReview"}, "spec must be an object"),
        ({"apiVersion": V1, "kind": "SubjectAccessReview", "spec": {"user": "a"}}, "exactly one of"),
        ({"apiVersion": V1, "kind": "SubjectAccessReview",
          "spec": {"user": "a", "resourceAttributes": {}, "nonResourceAttributes": {}}}, "exactly one of"),
        ({"apiVersion": V1, "kind": "SubjectAccessReview", "spec": {"nonResourceAttributes": {"path": "/"}}},
         "spec.user or spec.groups is required"),
        ({"apiVersion": V1, "kind": "SubjectAccessReview", "spec": {"user": "a", "groups": "x",
                                                                     "nonResourceAttributes": {}}}, "list of strings"),
        ({"apiVersion": V1, "kind": "SubjectAccessReview", "spec": {"user": "a",
                                                                     "resourceAttributes": {"verb": 3}}}, "verb"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_malformed_reviews_get_a_400_status(authz_client: Any, body: Any, words: str) -> None:
    r = post(authz_client, body)
    assert r.status_code == 400
    status = r.get_json()
    assert status["kind"] == "Status" and status["code"] == 400 and words in status["message"]


def test_not_json_is_a_400_status(authz_client: Any) -> None:
    r = authz_client.post("/authz/subjectaccessreviews", data=b"{nope")
    assert r.status_code == 400 and r.get_json()["reason"] == "BadRequest"


def test_decisions_are_counted_in_metrics(authz_client: Any) -> None:
    post(authz_client, sar(V1, ["oidc:dev-web"], resource=PODS_DEV))
    post(authz_client, sar(V1BETA1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"}))
    post(authz_client, sar(V1BETA1, ["nobody"], path="/metrics"))
    text = authz_client.get("/metrics").get_data(as_text=True)
    assert 'kagiya_authz_decisions_total{decision="allowed",version="v1"} 1.0' in text
    assert 'kagiya_authz_decisions_total{decision="denied",version="v1beta1"} 1.0' in text
    assert 'kagiya_authz_decisions_total{decision="no_opinion",version="v1beta1"} 1.0' in text


def test_denials_are_audited_and_allows_are_not(authz_app: Any, authz_client: Any) -> None:
    from kagiya import audit
    from kagiya.web import store_of

    post(authz_client, sar(V1, ["oidc:dev-web"], resource=PODS_DEV))
    post(authz_client, sar(V1, ["contractors"], user="mallory", resource={"namespace": "dev", "resource": "secrets",
                                                                          "name": "db"}))
    items, _ = audit.query(store_of(authz_app), audit.AuditQuery(action="authz"))
    assert len(items) == 1
    event = items[0]
    assert (event["actor"], event["action"], event["outcome"]) == ("mallory", "authz.review", "denied")
    assert event["target"] == "get secrets 'db' in dev"
    assert event["details"]["rule"] == "no-secrets-for-contractors" and event["details"]["ruleLine"] == 4


def test_no_policy_configured_means_no_opinion_for_everything(client: Any) -> None:
    r = post(client, sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"}))
    assert r.status_code == 200 and r.get_json()["status"] == {"allowed": False}


def _rewrite(path: Path, text: str) -> None:
    # a distinct mtime even on coarse-grained filesystems
    path.write_text(text)
    later = time.time() + 2
    os.utime(path, (later, later))


def test_policy_change_is_picked_up_without_restart(authz_client: Any, policy_file: Path) -> None:
    body = sar(V1, ["oidc:dev-web"], resource={"namespace": "prod", "resource": "pods"}, verb="list")
    assert post(authz_client, body).get_json()["status"] == {"allowed": False}
    _rewrite(policy_file, "rules:\n  - name: prod-too\n    effect: allow\n    groups: ['oidc:*']\n"
                          "    verbs: [list]\n    resources: [pods]\n")
    reply = post(authz_client, body).get_json()["status"]
    assert reply == {"allowed": True, "reason": "kagiya: allowed by rule 'prod-too'"}
    text = authz_client.get("/metrics").get_data(as_text=True)
    assert 'kagiya_authz_policy_reloads_total{outcome="success"} 1.0' in text


def test_malformed_edit_keeps_the_old_policy_serving_and_is_reported(
    authz_client: Any, policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = sar(V1, ["oidc:dev-web"], resource=PODS_DEV, verb="list")
    denied = sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"})
    assert authz_client.get("/readyz").status_code == 200
    good = policy_file.read_text()
    _rewrite(policy_file, good.replace("effect: deny", "effect: nope", 1))
    with caplog.at_level("WARNING", logger="kagiya.authz"):
        # the old policy keeps serving, deny rules included
        assert post(authz_client, allowed).get_json()["status"]["allowed"] is True
        assert post(authz_client, denied).get_json()["status"]["denied"] is True
    assert any("effect must be allow or deny, got 'nope'" in r.getMessage() and "line 5" in r.getMessage()
               for r in caplog.records)
    ready = authz_client.get("/readyz")
    assert ready.status_code == 503
    detail = ready.get_json()["details"]["checks"]["authz-policy"]
    assert f"{policy_file} line 5: rules[0].effect must be allow or deny, got 'nope'" in detail
    assert "still serving the policy loaded at" in detail
    text = authz_client.get("/metrics").get_data(as_text=True)
    assert 'kagiya_authz_policy_reloads_total{outcome="error"} 1.0' in text
    # a fixed file is picked up and the report clears
    _rewrite(policy_file, good)
    assert post(authz_client, allowed).get_json()["status"]["allowed"] is True
    assert authz_client.get("/readyz").status_code == 200


def test_a_deleted_policy_file_keeps_the_old_policy(authz_client: Any, policy_file: Path) -> None:
    policy_file.unlink()
    body = sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"})
    assert post(authz_client, body).get_json()["status"]["denied"] is True
    assert "missing" in authz_client.get("/readyz").get_json()["details"]["checks"]["authz-policy"]


def test_a_bad_policy_at_start_up_fails_closed(make_settings: Any, tmp_path: Path) -> None:
    from kagiya.authz.policy_file import PolicyError
    from kagiya.web import create_app

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - effect: allow\n")
    with pytest.raises(PolicyError, match=r"bad.yaml line 2: rules\[0\] needs `users` or `groups`"):
        create_app(make_settings({"authz": {"policy_file": str(bad)}}))


def test_route_is_in_openapi(authz_client: Any) -> None:
    paths = authz_client.get("/openapi.json").get_json()["paths"]
    assert "post" in paths["/authz/subjectaccessreviews"]


def test_newer_apiserver_fields_are_accepted(authz_client: Any) -> None:
    body = sar(V1, ["oidc:dev-web"], resource={**PODS_DEV, "subresource": "log", "name": "web-1"})
    body["spec"]["resourceAttributes"]["fieldSelector"] = {"requirements": [{"key": "spec.nodeName",
                                                                               "operator": "In", "values": ["n1"]}]}
    body["spec"]["resourceAttributes"]["labelSelector"] = {"rawSelector": "app=web"}
    body["metadata"] = {"creationTimestamp": None}
    assert post(authz_client, body).get_json()["status"]["allowed"] is True


def test_bad_edit_can_be_reported_without_failing_readiness(make_settings: Any, policy_file: Path) -> None:
    from kagiya.web import create_app

    app = create_app(make_settings({"authz": {"policy_file": str(policy_file), "reload_interval_seconds": 0,
                                              "unready_on_bad_policy": False}}))
    try:
        client = app.test_client()
        _rewrite(policy_file, "rules: [\n")
        body = sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"})
        assert post(client, body).get_json()["status"]["denied"] is True
        assert client.get("/readyz").status_code == 200
        text = client.get("/metrics").get_data(as_text=True)
        assert 'kagiya_authz_policy_reloads_total{outcome="error"} 1.0' in text
    finally:
        app.extensions["kagiya.store"].dispose()


def test_a_deeply_nested_edit_keeps_the_old_policy_and_is_reported(authz_client: Any, policy_file: Path) -> None:
    """PyYAML composes recursively: thousands of `[` once raised RecursionError, a 500 with readiness green."""
    body = sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"})
    _rewrite(policy_file, "rules: " + "[" * 20000 + "]" * 20000 + "\n")
    resp = post(authz_client, body)
    assert resp.status_code == 200
    assert resp.get_json()["status"]["denied"] is True
    ready = authz_client.get("/readyz")
    assert ready.status_code == 503
    detail = ready.get_json()["details"]["checks"]["authz-policy"]
    assert f"{policy_file} line 1: nested more than 32 levels deep" in detail


def test_a_wildcard_resource_name_edit_keeps_the_old_policy(authz_client: Any, policy_file: Path) -> None:
    body = sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"})
    _rewrite(policy_file, "rules:\n  - name: r\n    effect: deny\n    groups: ['*']\n    verbs: ['*']\n"
                          "    resources: [secrets]\n    resourceNames: ['prod-*']\n")
    assert post(authz_client, body).get_json()["status"]["denied"] is True
    detail = authz_client.get("/readyz").get_json()["details"]["checks"]["authz-policy"]
    assert f"{policy_file} line 7: rules[0].resourceNames[0]: 'prod-*' has a '*'" in detail


def test_a_node_agent_certificate_may_not_ask_for_access_reviews(authz_app: Any, authz_client: Any,
                                                                 tmp_path: Path) -> None:
    """As on the TokenReview webhook: the agent's certificate (kept on every node) opens /iam/agent/ only, so a
    node's key can neither learn who may do what nor fill the audit log with denials. The apiserver's own
    certificate (any other O=) is answered."""
    import json

    from kagiya import audit
    from kagiya.tls import pki
    from kagiya.web import store_of

    root = tmp_path / "pki"
    pki.init_ca(root)
    agent = pki.init_client(root, "node", provider="agent", org="node-agent").cert.read_text()
    apiserver = pki.init_client(root, "apiserver", provider="oidc", org="corp").cert.read_text()
    denied = json.dumps(sar(V1, ["contractors"], resource={"namespace": "dev", "resource": "secrets"}))
    for path in ("/authz/subjectaccessreviews", "/subjectaccessreviews"):
        resp = authz_client.post(path, data=denied, environ_base={"SSL_CLIENT_CERT": agent})
        assert resp.status_code == 403, path
        assert resp.get_json()["kind"] == "Status" and "node agent" in resp.get_json()["message"]
    assert audit.query(store_of(authz_app), audit.AuditQuery(action="authz"))[0] == []
    resp = authz_client.post("/authz/subjectaccessreviews", data=denied, environ_base={"SSL_CLIENT_CERT": apiserver})
    assert resp.status_code == 200 and resp.get_json()["status"]["denied"] is True
