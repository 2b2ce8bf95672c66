"""Fixtures for the secrets suite: a private local keyring, the real-gpg keyring with kubesec test key A,
the interop vectors, and a helper that runs `kagiya secrets …` in-process with that environment."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.gpg import INTEROP_DIR, TEST_KEY_A_FPR, gpg_home  # noqa: F401 - session fixture

PGP_A = f"pgp:{TEST_KEY_A_FPR}"


@pytest.fixture
def keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KAGIYA_KEYRING pointing at a fresh (not yet existing) keyring file in a private dir."""
    path = tmp_path / "kr" / "keyring"
    monkeypatch.setenv("KAGIYA_KEYRING", str(path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return path


@pytest.fixture
def pgp_env(gpg_home: Any, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    monkeypatch.setenv("KAGIYA_SECRETS_GNUPG_HOME", str(gpg_home.path))
    return gpg_home


@pytest.fixture
def sset(keyring: Path) -> Any:
    """SecretsSettings for direct (non-CLI) calls: the test keyring, no gpg."""
    from kagiya.secrets.settings import SecretsSettings

    def make(**fields: Any) -> SecretsSettings:
        fields.setdefault("keyring", str(keyring))
        fields.setdefault("kms_timeout_seconds", 5.0)
        return SecretsSettings(**fields)

    return make


@pytest.fixture
def interop(tmp_path: Path) -> Path:
    """Writable copies of the kubesec vectors in tmp_path/interop."""
    dest = tmp_path / "interop"
    dest.mkdir()
    for name in ("secret.yml", "secret.kubesec.enc.yml"):
        shutil.copyfile(INTEROP_DIR / name, dest / name)
    return dest


@pytest.fixture
def ksec(runner: Any, keyring: Path) -> Any:
    """`ksec("encrypt", "f.yaml", ...)` -> Result of `kagiya secrets …` run in-process."""

    def run(*args: str, input: str | None = None) -> Any:
        return runner(["secrets", *args], input=input)

    return run
