"""Review of issue 12.6: edges of the web-identity admission mode. The token-expiration annotation is bounded the
way the API server validates a projected token (600 s .. 2^32 s, so a pod author's annotation can never make the
pod itself invalid), and a pod naming its ServiceAccount with the deprecated `spec.serviceAccount` field gets that
account's annotations (audience), the same account its role was resolved for."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch

from kagiya.iam.irsa import web_identity_for
from tests.iam_credentials.conftest import ACCOUNT
from tests.iam_credentials.test_admission_irsa import _admit, _set_mode, irsa_world  # noqa: F401 - the fixture

MAX_PROJECTED_SECONDS = 2**32  # Kubernetes' validation limit for serviceAccountToken.expirationSeconds


def _expiration(raw: str) -> int:
    return web_identity_for("arn:aws:iam::1:role/x", {}, {"eks.amazonaws.com/token-expiration": raw},
                            region="", regional_sts=False).expiration


def test_token_expiration_is_bounded_like_the_api_server_validates_it() -> None:
    assert _expiration("7200") == 7200
    assert _expiration("10") == 600
    assert _expiration("99999999999999999999") == MAX_PROJECTED_SECONDS
    assert _expiration("\u0661\u0662\u0660\u0660") == 86400  # not ASCII digits: the default, as for any bad value
    assert _expiration("12h") == 86400


def test_deprecated_service_account_field_gets_that_accounts_annotations(irsa_world: Any) -> None:  # noqa: F811
    world = irsa_world
    _set_mode(world, "team-b", "web-identity")
    world.kube.add_service_account("team-b", "legacy", annotations={
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/app-legacy", "eks.amazonaws.com/audience": "aud-l"})
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"serviceAccount": "legacy", "containers": [{"name": "app", "image": "busybox"}]}}
    r = _admit(world, "team-b", obj)
    assert r.status_code == 200, r.get_json()
    patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(r.get_json()["response"]["patch"])))
    env = {e["name"]: e["value"] for e in patched["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/app-legacy"
    assert patched["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "aud-l"


def test_a_pod_with_aws_and_gcp_bindings_gets_both_and_readmission_is_a_no_op(irsa_world: Any) -> None:  # noqa: F811
    from tests.iam_credentials.conftest import ADMIN, GSA_READER, ROLE_READER

    world = irsa_world
    client = world.app.test_client()
    for cloud, ident in (("aws", ROLE_READER), ("gcp", GSA_READER)):
        r = client.post("/v1/iam/binding-requests", headers=ADMIN,
                        json={"namespace": "team-a", "serviceAccount": "dual", "cloud": cloud, "identity": ident})
        assert r.status_code == 201, r.get_json()
    _set_mode(world, "team-a", "web-identity")
    world.kube.add_service_account("team-a", "dual")
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "d", "annotations": {"eks.amazonaws.com/skip-containers": "sidecar"}},
           "spec": {"serviceAccountName": "dual",
                    "initContainers": [{"name": "init", "image": "busybox",
                                        "env": [{"name": "KEEP", "value": "1"}]}],
                    "containers": [{"name": "app", "image": "busybox"}, {"name": "sidecar", "image": "busybox"}]}}
    r = _admit(world, "team-a", obj)
    assert r.status_code == 200, r.get_json()
    patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(r.get_json()["response"]["patch"])))
    spec = patched["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["aws-iam-token"]  # no container-credentials token volume
    for c in (*spec["initContainers"], spec["containers"][0]):
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["AWS_ROLE_ARN"] == ROLE_READER and "GCE_METADATA_HOST" in env, c["name"]
        assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
        assert [m["name"] for m in c["volumeMounts"]] == ["aws-iam-token"]
    assert env_names(spec["initContainers"][0])[0] == "KEEP"
    sidecar = spec["containers"][1]  # skipped for AWS; the GCE variables still reach it
    assert "volumeMounts" not in sidecar and "AWS_ROLE_ARN" not in env_names(sidecar)
    assert "GCE_METADATA_HOST" in env_names(sidecar)
    again = _admit(world, "team-a", patched).get_json()["response"]
    assert "patch" not in again or json.loads(base64.b64decode(again["patch"])) == []


def env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env") or []]
