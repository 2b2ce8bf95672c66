"""age recipients (`age:age1…`) interoperate with the age ecosystem: a data key we wrap opens with the `age` CLI
and an identity made by `age-keygen`; what `age` encrypts for that identity opens through our key; whole files
round-trip through `kagiya secrets encrypt -k age:…` / `decrypt`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import KeyUnavailable, open_key
from kagiya.secrets.settings import SecretsSettings
from tests.secrets_sops.conftest import AgeIdentity, make_age_identity

SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: hunter2
"""


def test_age_cli_opens_what_we_wrap(age_id: AgeIdentity, tmp_path: Path) -> None:
    dek = os.urandom(32)
    blob = open_key(f"age:{age_id.recipient}", SecretsSettings()).wrap(dek)
    blob_file = tmp_path / "dek.age"
    blob_file.write_bytes(blob)
    out = subprocess.run(["age", "-d", "-i", str(age_id.key_file), str(blob_file)], capture_output=True,
                         check=True, timeout=30).stdout
    assert out == dek


def test_we_open_what_the_age_cli_wraps(age_id: AgeIdentity) -> None:
    dek = os.urandom(32)
    blob = subprocess.run(["age", "-r", age_id.recipient], input=dek, capture_output=True, check=True,
                          timeout=30).stdout
    assert open_key(f"age:{age_id.recipient}", SecretsSettings()).unwrap(blob) == dek


def test_sops_variables_are_read(age_id: AgeIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    key = open_key(f"age:{age_id.recipient}", SecretsSettings())
    blob = key.wrap(b"k" * 32)
    monkeypatch.delenv("KAGIYA_AGE_KEY_FILE")
    with pytest.raises(KeyUnavailable, match="no age identity"):
        key.unwrap(blob)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(age_id.key_file))
    assert key.unwrap(blob) == b"k" * 32
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    monkeypatch.setenv("SOPS_AGE_KEY", age_id.key_file.read_text())
    assert key.unwrap(blob) == b"k" * 32


def test_usual_sops_path_is_read(age_id: AgeIdentity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGIYA_AGE_KEY_FILE")
    usual = tmp_path / "xdg" / "sops" / "age" / "keys.txt"
    usual.parent.mkdir(parents=True)
    usual.write_bytes(age_id.key_file.read_bytes())
    usual.chmod(0o600)
    key = open_key(f"age:{age_id.recipient}", SecretsSettings())
    assert key.unwrap(key.wrap(b"u" * 32)) == b"u" * 32


def test_key_file_readable_by_others_is_refused(age_id: AgeIdentity) -> None:
    key = open_key(f"age:{age_id.recipient}", SecretsSettings())
    blob = key.wrap(b"k" * 32)
    age_id.key_file.chmod(0o644)
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        key.unwrap(blob)


def test_blob_for_another_identity_is_a_crypto_error(age_id: AgeIdentity, tmp_path: Path) -> None:
    other = make_age_identity(tmp_path / "other")
    blob = open_key(f"age:{other.recipient}", SecretsSettings()).wrap(b"k" * 32)
    with pytest.raises(CryptoError):
        open_key(f"age:{age_id.recipient}", SecretsSettings()).unwrap(blob)


def test_bad_recipient_is_refused() -> None:
    with pytest.raises(KeyUnavailable, match="age1"):
        open_key("age:age1notbech32", SecretsSettings()).wrap(b"k" * 32)
    with pytest.raises(KeyUnavailable):
        open_key("age:ssh-ed25519 AAAA", SecretsSettings())


def test_file_round_trip_through_the_cli(age_id: AgeIdentity, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secret.yaml"
    path.write_text(SECRET)
    res = cli(["secrets", "encrypt", "-i", "-k", f"age:{age_id.recipient}", str(path)])
    assert res.exit_code == 0, res.stderr
    encrypted = path.read_text()
    assert "hunter2" not in encrypted and f"# kagiya:age:{age_id.recipient}:" in encrypted
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert "password: hunter2" in res.stdout
    age_id.key_file.write_text("")
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code != 0 and "hunter2" not in res.stdout and f"age:{age_id.recipient}" in res.stderr
