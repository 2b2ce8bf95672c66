"""The `kagiya` command: fast help, one-line errors, safe serving."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import VENV_BIN, ServerProcess, free_port

HEAVY = ("boto3", "botocore", "google.cloud", "kubernetes", "flask", "sqlalchemy")


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from kagiya.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = main(['--help'])\n"
        "print(rc)\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {[h.split('.')[0] for h in HEAVY]!r}"
        " and (m in " + repr(HEAVY) + " or m.startswith(('google.cloud', 'kubernetes')))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "0"
    assert out[1] == "[]"


def test_version(runner: Any) -> None:
    result = runner(["version"])
    assert result.exit_code == 0 and result.stdout.startswith("kagiya ")


def test_serve_refuses_plain_http_on_public_address(runner: Any) -> None:
    result = runner(["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve plain HTTP on 0.0.0.0" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["serve", "--tls-cert", "c.pem"], "go together"), (["serve", "--client-ca", "ca.pem"], "needs --tls-cert")],
)
def test_serve_tls_flag_combinations(runner: Any, args: list[str], message: str) -> None:
    result = runner(args)
    assert result.exit_code == 2 and message in result.stderr


def test_bad_config_is_one_line_with_exit_3(runner: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nonsense_key: 1\n")
    result = runner(["--config", str(cfg), "serve"])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "nonsense_key" in result.stderr


def test_unknown_command_is_usage_error(runner: Any) -> None:
    assert runner(["frobnicate"]).exit_code == 2


@pytest.mark.integration
def test_serve_answers_healthz_and_ignores_workers(tmp_path: Path) -> None:
    """`kagiya serve` answers on its front; the old `--workers` option is accepted, ignored and said so."""
    port = free_port()
    env = {"KAGIYA_DATA_DIR": str(tmp_path / "data"), "KAGIYA_LOG_LEVEL": "WARNING"}
    with ServerProcess([str(VENV_BIN / "kagiya"), "serve", "--port", str(port), "--workers", "3"],
                       port=port, env=env, log_path=tmp_path / "serve.log") as srv:
        with urllib.request.urlopen(f"{srv.url}/healthz", timeout=10) as resp:
            assert json.load(resp) == {"status": "ok"}
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{srv.url}/nope", timeout=10)
        assert info.value.code == 404
        assert json.load(info.value)["kind"] == "Status"
        with urllib.request.urlopen(f"{srv.url}/readyz", timeout=10) as resp:
            assert json.load(resp)["checks"]["store"] == "ok"
        assert "the workers setting is ignored" in srv.output()


@pytest.mark.integration
def test_metrics_count_every_request_of_the_replica(tmp_path: Path) -> None:
    """A replica is one process: every scrape, on any connection, counts every request the replica answered."""
    import re

    port = free_port()
    env = {"KAGIYA_DATA_DIR": str(tmp_path / "data"), "KAGIYA_LOG_LEVEL": "WARNING"}
    with ServerProcess([str(VENV_BIN / "kagiya"), "serve", "--port", str(port)],
                       port=port, env=env, log_path=tmp_path / "serve.log") as srv:
        from concurrent.futures import ThreadPoolExecutor

        def fetch(path: str) -> str:
            with urllib.request.urlopen(f"{srv.url}{path}", timeout=10) as resp:
                return resp.read().decode()

        with ThreadPoolExecutor(16) as pool:  # concurrent connections, all served by the one process
            list(pool.map(fetch, ["/healthz"] * 200))
            scrapes = list(pool.map(fetch, ["/metrics"] * 16))
        pattern = re.compile(r'kagiya_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)')
        assert {float(pattern.search(text).group(1)) for text in scrapes} == {200.0}
