"""Issue 12.6: the web-identity (IRSA) mode of the admission webhook injects exactly what
amazon-eks-pod-identity-webhook injects, honours its annotations, and a ServiceAccount the index has not seen yet
is looked up live (or the admission fails, for the webhook's failurePolicy to decide).

The expected patches below are written in the upstream webhook's own test format (its `expectedPatch` JSON: one op
per changed list, volumes first, whole container lists); they are compared field by field with kagiya's patch after
dropping the Go client's zero-value `"resources": {}` that upstream serialises into every container.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from kagiya.iam.irsa import web_identity_for, web_identity_patch
from tests.iam_credentials.conftest import ACCOUNT, ADMIN, ROLE_READER, make_world

ARN = "arn:aws:iam::111122223333:role/reports-reader"
MOUNT = {"name": "aws-iam-token", "readOnly": True, "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}
ROLE_ENV = [{"name": "AWS_ROLE_ARN", "value": ARN},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]


def vol(audience: str = "sts.amazonaws.com", seconds: int = 86400) -> dict[str, Any]:
    return {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": seconds, "path": "token"}}]}}


def go_shape(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Upstream's JSON with the Go zero value `resources: {}` removed from containers."""
    out = copy.deepcopy(ops)
    for op in out:
        if op["path"] in ("/spec/containers", "/spec/initContainers"):
            for c in op["value"]:
                if c.get("resources") == {}:
                    del c["resources"]
    return out


def assert_same(ours: list[dict[str, Any]], upstream_json: str) -> None:
    theirs = go_shape(json.loads(upstream_json))
    assert [(o["op"], o["path"]) for o in ours] == [(o["op"], o["path"]) for o in theirs]
    for mine, want in zip(ours, theirs, strict=True):
        if isinstance(want["value"], list) and want["path"] in ("/spec/containers", "/spec/initContainers"):
            for c_mine, c_want in zip(mine["value"], want["value"], strict=True):
                for key in set(c_mine) | set(c_want):
                    assert c_mine.get(key) == c_want.get(key), (want["path"], c_want.get("name"), key)
        else:
            assert mine["value"] == want["value"], want["path"]


def pod(containers: list[dict[str, Any]], annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reports", "annotations": annotations or {}},
            "spec": {"serviceAccountName": "reports", "containers": containers, **spec}}


