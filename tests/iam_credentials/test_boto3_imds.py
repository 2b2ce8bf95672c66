"""boto3 as the pod, through kagiya's IMDSv2 endpoint (AWS_EC2_METADATA_SERVICE_ENDPOINT), minted by moto_server."""

from __future__ import annotations

from typing import Any

from tests.iam_credentials.conftest import ACCOUNT, imds_credentials, sts_client


def test_boto3_get_caller_identity_via_imds(world: Any, imds_env: Any) -> None:
    import boto3

    world.add_pod("team-a", "web-1", "web", "127.0.0.1")
    world.wait_prefetched("uid-team-a-web-1")
    imds_env(AWS_EC2_METADATA_DISABLED="false", AWS_EC2_METADATA_SERVICE_ENDPOINT=world.url + "/")
    session = boto3.session.Session(region_name="us-east-1")
    creds = session.get_credentials()
    assert creds is not None and creds.method == "iam-role"
    who = session.client("sts", endpoint_url=world.moto.url).get_caller_identity()
    assert who["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/app-reader/")
    assert "web-1" in who["Arn"]


def test_two_pods_get_their_own_roles_and_an_unbound_pod_none(world: Any) -> None:
    world.add_pod("team-a", "web-2", "web", "127.0.0.2")
    world.add_pod("team-b", "batch-1", "batch", "127.0.0.3")
    world.add_pod("team-c", "lonely", "default", "127.0.0.4")
    status_a, creds_a = imds_credentials(world.url, "127.0.0.2")
    status_b, creds_b = imds_credentials(world.url, "127.0.0.3")
    assert status_a == status_b == 200
    arn_a = sts_client(world.moto.url, creds_a).get_caller_identity()["Arn"]
    arn_b = sts_client(world.moto.url, creds_b).get_caller_identity()["Arn"]
    assert "/app-reader/" in arn_a and "/app-writer/" in arn_b
    status_c, body_c = imds_credentials(world.url, "127.0.0.4")
    assert status_c == 404 and "app-" not in body_c
    # An unbound pod asking for another pod's role by name gets nothing either.
    s = __import__("tests.iam_credentials.conftest", fromlist=["source_session"]).source_session("127.0.0.4")
    tok = s.put(f"{world.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
    r = s.get(f"{world.url}/latest/meta-data/iam/security-credentials/app-reader",
              headers={"X-aws-ec2-metadata-token": tok})
    assert r.status_code == 404 and "AccessKeyId" not in r.text
    # An unknown address is not a pod at all.
    assert imds_credentials(world.url, "127.0.0.99")[0] == 404
