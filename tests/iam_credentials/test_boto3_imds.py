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


def test_boto3_keeps_working_while_sts_is_stopped_until_near_expiry(make_settings: Any, tmp_path: Any,
                                                                    gcp_standin: Any, imds_env: Any) -> None:
    """A dedicated moto_server is stopped: boto3 still gets the cached credentials; near expiry a clear 503."""
    import boto3
    import botocore.exceptions
    import pytest

    from tests.iam_credentials.conftest import make_world, start_moto

    sts = start_moto(tmp_path)
    w = make_world(make_settings, tmp_path, sts, gcp_standin)
    try:
        w.add_pod("team-a", "web-down", "web", "127.0.0.1")
        w.wait_prefetched("uid-team-a-web-down")
        sts.stop()
        imds_env(AWS_EC2_METADATA_DISABLED="false", AWS_EC2_METADATA_SERVICE_ENDPOINT=w.url + "/")
        creds = boto3.session.Session(region_name="us-east-1").get_credentials()
        assert creds is not None and creds.get_frozen_credentials().access_key.startswith("ASIA")
        cache = w.svc.cache
        (entry,) = [e for e in cache._entries.values() if e.creds is not None]
        cache.clock = lambda: entry.creds.expiry.timestamp() - 60  # past min_remaining, STS still down
        status, body = imds_credentials(w.url, "127.0.0.1")
        assert status == 503 and "expire in 60 s" in body
        with pytest.raises(botocore.exceptions.NoCredentialsError):
            boto3.session.Session(region_name="us-east-1").client("sts").get_caller_identity()
    finally:
        sts.stop()
        w.close()
