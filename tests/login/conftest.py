"""Fixtures for `kagiya login`: the stand-in issuer with grant counters, and the plugin run as kubectl runs it
(a subprocess with KUBERNETES_EXEC_INFO, the stand-in browser as $BROWSER, a private XDG cache)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.login.browser import command as browser_command
from tests.standins.oidc_login import LoginIssuer
from tests.support.servers import VENV_BIN

KAGIYA = str(VENV_BIN / "kagiya")
V1 = "client.authentication.k8s.io/v1"


@pytest.fixture
def issuer() -> Iterator[LoginIssuer]:
    with LoginIssuer() as idp:
        idp.login_as = {"sub": "dave", "email": "dave@example.com", "groups": ["dev"]}
        yield idp


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_EXEC_INFO", "BROWSER")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), BROWSER=browser_command(),
               KAGIYA_TEST_BROWSER_LOG=str(tmp_path / "browser.log"), HOME=str(tmp_path / "home"))
    return env


def exec_info(version: str = V1, interactive: bool = False) -> str:
    return json.dumps({"apiVersion": version, "kind": "ExecCredential", "spec": {"interactive": interactive}})


@pytest.fixture
def run_plugin(plugin_env: dict[str, str]) -> Any:
    def run(args: Sequence[str], *, info: str | None = None, input: str = "", env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        full_env = {**plugin_env, **(env or {})}
        full_env["KUBERNETES_EXEC_INFO"] = exec_info() if info is None else info
        return subprocess.run([KAGIYA, "login", *args], env=full_env, input=input, capture_output=True, text=True,
                              timeout=timeout)

    return run


def credential(proc: subprocess.CompletedProcess[str], version: str = V1) -> dict[str, Any]:
    """The ExecCredential on stdout: exactly one JSON document and nothing else."""
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert proc.stdout.count("\n") == 1
    assert doc["apiVersion"] == version and doc["kind"] == "ExecCredential"
    return doc["status"]  # type: ignore[no-any-return]
