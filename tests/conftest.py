"""Shared test harness: app/client/runner fixtures on a temp data dir, servers on free loopback ports,
and a guard that refuses any network connection that is not to loopback.

Capability suites put their own fixtures in `tests/<capability>/conftest.py`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Never reach a cloud metadata address or real credentials from tests (specs/test-infrastructure.md).
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in [v for v in os.environ if v.startswith("KAGIYA_")]:
    del os.environ[_var]

from tests.support.apps import kagiya_app  # noqa: E402
from tests.support.servers import ServerProcess, free_port, wait_for_port  # noqa: E402

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host in ("localhost",):
            return
        raise OSError(f"tests may only connect to loopback, not {host!r}") from None
    if not ip.is_loopback:
        raise OSError(f"tests may only connect to loopback, not {host}")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    _check_address(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(data_dir: Path) -> Any:
    """Build settings for a test: `make_settings({"authn": {"token_file": ...}})`."""
    from kagiya.config import load_settings

    def make(overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Any:
        base: dict[str, Any] = {"data_dir": str(data_dir), "log_level": "WARNING"}
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key].update(value)
            else:
                base[key] = value
        return load_settings(env=env or {}, overrides=base)

    return make


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """A static token file with an admin, a developer and an approver (tokens are made-up test values)."""
    path = tmp_path / "tokens.csv"
    path.write_text(
        'admin-token-0001,alice,uid-alice,"kagiya:admins,platform"\n'
        'dev-token-0002,bob,uid-bob,"team-a"\n'
        'approver-token-0003,carol,uid-carol,"approvers,team-a"\n'
    )
    return path


@pytest.fixture
def settings(make_settings: Any, token_file: Path) -> Any:
    return make_settings({"authn": {"token_file": str(token_file)}})


@pytest.fixture
def app(settings: Any) -> Iterator[Any]:
    with kagiya_app(settings) as application:
        yield application


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def runner() -> Any:
    """Invoke the real CLI entry (`kagiya.cli.main`) in-process; returns (exit_code, stdout, stderr)."""
    from tests.support.cli import CliRunner

    return CliRunner()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


__all__ = ["ServerProcess", "bearer", "free_port", "wait_for_port"]
