"""File-level round trips through `kagiya secrets encrypt/decrypt` with each real recipient backend.

Settings reach the CLI the way a user sets them, through the environment (`KAGIYA_SECRETS_GCP_KMS_ENDPOINT`,
`KAGIYA_SECRETS_AWS_KMS_ENDPOINT`, `KAGIYA_SECRETS_GNUPG_HOME`, `KAGIYA_SECRETS_KMS_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.secrets_keys.conftest import GCP_KEY
from tests.support.gpg import TEST_KEY_A_FPR, make_gpg_home
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

PLAIN = """\
# team-a database credentials
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: team-a
type: Opaque
data:
  username: YWRtaW4=
  password: c3VwZXJzZWNyZXQ=
stringData:
  dsn: "postgres://db:5432/app?sslmode=require"
"""
PGP_A = f"pgp:{TEST_KEY_A_FPR}"


@pytest.fixture
def env(tmp_path: Path, gpg_home: Any, cloudkms: Any, moto_server: Any) -> dict[str, str]:
    return {
        "KAGIYA_KEYRING": str(tmp_path / "keyring"),
        "KAGIYA_SECRETS_GNUPG_HOME": str(gpg_home.path),
        "KAGIYA_SECRETS_GCP_KMS_ENDPOINT": cloudkms.url,
        "KAGIYA_SECRETS_AWS_KMS_ENDPOINT": moto_server.url,
        "KAGIYA_SECRETS_KMS_TIMEOUT_SECONDS": "2",
    }


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "secret.yaml"
    path.write_text(PLAIN)
    return path


def trailer(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# kubesec:")]


def uri_of(request: pytest.FixtureRequest, scheme: str) -> str:
    if scheme == "pgp":
        return PGP_A
    if scheme == "gcp":
        return f"gcp:{GCP_KEY}"
    return f"aws:{request.getfixturevalue('aws_keys')['key']}"


@pytest.mark.parametrize("scheme", ["pgp", "gcp", "aws"])
def test_encrypt_then_decrypt_through_the_cli(
    runner: Any, env: dict[str, str], plain: Path, tmp_path: Path, scheme: str, request: pytest.FixtureRequest
) -> None:
    uri = uri_of(request, scheme)
    enc = tmp_path / "secret.enc.yaml"
    result = runner(["secrets", "encrypt", "-k", uri, "-o", str(enc), str(plain)], env=env)
    assert result.exit_code == 0, result.stderr
    text = enc.read_text()
    assert "c3VwZXJzZWNyZXQ=" not in text and "postgres://" not in text
    lines = trailer(text)
    assert lines[0] in ("# kubesec:v:4",) and lines[1].startswith(f"# kubesec:{uri}:") and lines[2].startswith(
        "# kubesec:mac:"
    )
    assert text.startswith("# team-a database credentials\n")  # layout kept around the values
    decrypted = runner(["secrets", "decrypt", str(enc)], env=env)
    assert decrypted.exit_code == 0, decrypted.stderr
    assert decrypted.stdout == PLAIN  # byte-identical: only value lines and the trailer ever change
    # Re-encrypting the unchanged file does not call for a new wrap: the file stays byte-identical.
    again = runner(["secrets", "encrypt", "-i", str(enc)], env=env)
    assert again.exit_code == 0, again.stderr
    assert enc.read_text() == text


def kubesec_reader_unwrap(request: pytest.FixtureRequest, scheme: str, key_id: str, wrapped: bytes) -> bytes:
    """Unwrap a trailer's DEK the way kubesec does, with no kagiya code: gpg --decrypt (VALIDSIG required),
    Cloud KMS decrypt, or KMS Decrypt with no encryption context."""
    if scheme == "pgp":
        gpg = request.getfixturevalue("gpg_home")
        done = gpg.run("--status-fd", "2", "--decrypt", input=wrapped)
        assert b"[GNUPG:] VALIDSIG" in done.stderr
        return bytes(done.stdout)
    if scheme == "gcp":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import kms

        client = kms.KeyManagementServiceClient(
            transport="rest", client_options={"api_endpoint": request.getfixturevalue("cloudkms").url},
            credentials=AnonymousCredentials(),
        )
        return bytes(client.decrypt(request={"name": key_id, "ciphertext": wrapped}, retry=None).plaintext)
    moto = request.getfixturevalue("moto_server")
    return bytes(moto.client("kms", key_id.split(":")[3]).decrypt(CiphertextBlob=wrapped)["Plaintext"])


@pytest.mark.parametrize("scheme", ["pgp", "gcp", "aws"])
def test_a_kubesec_reader_can_open_what_we_write(
    runner: Any, env: dict[str, str], plain: Path, tmp_path: Path, scheme: str, request: pytest.FixtureRequest
) -> None:
    """specs/kubesec-format.md: base64(wrapped DEK) in the trailer, and the kubesec MAC under that DEK."""
    uri = uri_of(request, scheme)
    enc = tmp_path / "secret.enc.yaml"
    assert runner(["secrets", "encrypt", "-k", uri, "-o", str(enc), str(plain)], env=env).exit_code == 0
    version, recipient, mac = trailer(enc.read_text())
    key_id, wrapped = recipient[len(f"# kubesec:{scheme}:") :].rsplit(":", 1)
    dek = kubesec_reader_unwrap(request, scheme, key_id, base64.b64decode(wrapped, validate=True))
    aad = (b"passwordc3VwZXJzZWNyZXQ=usernameYWRtaW4=" + b"dsnpostgres://db:5432/app?sslmode=require"
           + key_id.encode())
    iv, tag = (base64.b64decode(part) for part in mac[len("# kubesec:mac:") :].split("."))
    assert AESGCM(dek).decrypt(iv, tag, aad) == b""


@pytest.fixture
def two_recipient_file(
    runner: Any, env: dict[str, str], plain: Path, tmp_path: Path, aws_keys: dict[str, str]
) -> tuple[Path, str]:
    aws = f"aws:{aws_keys['key']}"
    enc = tmp_path / "two.enc.yaml"
    result = runner(["secrets", "encrypt", "-k", aws, "-k", PGP_A, "-o", str(enc), str(plain)], env=env)
    assert result.exit_code == 0, result.stderr
    return enc, aws


def test_two_recipient_file_lists_pgp_before_aws(two_recipient_file: tuple[Path, str]) -> None:
    enc, aws = two_recipient_file
    lines = trailer(enc.read_text())
    assert [line.rsplit(":", 1)[0] for line in lines[1:3]] == [f"# kubesec:{PGP_A}", f"# kubesec:{aws}"]


def test_two_recipient_file_opens_with_aws_alone(
    runner: Any, env: dict[str, str], two_recipient_file: tuple[Path, str]
) -> None:
    """A reader whose keyring lacks key A (a CI job with KMS rights only) opens it through AWS KMS."""
    enc, _ = two_recipient_file
    empty = make_gpg_home(with_test_key=False)
    try:
        result = runner(["secrets", "decrypt", str(enc)], env={**env, "KAGIYA_SECRETS_GNUPG_HOME": str(empty.path)})
    finally:
        empty.close()
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout) == yaml.safe_load(PLAIN)


def test_two_recipient_file_opens_with_pgp_alone(
    runner: Any, env: dict[str, str], two_recipient_file: tuple[Path, str]
) -> None:
    """A developer with no AWS access (KMS unreachable) opens it with their GnuPG key."""
    enc, _ = two_recipient_file
    offline = {**env, "KAGIYA_SECRETS_AWS_KMS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    result = runner(["secrets", "decrypt", str(enc)], env=offline)
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout) == yaml.safe_load(PLAIN)


def test_no_usable_recipient_is_one_line_and_leaves_the_file(
    runner: Any, env: dict[str, str], two_recipient_file: tuple[Path, str]
) -> None:
    enc, aws = two_recipient_file
    before = enc.read_bytes()
    empty = make_gpg_home(with_test_key=False)
    try:
        started = time.monotonic()
        result = runner(
            ["secrets", "decrypt", "-i", str(enc)],
            env={**env, "KAGIYA_SECRETS_GNUPG_HOME": str(empty.path),
                 "KAGIYA_SECRETS_AWS_KMS_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
        )
        elapsed = time.monotonic() - started
    finally:
        empty.close()
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert TEST_KEY_A_FPR in result.stderr and aws in result.stderr  # names the recipients it has
    assert "no secret key" in result.stderr and "unreachable" in result.stderr  # and why each failed
    assert enc.read_bytes() == before
    assert elapsed < 5


def test_cloud_kms_down_during_encrypt_fails_closed(
    runner: Any, env: dict[str, str], plain: Path, tmp_path: Path, cloudkms: Any
) -> None:
    cloudkms.fail_status = 503
    out = tmp_path / "out.yaml"
    result = runner(["secrets", "encrypt", "-k", f"gcp:{GCP_KEY}", "-o", str(out), str(plain)], env=env)
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "Cloud KMS" in result.stderr
    assert not out.exists() and plain.read_text() == PLAIN


def test_real_process_with_settings_from_the_environment(env: dict[str, str], plain: Path, tmp_path: Path) -> None:
    """The installed entry point, as pre-commit or a shell runs it (not in-process)."""
    enc = tmp_path / "gcp.enc.yaml"
    proc_env = {**os.environ, **env}
    cmd = [sys.executable, "-m", "kagiya.cli", "secrets"]
    done = subprocess.run([*cmd, "encrypt", "-k", f"gcp:{GCP_KEY}", "-o", str(enc), str(plain)],
                          env=proc_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cmd, "decrypt", str(enc)], env=proc_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == yaml.safe_load(PLAIN)
