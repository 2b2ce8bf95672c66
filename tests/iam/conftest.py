"""Fixtures for the iam suite: a kube-apiserver stand-in, an app wired to it through the real `kubernetes` client,
and a live in-process kagiya server for CLI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.standins.kube_apiserver import KubeApiServer
from tests.support.apps import synced_iam_app
from tests.support.threaded import ThreadedServer

ACCOUNT = "123456789012"
BASE_ARN = f"arn:aws:iam::{ACCOUNT}:role/"


def arn(name: str) -> str:
    return BASE_ARN + name


@pytest.fixture
def kube() -> Iterator[KubeApiServer]:
    with KubeApiServer(bookmark_interval=0.2) as server:
        server.add_namespace("team-a")
        server.add_service_account("team-a", "default")
        server.add_service_account("team-a", "web")
        server.add_pod("team-a", "web-1", ip="10.1.0.11", service_account="web", labels={"app": "web"})
        yield server


@pytest.fixture
def iam_settings(make_settings: Any, token_file: Path, kube: KubeApiServer) -> Any:
    return make_settings({
        "authn": {"token_file": str(token_file)},
        "iam": {"base_role_arn": BASE_ARN, "pod_role_annotation": True, "irsa_annotation": True,
                "gke_annotation": True, "azure_annotation": True},
        "kube": {"mode": "url", "host": kube.url, "watch_seconds": 30, "retry_seconds": 0.05,
                 "max_retry_seconds": 0.2},
    })


@pytest.fixture
def iam_app(iam_settings: Any) -> Iterator[Any]:
    with synced_iam_app(iam_settings) as application:
        yield application


@pytest.fixture
def iam_client(iam_app: Any) -> Any:
    return iam_app.test_client()


@pytest.fixture
def live_server(iam_app: Any) -> Iterator[str]:
    """The iam app served over real HTTP on a loopback port (for the CLI, which is an HTTP client)."""
    with ThreadedServer(iam_app, "iam-live-server") as server:
        yield server.url


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
