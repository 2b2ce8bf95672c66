"""Helpers for tests that play kubelet on the real apiserver (no kubelet runs) and call kagiya as a pod would."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from tests.e2e_apiserver.cluster import Cluster

T = TypeVar("T")


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


class Imds:
    """IMDSv2 calls to kagiya from a given loopback source address (the pod's IP)."""

    def __init__(self, cluster: Cluster) -> None:
        self.port = cluster.kagiya.port
        self.context = ssl.create_default_context(cafile=str(cluster.kagiya.ca_file))

    def call(self, ip: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10,
                                           source_address=(ip, 0))
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def session(self, ip: str) -> tuple[int, str]:
        return self.call(ip, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})

    def role(self, ip: str, token: str | None = None) -> tuple[int, str]:
        """(status, role name) for the pod at `ip`; a fresh session token unless one is given."""
        if token is None:
            status, token = self.session(ip)
            if status != 200:
                return status, token
        return self.call(ip, "GET", "/latest/meta-data/iam/security-credentials/",
                         {"X-aws-ec2-metadata-token": token})


def create_pod(cluster: Cluster, ns: str, name: str, sa: str) -> None:
    cluster.admin("create", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceAccountName": sa, "nodeName": "node-1",
                 "containers": [{"name": "app", "image": "example/app:1"}]}}))


def set_running(cluster: Cluster, ns: str, name: str, ip: str) -> None:
    """What the kubelet does once the sandbox has an address."""
    status = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1",
                         "hostIPs": [{"ip": "127.0.0.1"}]}}
    cluster.admin("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def delete_pod(cluster: Cluster, ns: str, name: str) -> None:
    cluster.admin("delete", "pod", name, "-n", ns, "--grace-period=0", "--force", "--wait=false")
