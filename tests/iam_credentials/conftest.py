"""Fixtures for the pod-credentials suite: moto_server (STS), the IAM Credentials stand-in, in-process HTTP servers."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import ServerProcess, free_port

MOTO = str(Path(sys.executable).parent / "moto_server")
ACCOUNT = "123456789012"


class ThreadedServer:
    """A WSGI app served by werkzeug on a loopback port in a daemon thread (threaded, like gunicorn's gthread)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None, ssl_context: Any = None) -> None:
        from werkzeug.serving import make_server

        self.host = host
        self.port = port or free_port(host)
        self.server = make_server(host, self.port, app, threaded=True, ssl_context=ssl_context)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_moto(tmp_path: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess([MOTO, "-H", "127.0.0.1", "-p", str(port)], port=port,
                         log_path=tmp_path / f"moto-{port}.log").start()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
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
