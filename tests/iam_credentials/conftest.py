"""Fixtures for the pod-credentials suite: moto_server (STS), the IAM Credentials stand-in, in-process HTTP servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.moto import MotoServer
from tests.support.threaded import ThreadedServer

ACCOUNT = "123456789012"


def start_moto(tmp_path: Path) -> MotoServer:
    """A dedicated moto_server (tests that stop it); tests/support/moto.py runs it."""
    return MotoServer(tmp_path).start()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto_server for the session (STS AssumeRole / GetCallerIdentity)."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcp_standin() -> Iterator[Any]:
    from tests.standins.iam_credentials import IamCredentialsStandin

    standin = IamCredentialsStandin({"reader@proj-1.iam.gserviceaccount.com", "writer@proj-1.iam.gserviceaccount.com"})
    with ThreadedServer(standin.app) as server:
        standin.url = server.url
        yield standin


def sts_client(endpoint: str, creds: dict[str, str] | None = None) -> Any:
    import boto3

    kwargs: dict[str, Any] = {}
    if creds:
        kwargs = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                  "aws_session_token": creds["Token"]}
    return boto3.session.Session().client("sts", region_name="us-east-1", endpoint_url=endpoint, **kwargs)


# --- a running kagiya with pods, policies and bindings ---------------------------------------------------------

ROLE_READER = f"arn:aws:iam::{ACCOUNT}:role/app-reader"
ROLE_WRITER = f"arn:aws:iam::{ACCOUNT}:role/app-writer"
GSA_READER = "reader@proj-1.iam.gserviceaccount.com"
ADMIN = {"Authorization": "Bearer admin-token-0001"}
AGENT_TOKEN = "agent-token-0004"
AGENT_NODE = "node-1"


def pod_json(namespace: str, name: str, sa: str, ip: str, *, uid: str = "", phase: str = "Running",
             host_network: bool = False, rv: str = "1", annotations: dict[str, str] | None = None,
             node: str = AGENT_NODE, deleting: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name, "uid": uid or f"uid-{namespace}-{name}",
                     "resourceVersion": rv, "annotations": annotations or {},
                     **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})},
        "spec": {"serviceAccountName": sa, "hostNetwork": host_network, "nodeName": node,
                 "containers": [{"name": "app"}]},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else []},
    }


class World:
    """kagiya served on 127.0.0.1 with a pod index, policies for team-a/team-b and approved bindings:
    team-a/web -> app-reader (aws), team-b/batch -> app-writer (aws), team-a/gweb -> reader@ (gcp)."""

    def __init__(self, app: Any, server: ThreadedServer, moto: Any, gcp: Any) -> None:
        from kagiya.iam.context import iam_context

        self.app = app
        self.server = server
        self.url = server.url
        self.moto = moto
        self.gcp = gcp
        self.ctx = iam_context(app)
        self.index = self.ctx.kube

    @property
    def svc(self) -> Any:
        from kagiya.iam.metadata.service import service_of

        return service_of(self.app)

    def close(self) -> None:
        """Stop serving, the credential refresher and the kube watch (if any), then close the store."""
        self.server.stop()
        self.svc.stop()
        if self.ctx.watcher is not None:
            self.ctx.watcher.stop(timeout=2)
        self.app.extensions["kagiya.store"].dispose()

    def add_pod(self, *args: Any, event: str = "ADDED", **kwargs: Any) -> dict[str, Any]:
        obj = pod_json(*args, **kwargs)
        self.index.apply("pods", event, obj)
        return obj

    def delete_pod(self, obj: dict[str, Any]) -> None:
        self.index.apply("pods", "DELETED", obj)

    def wait_prefetched(self, uid: str, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not self.svc.cache.has(uid):
            if time.monotonic() > deadline:
                raise AssertionError(f"no credentials prefetched for {uid}")
            time.sleep(0.02)


class KubeWorld(World):
    """A World whose pod index is fed by kagiya's real watcher from the kube-apiserver stand-in."""

    def __init__(self, *args: Any, kube: Any) -> None:
        super().__init__(*args)
        self.kube = kube

    def add_pod(self, namespace: str, name: str, sa: str, ip: str, **kwargs: Any) -> dict[str, Any]:
        obj = self.kube.add_pod(namespace, name, ip=ip, service_account=sa, **kwargs)
        self._wait(lambda: self.index.pod_by_uid(obj["metadata"]["uid"]) is not None)
        return obj

    def delete_pod(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.kube.delete("pods", meta["namespace"], meta["name"])
        self._wait(lambda: self.index.pod_by_uid(meta["uid"]) is None)

    @staticmethod
    def _wait(cond: Any, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("the pod index did not catch up")
            time.sleep(0.01)

    def pod_token(self, obj: dict[str, Any], audiences: tuple[str, ...] = ("kagiya",)) -> str:
        meta = obj["metadata"]
        return str(self.kube.issue_token(meta["namespace"], obj["spec"]["serviceAccountName"], pod_name=meta["name"],
                                         pod_uid=meta["uid"], audiences=audiences))


def make_world(make_settings: Any, tmp_path: Path, moto: Any, gcp: Any, kube: Any = None,
               kube_overrides: dict[str, Any] | None = None, sections: dict[str, Any] | None = None,
               **credentials: Any) -> World:
    from kagiya.kube import KubeIndex
    from kagiya.web import create_app

    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token-0001,alice,uid-alice,"kagiya:admins"\n'
                      f'{AGENT_TOKEN},system:kagiya-agent:{AGENT_NODE},uid-agent,"kagiya:agents"\n')
    overrides: dict[str, Any] = {
        "authn": {"token_file": str(tokens)},
        "credentials": {"sts_endpoint": moto.url, "iam_credentials_endpoint": gcp.url,
                        "issuer_timeout_seconds": 3, "refresh_interval_seconds": 0.2, **credentials},
    }
    overrides.update(sections or {})
    if kube is not None:
        overrides["kube"] = {"mode": "url", "host": kube.url, "retry_seconds": 0.1, "watch_seconds": 30,
                             **(kube_overrides or {})}
    app = create_app(make_settings(overrides))
    from kagiya.iam.context import iam_context

    ctx = iam_context(app)
    if kube is None:
        ctx.kube = KubeIndex()
    names = ("team-a", "team-b", "team-c")
    if kube is None:
        # The same calls kagiya's watcher makes after its first list (this also marks the index synced).
        ctx.kube.replace("namespaces", [{"metadata": {"name": ns}} for ns in names])
        ctx.kube.replace("serviceaccounts", [])
        ctx.kube.replace("pods", [])
    else:
        for ns in names:
            kube.add_namespace(ns)
    client = app.test_client()
    for ns in ("team-a", "team-b"):
        policy = {"allow": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"},
                            {"cloud": "gcp", "glob": "*@proj-1.iam.gserviceaccount.com"}],
                  "autoApprove": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"},
                                  {"cloud": "gcp", "glob": "*@proj-1.iam.gserviceaccount.com"}]}
        r = client.put(f"/v1/iam/policies/{ns}", json=policy, headers=ADMIN)
        assert r.status_code == 200, r.get_json()
    for ns, sa, cloud, ident in (("team-a", "web", "aws", ROLE_READER), ("team-b", "batch", "aws", ROLE_WRITER),
                                 ("team-a", "gweb", "gcp", GSA_READER)):
        r = client.post("/v1/iam/binding-requests", headers=ADMIN,
                        json={"namespace": ns, "serviceAccount": sa, "cloud": cloud, "identity": ident})
        assert r.status_code == 201 and r.get_json()["state"] == "approved", r.get_json()
    server = ThreadedServer(app).__enter__()
    world = World(app, server, moto, gcp) if kube is None else KubeWorld(app, server, moto, gcp, kube=kube)
    world.svc.ensure_started()  # start the refresher and subscribe to pod events before any pod appears
    # kagiya's own STS client resolves *its* credentials now, before a test points the pod's env at kagiya
    # (in a cluster the service and the pods never share an environment).
    world.svc.cache.issuer("aws")._sts()
    if kube is not None:
        assert world.ctx.kube.wait_synced(10), "the kube watch never synced"
        world.index = world.ctx.kube
    return world


