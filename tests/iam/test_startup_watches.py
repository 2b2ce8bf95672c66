"""`kagiya serve` starts the Kubernetes watches before it accepts connections, before any request reaches it, so the
index (and credential prefetch) is warm when the first pod asks."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from flask import request

from tests.standins.kube_apiserver import KubeApiServer
from tests.support.servers import VENV_BIN, ServerProcess, free_port


@pytest.mark.integration
def test_watches_start_without_a_request(kube: KubeApiServer, tmp_path: Path) -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    @kube.app.before_request
    def _record() -> None:
        if request.path == "/api/v1/pods":
            with lock:
                seen.add("watch" if request.args.get("watch") in ("true", "1") else "list")

    config = tmp_path / "kagiya.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "data"), "log_level": "WARNING",
        "kube": {"mode": "url", "host": kube.url, "retry_seconds": 0.1},
    }))
    port = free_port()
    with ServerProcess([str(VENV_BIN / "kagiya"), "--config", str(config), "serve", "--port", str(port)],
                       port=port, log_path=tmp_path / "serve.log") as server:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and seen != {"list", "watch"}:
            time.sleep(0.05)
        assert seen == {"list", "watch"}, server.output()
