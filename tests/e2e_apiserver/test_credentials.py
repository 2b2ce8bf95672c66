"""Credentials for a pod, end to end: the real apiserver issues the pod's projected ServiceAccount token, kagiya
checks it with a TokenReview (the `create tokenreviews` of deploy/'s RBAC, nothing more), resolves the IRSA
annotation and mints credentials from moto's STS; boto3 then uses them.

Shows: the container-credentials endpoint answers a pod-bound token with credentials that work for that role;
IMDSv2 by source IP answers the same role; a token for another audience, or for a pod that is gone, is refused
(401).
"""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e_apiserver.cluster import Cluster
from tests.e2e_apiserver.conftest import STATIC_USERS
from tests.e2e_apiserver.pods import Imds, create_pod, delete_pod, eventually, set_running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN = STATIC_USERS["ops"][0]
ROLE_PREFIX = "arn:aws:iam::123456789012:role/"
IP = "127.0.0.51"


@pytest.fixture(scope="module")
def workload(cluster: Cluster) -> Iterator[tuple[str, str]]:
    ns = f"creds-{uuid.uuid4().hex[:6]}"
    cluster.admin("create", "namespace", ns)
    status, body = cluster.kagiya.request("PUT", f"/v1/iam/policies/{ns}", token=ADMIN, body={
        "allow": [{"cloud": "aws", "glob": f"{ROLE_PREFIX}{ns}-*"}]})
    assert status == 200, body
    role = f"{ROLE_PREFIX}{ns}-reader"
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "app", "namespace": ns, "annotations": {"eks.amazonaws.com/role-arn": role}}})
    create_pod(cluster, ns, "web", "app")
    set_running(cluster, ns, "web", IP)
    yield ns, role


def container_credentials(cluster: Cluster, token: str) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(cluster.kagiya.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", cluster.kagiya.port, context=context, timeout=20)
    try:
        conn.request("GET", "/v1/credentials", headers={"Authorization": token})  # raw, as the SDK sends the file
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def caller_arn(cluster: Cluster, creds: dict[str, str]) -> str:
    import boto3

    sts = boto3.session.Session().client(
        "sts", region_name="us-east-1", endpoint_url=cluster.moto.url,  # type: ignore[attr-defined]
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["Token"])
    return str(sts.get_caller_identity()["Arn"])


def test_projected_token_gets_the_pods_role(cluster: Cluster, workload: tuple[str, str]) -> None:
    ns, role = workload
    token = cluster.admin("create", "token", "app", "-n", ns, "--audience", "kagiya", "--bound-object-kind", "Pod",
                          "--bound-object-name", "web", "--duration", "10m").strip()
    status, body = eventually(lambda: container_credentials(cluster, token), lambda r: r[0] == 200)
    assert status == 200, (body, cluster.kagiya.log()[-1500:])
    assert set(body) >= {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert f":assumed-role/{role.rsplit('/', 1)[1]}/" in caller_arn(cluster, body)

    imds = Imds(cluster)
    assert imds.role(IP) == (200, role.rsplit("/", 1)[1])
    session = imds.session(IP)[1]
    creds = imds.call(IP, "GET", f"/latest/meta-data/iam/security-credentials/{role.rsplit('/', 1)[1]}",
                      {"X-aws-ec2-metadata-token": session})
    assert creds[0] == 200 and json.loads(creds[1])["Code"] == "Success", creds

    # another audience, or a token of a pod that is gone (the apiserver's TokenReview says no): refused
    def mint(audience: str) -> str:
        return cluster.admin("create", "token", "app", "-n", ns, "--audience", audience, "--bound-object-kind",
                             "Pod", "--bound-object-name", "web").strip()

    assert container_credentials(cluster, mint("someone-else"))[0] == 401
    unused = mint("kagiya")
    delete_pod(cluster, ns, "web")
    assert eventually(lambda: container_credentials(cluster, unused)[0], lambda s: s == 401) == 401
    # the token used above has a positive TokenReview in kagiya's cache (60 s): once the index has seen the delete
    # it is refused at once, not when the cache entry ends
    refused = eventually(lambda: container_credentials(cluster, token), lambda r: r[0] in (401, 403), timeout=5)
    assert refused[0] in (401, 403) and "AccessKeyId" not in json.dumps(refused[1]), refused
