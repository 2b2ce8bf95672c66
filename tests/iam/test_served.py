"""`kagiya serve` (one process) against the apiserver stand-in: the watches start before serving, /readyz
turns ready after the first sync, and the CLI explains a pod created after start-up."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.iam.conftest import BASE_ARN, arn
from tests.standins.kube_apiserver import KubeApiServer
from tests.support.servers import VENV_BIN, ServerProcess, free_port


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.integration
def test_served_replica_watches_and_explains(kube: KubeApiServer, token_file: Path, tmp_path: Path,
                                             runner: Any) -> None:
    kube.add_namespace("legacy", annotations={"iam.amazonaws.com/permitted": "^app-.*$"})
    config = tmp_path / "kagiya.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "data"), "log_level": "WARNING",
        "authn": {"token_file": str(token_file)},
        "iam": {"base_role_arn": BASE_ARN, "pod_role_annotation": True},
        "kube": {"mode": "url", "host": kube.url, "retry_seconds": 0.1},
    }))
    port = free_port()
    with ServerProcess([str(VENV_BIN / "kagiya"), "--config", str(config), "serve", "--port", str(port)],
                       port=port, log_path=tmp_path / "serve.log") as server:
        deadline = time.monotonic() + 30
        while not ready(server.url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready(server.url), server.output()
        kube.add_pod("legacy", "late", ip="10.9.0.1", annotations={"iam.amazonaws.com/role": "app-late"})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = runner(["iam", "--server", server.url, "explain", "-n", "legacy", "--pod", "late"],
                         env={"KAGIYA_TOKEN": "dev-token-0002"})
            if out.exit_code == 0:
                break
            time.sleep(0.1)
        assert out.exit_code == 0, out.stderr + server.output()
        assert f"aws: {arn('app-late')} from pod-annotation:iam.amazonaws.com/role" in out.stdout
