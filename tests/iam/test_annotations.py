"""Annotation sources through the real kubernetes client: each behind its switch and effective only where the
namespace policy allows; kiam/kube2iam namespace annotations; precedence, selectors and ambiguity."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import bearer
from tests.iam.conftest import arn, wait_until
from tests.standins.kube_apiserver import KubeApiServer

DEV, ADMIN, APPROVER = bearer("dev-token-0002"), bearer("admin-token-0001"), bearer("approver-token-0003")
GSA = "reader@proj-1.iam.gserviceaccount.com"
CLIENT_ID, TENANT = "11111111-2222-3333-4444-555555555555", "99999999-8888-7777-6666-555555555555"


def explain(client: Any, ns: str, pod: str, cloud: str = "aws") -> dict[str, Any]:
    resp = client.get(f"/v1/iam/explain?namespace={ns}&pod={pod}&cloud={cloud}", headers=DEV)
    assert resp.status_code == 200, resp.json
    return resp.json["results"][0]  # type: ignore[no-any-return]


def seen(iam_app: Any, ns: str, pod: str) -> bool:
    from kagiya.iam.context import iam_context

    return wait_until(lambda: iam_context(iam_app).kube_index().pod(ns, pod) is not None)


@pytest.mark.parametrize("annotation", [{"iam.amazonaws.com/permitted": "^app-.*$"},
                                        {"iam.amazonaws.com/allowed-roles": json.dumps(["app-*", "^svc-[0-9]+$"])}])
def test_namespace_annotations_govern_pod_role_annotations(kube: KubeApiServer, iam_client: Any, iam_app: Any,
                                                           annotation: dict[str, str]) -> None:
    kube.add_namespace("legacy", annotations=annotation)
    kube.add_pod("legacy", "reader", ip="10.2.0.1", annotations={"iam.amazonaws.com/role": "app-reader"})
    kube.add_pod("legacy", "full-arn", ip="10.2.0.2", annotations={"iam.amazonaws.com/role": arn("app-writer")})
    kube.add_pod("legacy", "greedy", ip="10.2.0.3", annotations={"iam.amazonaws.com/role": "admin"})
    assert seen(iam_app, "legacy", "greedy")
    reader = explain(iam_client, "legacy", "reader")
    assert reader["allowed"] and reader["identity"]["identity"] == arn("app-reader")
    assert reader["source"] == "pod-annotation:iam.amazonaws.com/role"
    assert list(annotation)[0] in reader["rule"]
    assert explain(iam_client, "legacy", "full-arn")["allowed"]
    greedy = explain(iam_client, "legacy", "greedy")
    assert not greedy["allowed"]
    assert "matches none of namespace annotation" in greedy["reason"]
    # The same annotation rules decide binding requests.
    ok = iam_client.post("/v1/iam/binding-requests", json={"namespace": "legacy", "serviceAccount": "default",
                                                           "cloud": "aws", "identity": arn("app-x")}, headers=DEV)
    assert ok.status_code == 201 and ok.json["state"] == "pending"
    no = iam_client.post("/v1/iam/binding-requests", json={"namespace": "legacy", "serviceAccount": "default",
                                                           "cloud": "aws", "identity": arn("admin")}, headers=DEV)
    assert no.status_code == 403


def test_no_policy_means_annotations_grant_nothing(kube: KubeApiServer, iam_client: Any, iam_app: Any) -> None:
    kube.add_pod("team-a", "rogue", ip="10.1.0.99", annotations={"iam.amazonaws.com/role": "admin"})
    assert seen(iam_app, "team-a", "rogue")
    result = explain(iam_client, "team-a", "rogue")
    assert not result["allowed"] and "no policy for namespace 'team-a': default deny" in result["reason"]


def test_service_account_annotations_for_each_cloud(kube: KubeApiServer, iam_client: Any, iam_app: Any) -> None:
    kube.add_namespace("multi")
    kube.add_service_account("multi", "app", annotations={
        "eks.amazonaws.com/role-arn": arn("irsa-app"), "iam.gke.io/gcp-service-account": GSA,
        "azure.workload.identity/client-id": CLIENT_ID, "azure.workload.identity/tenant-id": TENANT})
    kube.add_pod("multi", "app-1", ip="10.3.0.1", service_account="app")
    assert seen(iam_app, "multi", "app-1")
    assert not explain(iam_client, "multi", "app-1")["allowed"]
    policy = {"allow": [{"cloud": "aws", "glob": arn("irsa-*")},
                        {"cloud": "gcp", "glob": "*@proj-1.iam.gserviceaccount.com"},
                        {"cloud": "azure", "regex": CLIENT_ID}]}
    assert iam_client.put("/v1/iam/policies/multi", json=policy, headers=ADMIN).status_code == 200
    aws, gcp, azure = (explain(iam_client, "multi", "app-1", c) for c in ("aws", "gcp", "azure"))
    assert aws["source"] == "serviceaccount-annotation:eks.amazonaws.com/role-arn" and aws["allowed"]
    assert gcp["identity"]["identity"] == GSA and gcp["rule"].startswith("allow[1]")
    assert azure["identity"]["identity"] == CLIENT_ID and azure["identity"]["tenant"] == TENANT
    # trustAnnotations off: the same annotations are refused, naming why.
    iam_client.put("/v1/iam/policies/multi", json={**policy, "trustAnnotations": False}, headers=ADMIN)
    refused = explain(iam_client, "multi", "app-1", "gcp")
    assert not refused["allowed"] and "does not trust annotations" in refused["reason"]


def test_switched_off_sources_are_ignored(make_settings: Any, token_file: Any, kube: KubeApiServer) -> None:
    from kagiya.iam.context import iam_context
    from kagiya.iam.resolve import resolve_workload
    from kagiya.web import create_app

    kube.add_namespace("legacy", annotations={"iam.amazonaws.com/permitted": ".*"})
    kube.add_pod("legacy", "p", ip="10.2.0.9", annotations={"iam.amazonaws.com/role": "app"})
    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "iam": {"base_role_arn": arn("")},
                              "kube": {"mode": "url", "host": kube.url}})
    app = create_app(settings)
    ctx = iam_context(app)
    try:
        index = ctx.kube_index()
        assert index.wait_synced(10)
        res = resolve_workload(ctx, "legacy", "default", index.pod("legacy", "p"), cloud="aws")
        assert not res.allowed and res.candidates == ()
    finally:
        ctx.watcher.stop(2)  # type: ignore[union-attr]
        app.extensions["kagiya.store"].dispose()


def test_bindings_beat_annotations_and_selectors_narrow(kube: KubeApiServer, iam_client: Any, iam_app: Any) -> None:
    iam_client.put("/v1/iam/policies/team-a", json={"allow": [{"cloud": "aws", "glob": arn("app-*")}],
                                                   "approverGroups": ["approvers"]}, headers=ADMIN)
    kube.add_pod("team-a", "web-2", ip="10.1.0.12", service_account="web", labels={"app": "web", "tier": "batch"},
                 annotations={"iam.amazonaws.com/role": "app-from-annotation"})
    assert seen(iam_app, "team-a", "web-2")
    assert explain(iam_client, "team-a", "web-2")["identity"]["identity"] == arn("app-from-annotation")

    def bind(identity: str, **extra: Any) -> int:
        rid = iam_client.post("/v1/iam/binding-requests", json={"namespace": "team-a", "serviceAccount": "web",
                              "cloud": "aws", "identity": identity, **extra}, headers=DEV).json["id"]
        return int(iam_client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=APPROVER).json["bindingId"])

    general = bind(arn("app-general"))
    batch = bind(arn("app-batch"), podSelector={"matchLabels": {"tier": "batch"}})
    web2 = explain(iam_client, "team-a", "web-2")
    assert web2["source"] == f"binding:{batch}"
    assert [c["source"] for c in web2["considered"]] == [f"binding:{general}", f"binding:{batch}",
                                                        "pod-annotation:iam.amazonaws.com/role"]
    assert explain(iam_client, "team-a", "web-1")["source"] == f"binding:{general}"  # no tier label
    # A second binding of equal precedence naming another role would make the pods' identity ambiguous: refused
    # at approval with 409 naming the existing binding, and the pods keep their role.
    rid = iam_client.post("/v1/iam/binding-requests", json={"namespace": "team-a", "serviceAccount": "web",
                          "cloud": "aws", "identity": arn("app-other")}, headers=DEV).json["id"]
    refused = iam_client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=APPROVER)
    assert refused.status_code == 409 and f"binding {general}" in refused.json["message"]
    assert explain(iam_client, "team-a", "web-1")["source"] == f"binding:{general}"
    # A policy tightened later also stops existing bindings.
    iam_client.put("/v1/iam/policies/team-a", json={"allow": [{"cloud": "aws", "glob": arn("app-batch")}]},
                   headers=ADMIN)
    assert explain(iam_client, "team-a", "web-2")["source"] == f"binding:{batch}"
    after = explain(iam_client, "team-a", "web-1")
    assert not after["allowed"] and f"binding:{general}" in after["reason"]


def test_explain_by_service_account(iam_client: Any) -> None:
    iam_client.put("/v1/iam/policies/team-a", json={"autoApprove": [{"cloud": "aws", "glob": arn("app-*")}],
                                                    "requesterGroups": ["team-a"]}, headers=ADMIN)
    iam_client.post("/v1/iam/binding-requests", json={"namespace": "team-a", "serviceAccount": "web",
                    "cloud": "aws", "identity": arn("app-sa")}, headers=DEV)
    resp = iam_client.get("/v1/iam/explain?namespace=team-a&serviceAccount=web", headers=DEV).json
    assert resp["pod"] is None
    assert [r["allowed"] for r in resp["results"]] == [True, False, False]
    assert resp["results"][0]["identity"]["session_name"] == "team-a.web"


def test_pod_role_extras_and_bare_names_without_base(kube: KubeApiServer, iam_client: Any, iam_app: Any) -> None:
    from kagiya.iam.context import iam_context
    from kagiya.iam.resolve import resolve_workload

    kube.add_namespace("legacy", annotations={"iam.amazonaws.com/permitted": "^app-.*$"})
    kube.add_pod("legacy", "p", ip="10.2.0.20", annotations={
        "iam.amazonaws.com/role": "app-x", "iam.amazonaws.com/external-id": "ext-123",
        "iam.amazonaws.com/session-name": "my session/1"})
    assert seen(iam_app, "legacy", "p")
    ctx = iam_context(iam_app)
    res = resolve_workload(ctx, "legacy", "default", ctx.kube_index().pod("legacy", "p"), cloud="aws")
    assert res.allowed and res.identity is not None
    assert (res.identity.external_id, res.identity.session_name) == ("ext-123", "my-session-1")
    assert res.identity.max_session_seconds == 3600

    ctx.settings = ctx.settings.replace(sections={**ctx.settings.sections,
                                                  "iam": ctx.iam.__class__(pod_role_annotation=True)})
    bare = resolve_workload(ctx, "legacy", "default", ctx.kube_index().pod("legacy", "p"), cloud="aws")
    assert not bare.allowed and "bare role name 'app-x' needs iam.base_role_arn" in bare.reason


def test_namespace_annotation_changes_take_effect(kube: KubeApiServer, iam_client: Any, iam_app: Any) -> None:
    import copy

    ns = kube.add_namespace("legacy", annotations={"iam.amazonaws.com/permitted": "^app-.*$"})
    kube.add_pod("legacy", "p", ip="10.2.0.30", annotations={"iam.amazonaws.com/role": "db-admin"})
    assert seen(iam_app, "legacy", "p")
    assert not explain(iam_client, "legacy", "p")["allowed"]
    changed = copy.deepcopy(ns)
    changed["metadata"]["annotations"]["iam.amazonaws.com/permitted"] = "^(app|db)-.*$"
    kube.put("namespaces", changed)
    assert wait_until(lambda: explain(iam_client, "legacy", "p")["allowed"])
    kube.delete("namespaces", "", "legacy")
    assert wait_until(lambda: not explain(iam_client, "legacy", "p")["allowed"])


def test_malformed_annotations_are_refused_with_the_reason(kube: KubeApiServer, iam_client: Any,
                                                           iam_app: Any) -> None:
    kube.add_namespace("legacy", annotations={"iam.amazonaws.com/permitted": ".*"})
    kube.add_service_account("legacy", "odd", annotations={"iam.gke.io/gcp-service-account": "not-an-email",
                                                           "eks.amazonaws.com/role-arn": "arn:aws:s3:::bucket"})
    kube.add_pod("legacy", "p", ip="10.2.0.40", service_account="odd")
    assert seen(iam_app, "legacy", "p")
    aws, gcp = explain(iam_client, "legacy", "p", "aws"), explain(iam_client, "legacy", "p", "gcp")
    assert not aws["allowed"] and "is not an IAM role ARN" in aws["reason"]
    assert not gcp["allowed"] and "is not a service-account email" in gcp["reason"]
