"""`POST /iam/mutate`: the JSONPatch applies cleanly (`jsonpatch`), is idempotent, leaves unbound pods alone."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from kagiya.iam.admission import pod_patch
from kagiya.iam.credential_settings import CredentialSettings


def review(namespace: str, pod: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": {"group": "", "version": "v1",
                                                                                  "kind": "Pod"},
                        "operation": operation, "namespace": namespace, "object": pod}}


def pod(sa: str, containers: int = 2, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "app-", "labels": {"app": "x"}},
            "spec": {"serviceAccountName": sa,
                     "containers": [{"name": f"c{i}", "image": "img"} for i in range(containers)], **spec}}


def mutate(client: Any, namespace: str, obj: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    r = client.post("/iam/mutate", json=review(namespace, obj))
    assert r.status_code == 200, r.get_json()
    answer = r.get_json()["response"]
    assert answer["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and answer["allowed"] is True
    if "patch" not in answer:
        return obj, []
    assert answer["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(answer["patch"]))
    return jsonpatch.apply_patch(obj, ops), ops


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_aws_pod_gets_container_credentials_env_and_token_volume(world: Any) -> None:
    client = world.app.test_client()
    original = pod("web", initContainers=[{"name": "init", "image": "img", "env": [{"name": "KEEP", "value": "1"}]}])
    patched, ops = mutate(client, "team-a", copy.deepcopy(original))
    assert ops
    for c in patched["spec"]["containers"] + patched["spec"]["initContainers"]:
        env = env_of(c)
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://169.254.170.23/v1/credentials"
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == "/var/run/secrets/kagiya.io/serviceaccount/token"
        assert {"name": "kagiya-token", "mountPath": "/var/run/secrets/kagiya.io/serviceaccount",
                "readOnly": True} in c["volumeMounts"]
    assert env_of(patched["spec"]["initContainers"][0])["KEEP"] == "1"
    volume = patched["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    assert volume == {"audience": "kagiya", "expirationSeconds": 3600, "path": "token"}
    # Idempotent: admitting the patched pod again changes nothing.
    again, ops2 = mutate(client, "team-a", copy.deepcopy(patched))
    assert ops2 == [] and again == patched


def test_gcp_pod_gets_metadata_host_and_unbound_pods_are_untouched(world: Any) -> None:
    client = world.app.test_client()
    patched, ops = mutate(client, "team-a", pod("gweb", containers=1))
    assert env_of(patched["spec"]["containers"][0])["GCE_METADATA_HOST"] == "169.254.169.254"
    assert "volumes" not in patched["spec"]
    for ns, sa in (("team-c", "default"), ("team-a", "nobody")):
        original = pod(sa)
        same, ops = mutate(client, ns, copy.deepcopy(original))
        assert ops == [] and same == original
    # Not a pod create: allowed, no patch.
    r = client.post("/iam/mutate", json=review("team-a", pod("web"), operation="UPDATE"))
    assert "patch" not in r.get_json()["response"]


def test_malformed_reviews_are_clear_400s(world: Any) -> None:
    client = world.app.test_client()
    assert client.post("/iam/mutate", data="{").status_code == 400
    assert client.post("/iam/mutate", json={"kind": "AdmissionReview"}).status_code == 400
    body = review("team-a", pod("web"))
    del body["request"]["uid"]
    r = client.post("/iam/mutate", json=body)
    assert r.status_code == 400 and r.get_json()["kind"] == "Status"


names = st.sampled_from(["A", "B", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "GCE_METADATA_HOST"])
containers = st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c"])},
    optional={"env": st.lists(st.fixed_dictionaries({"name": names, "value": st.just("v")}), max_size=3),
              "volumeMounts": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["data", "kagiya-token"]),
                                                              "mountPath": st.sampled_from(["/d", "/e"])}),
                                       max_size=2)}), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(containers, st.sets(st.sampled_from(["aws", "gcp"])), st.booleans())
def test_patch_always_applies_and_is_idempotent(cs: list[dict[str, Any]], clouds: set[str], volumes: bool) -> None:
    spec: dict[str, Any] = {"containers": cs}
    if volumes:
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    obj = {"spec": spec}
    cfg = CredentialSettings()
    once = jsonpatch.apply_patch(obj, pod_patch(obj, clouds, cfg))
    assert pod_patch(once, clouds, cfg) == []
    for c in once["spec"]["containers"]:
        names_ = [e["name"] for e in c.get("env", [])]
        if "aws" in clouds:
            assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in names_
        if "gcp" in clouds:
            assert "GCE_METADATA_HOST" in names_
