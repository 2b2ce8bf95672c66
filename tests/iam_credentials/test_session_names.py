"""STS session names through the real path: two pods of one Deployment in a long namespace stay distinguishable."""

from __future__ import annotations

from typing import Any

from tests.iam_credentials.conftest import ACCOUNT, ADMIN, ROLE_READER, imds_credentials, sts_client

LONG_NS = "payments-settlement-reconciliation-batch-processing-prod-eu1"  # 59 characters


def _bind_long_namespace(world: Any) -> None:
    world.index.apply("namespaces", "ADDED", {"metadata": {"name": LONG_NS}})
    client = world.app.test_client()
    glob = {"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"}
    assert client.put(f"/v1/iam/policies/{LONG_NS}", json={"allow": [glob], "autoApprove": [glob]},
                      headers=ADMIN).status_code == 200
    r = client.post("/v1/iam/binding-requests", headers=ADMIN,
                    json={"namespace": LONG_NS, "serviceAccount": "worker", "cloud": "aws", "identity": ROLE_READER})
    assert r.status_code == 201 and r.get_json()["state"] == "approved"


def _session_of(world: Any, ip: str) -> str:
    status, creds = imds_credentials(world.url, ip)
    assert status == 200, creds
    arn = sts_client(world.moto.url, creds).get_caller_identity()["Arn"]
    return str(arn.rsplit("/", 1)[-1])


def test_pods_of_one_deployment_get_distinct_session_names(world: Any) -> None:
    _bind_long_namespace(world)
    world.add_pod(LONG_NS, "reconciler-7d9f8c6b5d-abcde", "worker", "127.0.0.101")
    world.add_pod(LONG_NS, "reconciler-7d9f8c6b5d-fghij", "worker", "127.0.0.102")
    first, second = _session_of(world, "127.0.0.101"), _session_of(world, "127.0.0.102")
    assert first != second
    assert first.endswith("-abcde") and second.endswith("-fghij")
    assert len(first) <= 64 and first.startswith(LONG_NS[:20])
    explained = world.app.test_client().get(
        "/v1/iam/explain", query_string={"namespace": LONG_NS, "pod": "reconciler-7d9f8c6b5d-abcde", "cloud": "aws"},
        headers=ADMIN).get_json()
    assert explained["results"][0]["identity"]["session_name"] == first  # explain shows what STS gets