CASES = [
    # (pod, service-account annotations, region, regional STS, upstream-format expected patch)
    (pod([{"image": "busybox", "name": "app"}]), {}, "", False,
     json.dumps([{"op": "add", "path": "/spec/volumes", "value": [vol()]},
                 {"op": "add", "path": "/spec/containers", "value": [
                     {"name": "app", "image": "busybox", "env": ROLE_ENV, "resources": {},
                      "volumeMounts": [MOUNT]}]}])),
    (pod([{"image": "busybox", "name": "app"}], volumes=[{"name": "data", "emptyDir": {}}]), {}, "", False,
     json.dumps([{"op": "add", "path": "/spec/volumes/0", "value": vol()},
                 {"op": "add", "path": "/spec/containers", "value": [
                     {"name": "app", "image": "busybox", "env": ROLE_ENV, "resources": {},
                      "volumeMounts": [MOUNT]}]}])),
    (pod([{"image": "busybox", "name": "app"}]), {"eks.amazonaws.com/audience": "my-aud"}, "eu-west-1", True,
     json.dumps([{"op": "add", "path": "/spec/volumes", "value": [vol("my-aud")]},
                 {"op": "add", "path": "/spec/containers", "value": [
                     {"name": "app", "image": "busybox", "env": [
                         {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
                         {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
                         {"name": "AWS_REGION", "value": "eu-west-1"}, *ROLE_ENV],
                      "resources": {}, "volumeMounts": [MOUNT]}]}])),
    (pod([{"image": "busybox", "name": "proxy"},
          {"image": "busybox", "name": "app", "env": [{"name": "AWS_ROLE_ARN", "value": "mine"}]}],
         {"eks.amazonaws.com/skip-containers": "proxy"}), {}, "us-west-2", False,
     json.dumps([{"op": "add", "path": "/spec/volumes", "value": [vol()]},
                 {"op": "add", "path": "/spec/containers", "value": [
                     {"name": "proxy", "image": "busybox", "resources": {}},
                     {"name": "app", "image": "busybox", "env": [
                         {"name": "AWS_ROLE_ARN", "value": "mine"},
                         {"name": "AWS_DEFAULT_REGION", "value": "us-west-2"},
                         {"name": "AWS_REGION", "value": "us-west-2"}], "resources": {}, "volumeMounts": [MOUNT]}]}])),
    (pod([{"image": "busybox", "name": "app", "env": [{"name": "AWS_REGION", "value": "ap-south-1"},
                                                       {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]}],
         {"eks.amazonaws.com/token-expiration": "0"}), {"eks.amazonaws.com/token-expiration": "7200"}, "eu-west-1",
     True,
     json.dumps([{"op": "add", "path": "/spec/volumes", "value": [vol(seconds=600)]},
                 {"op": "add", "path": "/spec/containers", "value": [
                     {"name": "app", "image": "busybox", "env": [
                         {"name": "AWS_REGION", "value": "ap-south-1"},
                         {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}, *ROLE_ENV],
                      "resources": {}, "volumeMounts": [MOUNT]}]}])),
    (pod([{"image": "busybox", "name": "app"}], initContainers=[{"image": "busybox", "name": "init"}]),
     {"eks.amazonaws.com/token-expiration": "3600", "eks.amazonaws.com/sts-regional-endpoints": "false"}, "", True,
     json.dumps([{"op": "add", "path": "/spec/volumes", "value": [vol(seconds=3600)]},
                 {"op": "add", "path": "/spec/containers", "value": [
                     {"name": "app", "image": "busybox", "env": ROLE_ENV, "resources": {}, "volumeMounts": [MOUNT]}]},
                 {"op": "add", "path": "/spec/initContainers", "value": [
                     {"name": "init", "image": "busybox", "env": ROLE_ENV, "resources": {},
                      "volumeMounts": [MOUNT]}]}])),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_patch_matches_the_upstream_webhook_format(case: int) -> None:
    obj, sa_notes, region, regional, expected = CASES[case]
    wi = web_identity_for(ARN, sa_notes, obj["metadata"]["annotations"], region=region, regional_sts=regional)
    ops = web_identity_patch(obj, wi)
    assert_same(ops, expected)
    patched = jsonpatch.apply_patch(obj, ops)
    assert web_identity_patch(patched, wi) == []  # re-admitting a patched pod changes nothing


@pytest.fixture
def irsa_world(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any) -> Iterator[Any]:
    from tests.standins.kube_apiserver import KubeApiServer

    with KubeApiServer() as kube:
        world = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube, aws_region="eu-central-1",
                           sections={"iam": {"irsa_annotation": True}})
        try:
            yield world
        finally:
            world.close()


def _set_mode(world: Any, namespace: str, mode: str) -> None:
    client = world.app.test_client()
    body = client.get(f"/v1/iam/policies/{namespace}", headers=ADMIN).get_json()
    stored = {k: body[k] for k in ("allow", "autoApprove", "approverGroups", "requesterGroups", "allowSelfApproval",
                                   "maxSessionSeconds", "trustAnnotations")}
    for key in ("allow", "autoApprove"):
        stored[key] = [{k: v for k, v in r.items() if k != "name"} for r in stored[key]]
    r = client.put(f"/v1/iam/policies/{namespace}", json={**stored, "aws_injection": mode}, headers=ADMIN)
    assert r.status_code == 200 and r.get_json()["aws_injection"] == mode, r.get_json()


def _admit(world: Any, namespace: str, obj: dict[str, Any]) -> Any:
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "3f1c", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "operation": "CREATE", "namespace": namespace, "object": obj}}
    return world.app.test_client().post("/iam/mutate", json=review)


def test_web_identity_namespace_gets_the_irsa_shape_and_boto3_uses_it(irsa_world: Any, imds_env: Any,
                                                                      tmp_path: Path) -> None:
    import boto3

    world = irsa_world
    _set_mode(world, "team-a", "web-identity")
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-irsa", "annotations": {}},
           "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "busybox"}]}}
    r = _admit(world, "team-a", copy.deepcopy(obj))
    assert r.status_code == 200
    ops = json.loads(base64.b64decode(r.get_json()["response"]["patch"]))
    role_env = [{"name": "AWS_ROLE_ARN", "value": ROLE_READER}, ROLE_ENV[1]]
    assert_same(ops, json.dumps([
        {"op": "add", "path": "/spec/volumes", "value": [vol()]},
        {"op": "add", "path": "/spec/containers", "value": [{"name": "app", "image": "busybox", "env": [
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
            {"name": "AWS_DEFAULT_REGION", "value": "eu-central-1"}, {"name": "AWS_REGION", "value": "eu-central-1"},
            *role_env], "resources": {}, "volumeMounts": [MOUNT]}]}]))
    # The SDK reads exactly these variables and calls STS AssumeRoleWithWebIdentity itself (moto as STS).
    env = {e["name"]: e["value"] for e in jsonpatch.apply_patch(obj, ops)["spec"]["containers"][0]["env"]}
    token_file = tmp_path / "token"
    token_file.write_text(world.kube.issue_token("team-a", "web", audiences=("sts.amazonaws.com",)))
    imds_env(AWS_ROLE_ARN=env["AWS_ROLE_ARN"], AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
             AWS_REGION=env["AWS_REGION"], AWS_STS_REGIONAL_ENDPOINTS=env["AWS_STS_REGIONAL_ENDPOINTS"],
             AWS_ENDPOINT_URL_STS=world.moto.url)
    session = boto3.session.Session()
    creds = session.get_credentials()
    assert creds is not None and creds.method == "assume-role-with-web-identity"
    who = session.client("sts").get_caller_identity()
    assert who["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/app-reader/")
    # The default mode stays kagiya's container-credentials shape.
    _set_mode(world, "team-a", "container-credentials")
    ops = json.loads(base64.b64decode(_admit(world, "team-a", copy.deepcopy(obj)).get_json()["response"]["patch"]))
    names = {e["name"] for op in ops for e in (op.get("value") or []) if isinstance(e, dict) and "name" in e}
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in names and "AWS_ROLE_ARN" not in names


def test_a_service_account_the_index_has_not_seen_is_looked_up_live(irsa_world: Any) -> None:
    world = irsa_world
    _set_mode(world, "team-b", "web-identity")
    world.kube.block_watches()  # the index cannot hear of the new ServiceAccount
    world.kube.add_service_account("team-b", "fresh", annotations={
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/app-fresh", "eks.amazonaws.com/audience": "aud-x"})
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"serviceAccountName": "fresh", "containers": [{"name": "app", "image": "busybox"}]}}
    r = _admit(world, "team-b", obj)
    assert r.status_code == 200
    patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(r.get_json()["response"]["patch"])))
    env = {e["name"]: e["value"] for e in patched["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/app-fresh"
    assert patched["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "aud-x"
    # The API server cannot be asked: a 503 Status, so the webhook's failurePolicy decides (never a silent admit).
    world.kube.stop()
    obj["spec"]["serviceAccountName"] = "unknown-yet"
    r = _admit(world, "team-b", obj)
    assert r.status_code == 503 and r.get_json()["kind"] == "Status"
    assert "service account team-b/unknown-yet" in r.get_json()["message"]
