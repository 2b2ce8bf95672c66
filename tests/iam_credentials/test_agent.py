"""`kagiya agent` (the real command, in a subprocess) relays pods' metadata requests to kagiya over mutual TLS."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.iam_credentials.conftest import (
    ADMIN,
    AGENT_TOKEN,
    imds_credentials,
    source_session,
    sts_client,
)
from tests.support.servers import ServerProcess, free_port
from tests.support.threaded import ThreadedServer


@pytest.fixture
def pki(tmp_path: Path) -> Any:
    from kagiya.tls import pki as certs

    root = tmp_path / "pki"
    root.mkdir()
    certs.init_ca(root)
    server = certs.init_server(root, ips=["127.0.0.1"])
    client = certs.init_client(root, "agent", provider="token-auth", org="node-1")
    return {"ca": str(root / "ca.crt"), "server": server, "client": client}


def tls_server(app: Any, pki: Any) -> ThreadedServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki["server"].cert), str(pki["server"].key))
    ctx.load_verify_locations(pki["ca"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ThreadedServer(app, ssl_context=ctx)


def agent_process(tmp_path: Path, central: str, pki: Any, token: str) -> ServerProcess:
    token_file = tmp_path / f"agent-token-{token[:5]}"
    token_file.write_text(token)
    port = free_port()
    argv = [sys.executable, "-m", "kagiya.cli", "agent", "--listen", f"127.0.0.1:{port}", "--server", central,
            "--token-file", str(token_file), "--ca", pki["ca"],
            "--cert", str(pki["client"].cert), "--key", str(pki["client"].key)]
    return ServerProcess(argv, port=port, log_path=tmp_path / f"agent-{port}.log", env={"NO_GCE_CHECK": "true"})


def test_agent_relays_imds_and_gce_with_the_pods_source_ip(world: Any, pki: Any, tmp_path: Path) -> None:
    world.add_pod("team-a", "web-ag", "web", "127.0.0.21")
    world.add_pod("team-b", "batch-ag", "batch", "127.0.0.22")
    world.add_pod("team-a", "gweb-ag", "gweb", "127.0.0.23")
    with tls_server(world.app, pki) as central, agent_process(tmp_path, central.url, pki, AGENT_TOKEN) as agent:
        status_a, creds_a = imds_credentials(agent.url, "127.0.0.21")
        status_b, creds_b = imds_credentials(agent.url, "127.0.0.22")
        assert status_a == status_b == 200
        assert "/app-reader/" in sts_client(world.moto.url, creds_a).get_caller_identity()["Arn"]
        assert "/app-writer/" in sts_client(world.moto.url, creds_b).get_caller_identity()["Arn"]
        r = source_session("127.0.0.23").get(
            f"{agent.url}/computeMetadata/v1/instance/service-accounts/default/token",
            headers={"Metadata-Flavor": "Google"})
        assert r.status_code == 200 and r.headers["Metadata-Flavor"] == "Google"
        assert r.json()["access_token"].startswith("ya29.")
        # The rules still apply end to end: X-Forwarded-For is refused, other paths 404.
        s = source_session("127.0.0.21")
        assert s.put(f"{agent.url}/latest/api/token",
                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.1.1.1"}
                     ).status_code == 403
        assert s.get(f"{agent.url}/v1/iam/bindings").status_code == 404


def test_agent_identity_is_checked(world: Any, pki: Any, tmp_path: Path) -> None:
    world.add_pod("team-a", "web-ag2", "web", "127.0.0.24")
    with tls_server(world.app, pki) as central:
        # Authenticated, but not an agent: the central service refuses, the agent answers a clear 503.
        with agent_process(tmp_path, central.url, pki, "admin-token-0001") as agent:
            assert imds_credentials(agent.url, "127.0.0.24")[0] == 503
        # A pod cannot spoof its source IP by calling the relay route itself.
        client = world.app.test_client()
        envelope = {"sourceIp": "127.0.0.24", "method": "PUT", "path": "/latest/api/token"}
        assert client.post("/iam/agent/forward", json=envelope).status_code == 401
        assert client.post("/iam/agent/forward", json=envelope, headers=ADMIN).status_code == 403
        bad = client.post("/iam/agent/forward", json={**envelope, "path": "/v1/audit"},
                          headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
        assert bad.status_code == 400


def test_agent_command_refuses_plain_http_to_a_remote_server(runner: Any, tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("x")
    result = runner(["agent", "--server", "http://10.0.0.1:8080", "--token-file", str(token)])
    assert result.exit_code == 2 and "mutual TLS" in result.stderr
    result = runner(["agent", "--server", "https://kagiya.example", "--token-file", str(token)])
    assert result.exit_code == 2 and "--cert" in result.stderr
    result = runner(["agent", "--token-file", str(token)])
    assert result.exit_code == 2 and "KAGIYA_AGENT_SERVER" in result.stderr
    result = runner(["agent", "--server", "https://k.example", "--token-file", str(token), "--listen", "nohost"])
    assert result.exit_code == 2 and "HOST:PORT" in result.stderr


def test_agent_reads_its_settings_from_the_environment(world: Any, pki: Any, tmp_path: Path) -> None:
    """The DaemonSet configures the agent with KAGIYA_AGENT_* variables only."""
    world.add_pod("team-a", "web-env", "web", "127.0.0.25")
    token_file = tmp_path / "agent-token"
    token_file.write_text(AGENT_TOKEN)
    port = free_port()
    with tls_server(world.app, pki) as central:
        env = {"KAGIYA_AGENT_LISTEN": f"127.0.0.1:{port}", "KAGIYA_AGENT_SERVER": central.url,
               "KAGIYA_AGENT_TOKEN_FILE": str(token_file), "KAGIYA_AGENT_CERT": str(pki["client"].cert),
               "KAGIYA_AGENT_KEY": str(pki["client"].key), "KAGIYA_AGENT_CA": pki["ca"]}
        with ServerProcess([sys.executable, "-m", "kagiya.cli", "agent"], port=port, env=env,
                           log_path=tmp_path / "agent-env.log") as agent:
            assert imds_credentials(agent.url, "127.0.0.25")[0] == 200


DEFAULT_SCRIPT = r"""
import json
import google.auth
import google.auth.transport.requests

creds, project = google.auth.default()
creds.refresh(google.auth.transport.requests.Request())
print(json.dumps({"type": type(creds).__module__, "project": project, "token": creds.token}))
"""


def test_google_auth_default_discovers_the_agent(world: Any, pki: Any, tmp_path: Path) -> None:
    """google.auth.default() pings the metadata IP, then refreshes through the agent (no GCE_METADATA_HOST tricks)."""
    import json
    import os
    import subprocess

    world.add_pod("team-a", "gweb-default", "gweb", "127.0.0.1")
    with tls_server(world.app, pki) as central, agent_process(tmp_path, central.url, pki, AGENT_TOKEN) as agent:
        host = agent.url.removeprefix("http://")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GCE_", "GOOGLE_", "CLOUDSDK_")) and k != "NO_GCE_CHECK"}
        env.update(GCE_METADATA_HOST=host, GCE_METADATA_IP=host, HOME=str(tmp_path),
                   CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
        out = subprocess.run([sys.executable, "-W", "error", "-c", DEFAULT_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["type"] == "google.auth.compute_engine.credentials"
    assert result["project"] == "proj-1" and result["token"].startswith("ya29.")
