"""Issue 12.7: a Pending pod with an IP (its init containers run) is served, through boto3 (IMDSv2) and through
google-auth (GCE metadata), with the same IP-reuse safety as running pods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.iam_credentials.conftest import ACCOUNT, GSA_READER, imds_credentials, pod_json


def _init_pod(world: Any, namespace: str, name: str, sa: str, ip: str, **kw: Any) -> dict[str, Any]:
    obj = pod_json(namespace, name, sa, ip, phase="Pending", **kw)
    obj["spec"]["initContainers"] = [{"name": "fetch-config"}]
    obj["status"]["initContainerStatuses"] = [{"name": "fetch-config", "state": {"running": {}}}]
    world.index.apply("pods", "ADDED", obj)
    return obj


def test_boto3_in_an_init_container_gets_credentials(world: Any, imds_env: Any) -> None:
    import boto3

    _init_pod(world, "team-a", "web-init", "web", "127.0.0.1")
    world.wait_prefetched("uid-team-a-web-init")
    imds_env(AWS_EC2_METADATA_DISABLED="false", AWS_EC2_METADATA_SERVICE_ENDPOINT=world.url + "/")
    session = boto3.session.Session(region_name="us-east-1")
    who = session.client("sts", endpoint_url=world.moto.url).get_caller_identity()
    assert who["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/app-reader/") and "web-init" in who["Arn"]


def test_google_auth_in_an_init_container_gets_a_token(world: Any) -> None:
    _init_pod(world, "team-a", "gweb-init", "gweb", "127.0.0.1")
    host = world.url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_"))}
    env.update(GCE_METADATA_HOST=host, GCE_METADATA_IP=host, NO_GCE_CHECK="true")
    code = ("import google.auth.compute_engine as ce, google.auth.transport.requests as r, json\n"
            "c = ce.Credentials()\nc.refresh(r.Request())\n"
            "print(json.dumps({'email': c.service_account_email, 'token': bool(c.token)}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"email": GSA_READER, "token": True}


def test_pending_pods_keep_the_ip_reuse_rules(world: Any) -> None:
    old = world.add_pod("team-a", "web-old", "web", "127.0.0.74")
    assert imds_credentials(world.url, "127.0.0.74")[0] == 200
    # The old pod is shutting down while a new Pending pod already reports the same IP: terminating never serves,
    # and the new pod is judged on its own bindings (team-b/batch -> app-writer), never the old pod's.
    world.add_pod("team-a", "web-old", "web", "127.0.0.74", uid=old["metadata"]["uid"], deleting=True, rv="2",
                  event="MODIFIED")
    _init_pod(world, "team-b", "batch-init", "batch", "127.0.0.74")
    status, creds = imds_credentials(world.url, "127.0.0.74")
    assert status == 200
    from tests.iam_credentials.conftest import sts_client

    assert "/app-writer/" in sts_client(world.moto.url, creds).get_caller_identity()["Arn"]
    # Two live pods (one Pending, one Running) with one IP: refused, not guessed.
    world.add_pod("team-a", "web-twin", "web", "127.0.0.74")
    assert imds_credentials(world.url, "127.0.0.74")[0] == 403
