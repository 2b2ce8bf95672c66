"""Issue 12.8: the non-credential metadata paths SDKs and tools read answer from configuration instead of 404:
AWS region, availability zone and instance-identity document (boto3 finds its region through IMDS), GCE zone,
numeric project id and cluster-name attribute (read with google-auth's metadata client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.iam_credentials.conftest import ACCOUNT, make_world, source_session

CONFIG = {"aws_availability_zone": "eu-west-3b", "aws_region": "eu-west-3", "gcp_zone": "europe-west1-c",
          "gcp_project_number": "123456789012", "cluster_name": "prod-eu"}


@pytest.fixture
def configured(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any) -> Iterator[Any]:
    world = make_world(make_settings, tmp_path, moto, gcp_standin, **CONFIG)
    try:
        yield world
    finally:
        world.close()


def test_botocore_takes_the_region_from_imds(configured: Any, imds_env: Any, monkeypatch: Any) -> None:
    """botocore's own IMDS region provider (used for its `auto` defaults mode) reads placement/availability-zone."""
    import botocore.session
    from botocore.utils import IMDSRegionProvider

    configured.add_pod("team-a", "web-r", "web", "127.0.0.1")
    imds_env(AWS_EC2_METADATA_DISABLED="false", AWS_EC2_METADATA_SERVICE_ENDPOINT=configured.url + "/")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert IMDSRegionProvider(botocore.session.get_session()).provide() == "eu-west-3"


def test_aws_placement_and_identity_document(configured: Any) -> None:
    configured.add_pod("team-a", "web-d", "web", "127.0.7.1")
    s = source_session("127.0.7.1")
    base = configured.url + "/latest"
    tok = {"X-aws-ec2-metadata-token": s.put(f"{base}/api/token",
                                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text}
    assert s.get(f"{base}/meta-data/placement/region", headers=tok).text == "eu-west-3"
    assert s.get(f"{base}/meta-data/placement/availability-zone", headers=tok).text == "eu-west-3b"
    doc = s.get(f"{base}/dynamic/instance-identity/document", headers=tok).json()
    assert doc["region"] == "eu-west-3" and doc["availabilityZone"] == "eu-west-3b"
    assert doc["accountId"] == ACCOUNT and doc["privateIp"] == "127.0.7.1" and doc["instanceId"].startswith("i-")
    assert s.get(f"{base}/meta-data/placement/region").status_code == 401  # IMDSv2 rules still apply


GCE_SCRIPT = r"""
import json
import google.auth.transport.requests as r
from google.auth.compute_engine import _metadata as m
req = r.Request()
print(json.dumps({"zone": m.get(req, "instance/zone"), "number": m.get(req, "project/numeric-project-id"),
                  "cluster": m.get(req, "instance/attributes/cluster-name")}))
"""


def test_google_auth_reads_zone_project_number_and_cluster_name(configured: Any) -> None:
    configured.add_pod("team-a", "gweb-z", "gweb", "127.0.0.1")
    host = configured.url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_"))}
    env.update(GCE_METADATA_HOST=host, GCE_METADATA_IP=host, NO_GCE_CHECK="true")
    out = subprocess.run([sys.executable, "-c", GCE_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "zone": "projects/123456789012/zones/europe-west1-c", "number": "123456789012", "cluster": "prod-eu"}


def test_unconfigured_gce_paths_are_404(world: Any) -> None:
    r = source_session("127.0.0.1").get(f"{world.url}/computeMetadata/v1/instance/attributes/cluster-name",
                                        headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 404 and "credentials.cluster_name" in r.text
