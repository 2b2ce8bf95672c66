"""boto3 as the pod through the container-credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI +
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, EKS Pod Identity style): the projected token is verified with a TokenReview
against the kube-apiserver stand-in, and the pod index is fed by kagiya's real watch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.iam_credentials.conftest import ACCOUNT, source_session


def test_boto3_get_caller_identity_via_container_credentials(kube_world: Any, imds_env: Any, tmp_path: Path) -> None:
    import boto3

    pod = kube_world.add_pod("team-a", "web-c1", "web", "10.0.0.1")  # its IP is not ours: the token decides
    token_file = tmp_path / "token"
    token_file.write_text(kube_world.pod_token(pod))
    imds_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=f"{kube_world.url}/v1/credentials",
             AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file))
    session = boto3.session.Session(region_name="us-east-1")
    creds = session.get_credentials()
    assert creds is not None and creds.method == "container-role"
    who = session.client("sts", endpoint_url=kube_world.moto.url).get_caller_identity()
    assert who["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/app-reader/")
    assert "web-c1" in who["Arn"]


def test_container_endpoint_token_rules(kube_world: Any) -> None:
    a = kube_world.add_pod("team-a", "web-c2", "web", "10.0.0.2")
    b = kube_world.add_pod("team-b", "batch-c2", "batch", "10.0.0.3")
    c = kube_world.add_pod("team-c", "lonely", "default", "10.0.0.4")
    s = source_session("127.0.0.1")
    url = f"{kube_world.url}/v1/credentials"
    assert s.get(url).status_code == 401  # no token: never falls back to the source IP
    assert s.get(url, headers={"Authorization": "not-a-token"}).status_code == 401
    wrong_audience = kube_world.pod_token(a, audiences=("https://kubernetes.default.svc",))
    assert s.get(url, headers={"Authorization": wrong_audience}).status_code == 401
    ra = s.get(url, headers={"Authorization": kube_world.pod_token(a)})
    rb = s.get(url, headers={"Authorization": "Bearer " + kube_world.pod_token(b)})
    assert ra.status_code == rb.status_code == 200
    assert ra.json()["AccessKeyId"] != rb.json()["AccessKeyId"] and ra.json()["AccountId"] == ACCOUNT
    rc = s.get(url, headers={"Authorization": kube_world.pod_token(c)})
    assert rc.status_code == 404 and "AccessKeyId" not in rc.text
    # A deleted pod's token is dead (the API server refuses bound tokens of deleted pods).
    token_a = kube_world.pod_token(a)
    kube_world.delete_pod(a)
    assert s.get(url, headers={"Authorization": token_a}).status_code in (401, 403)


def test_prefetch_from_the_pod_watch(kube_world: Any) -> None:
    """A pod appearing in the watch gets credentials before it asks; its first request is a cache hit."""
    pod = kube_world.add_pod("team-b", "batch-w", "batch", "127.0.0.12")
    kube_world.wait_prefetched(pod["metadata"]["uid"])
    cache = kube_world.svc.cache
    misses = cache.stats["miss"]
    r = source_session("127.0.0.1").get(f"{kube_world.url}/v1/credentials",
                                        headers={"Authorization": kube_world.pod_token(pod)})
    assert r.status_code == 200 and cache.stats["miss"] == misses
    kube_world.delete_pod(pod)
    assert not cache.has(pod["metadata"]["uid"])