@pytest.fixture
def world(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any) -> Iterator[World]:
    w = make_world(make_settings, tmp_path, moto, gcp_standin)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def kube_world(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any) -> Iterator[KubeWorld]:
    from tests.standins.kube_apiserver import KubeApiServer

    with KubeApiServer() as kube:
        w = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube)
        try:
            yield w  # type: ignore[misc]
        finally:
            w.close()


@pytest.fixture
def imds_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Environment in which boto3 finds credentials only through kagiya."""

    def point(**env: str) -> None:
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return point


def source_session(source_ip: str) -> Any:
    """A requests session whose connections come from `source_ip` (a pod's address on 127.0.0.0/8)."""
    import requests
    from requests.adapters import HTTPAdapter

    class SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["source_address"] = (source_ip, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", SourceAdapter())
    session.mount("https://", SourceAdapter())
    return session


def imds_credentials(url: str, source_ip: str) -> tuple[int, Any]:
    """The IMDSv2 dance as a raw HTTP client from `source_ip`: (status of the last step, its body)."""
    s = source_session(source_ip)
    r = s.put(f"{url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}, timeout=5)
    if r.status_code != 200:
        return r.status_code, r.text
    tok = {"X-aws-ec2-metadata-token": r.text}
    r = s.get(f"{url}/latest/meta-data/iam/security-credentials/", headers=tok, timeout=5)
    if r.status_code != 200:
        return r.status_code, r.text
    role = r.text
    r = s.get(f"{url}/latest/meta-data/iam/security-credentials/{role}", headers=tok, timeout=5)
    return r.status_code, (r.json() if r.status_code == 200 else r.text)
