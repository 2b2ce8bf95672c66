"""pgp: recipient keys against a real gpg keyring, including the DEK inside kubesec's own interop vector."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import KeyUnavailable, open_key
from tests.support.gpg import GPG, INTEROP_DIR, TEST_KEY_A_FPR, GpgHome, make_gpg_home

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(gpg_home: GpgHome, secrets_settings: Any) -> Any:
    return secrets_settings(gnupg_home=str(gpg_home.path))


@pytest.fixture(scope="module")
def key_b(gpg_home: GpgHome) -> str:
    """A second key whose secret part the session keyring holds."""
    return gpg_home.generate_key("Kagiya Test B")


@pytest.fixture(scope="module")
def stranger() -> Any:
    """A separate keyring holding key A's public part only, plus its own key S (unknown to the session keyring)."""
    home = make_gpg_home(with_test_key=False)
    try:
        home.import_file(INTEROP_DIR / "test-key-A.public.asc")
        home.trust(TEST_KEY_A_FPR)
        fpr = home.generate_key("Kagiya Stranger")
        yield home, fpr
    finally:
        home.close()


def vector_trailer() -> dict[str, str]:
    lines = (INTEROP_DIR / "secret.kubesec.enc.yml").read_text().splitlines()
    return {line.split(":")[1]: line[len("# kubesec:") :] for line in lines if line.startswith("# kubesec:")}


def test_wrap_then_unwrap_returns_the_data_key(settings: Any) -> None:
    key = open_key(f"pgp:{TEST_KEY_A_FPR}", settings)
    dek = os.urandom(32)
    blob = key.wrap(dek)
    assert blob.startswith(b"-----BEGIN PGP MESSAGE-----")
    assert dek not in blob
    assert key.unwrap(blob) == dek
    assert key.uri == f"pgp:{TEST_KEY_A_FPR}" and key.id == TEST_KEY_A_FPR


def test_wrapped_key_is_signed_by_the_recipient_key_when_held(settings: Any, gpg_home: GpgHome) -> None:
    blob = open_key(f"pgp:{TEST_KEY_A_FPR}", settings).wrap(os.urandom(32))
    result = gpg_home.run("--status-fd", "1", "--decrypt", input=blob)
    validsig = [line.split() for line in result.stdout.split(b"\n") if line.startswith(b"[GNUPG:] VALIDSIG")]
    assert validsig and validsig[0][-1].decode() == TEST_KEY_A_FPR


def test_wrapping_for_an_own_key_runs_gpg_once(gpg_home: GpgHome, secrets_settings: Any, tmp_path: Path) -> None:
    """Issue 13: every gpg process costs ~20 ms of `encrypt`; signing and encrypting for a held key is one."""
    log = tmp_path / "calls"
    wrapper = tmp_path / "gpg"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {GPG} "$@"\n')
    wrapper.chmod(0o755)
    settings = secrets_settings(gnupg_home=str(gpg_home.path), gpg_binary=str(wrapper))
    dek = os.urandom(32)
    blob = open_key(f"pgp:{TEST_KEY_A_FPR}", settings).wrap(dek)
    assert len(log.read_text().splitlines()) == 1
    result = gpg_home.run("--status-fd", "1", "--decrypt", input=blob)
    assert dek in result.stdout
    assert b"[GNUPG:] VALIDSIG" in result.stdout


def test_lower_case_fingerprint_is_normalised_as_kubesec_writes_it(settings: Any) -> None:
    assert open_key(f"pgp:{TEST_KEY_A_FPR.lower()}", settings).id == TEST_KEY_A_FPR


@pytest.mark.parametrize("bad", ["89C6545204FA2D1B", "a@example.invalid", TEST_KEY_A_FPR + "00", "Z" * 40])
def test_anything_but_a_full_fingerprint_is_refused(settings: Any, bad: str) -> None:
    with pytest.raises(KeyUnavailable, match="fingerprint"):
        open_key(f"pgp:{bad}", settings)


def test_unwraps_the_data_key_of_the_kubesec_vector(settings: Any) -> None:
    """The DEK from kubesec's trailer opens the vector's MAC and values (checked here with AES-GCM directly)."""
    trailer = vector_trailer()
    _, fpr, wrapped = trailer["pgp"].split(":")
    armoured = base64.b64decode(wrapped, validate=True)
    assert armoured.startswith(b"-----BEGIN PGP MESSAGE-----")
    dek = open_key(f"pgp:{fpr}", settings).unwrap(armoured)
    assert len(dek) == 32
    # specs/kubesec-format.md, "MAC": data keys in byte order with their (base64-text) values, then
    # stringData, then the recipient ids.
    aad = b"emptypasswordc3VwZXJzZWNyZXQtcGFzc3dvcmQ=usernameYWRtaW4=" + b'config.json{"a": 1}' + fpr.encode()
    iv, tag = (base64.b64decode(part) for part in trailer["mac"].split(":")[1].split("."))
    assert AESGCM(dek).decrypt(iv, tag, aad) == b""
    line = next(
        ln for ln in (INTEROP_DIR / "secret.kubesec.enc.yml").read_text().splitlines() if "username:" in ln
    )
    ct, iv, tag = (base64.b64decode(part) for part in line.split(": ")[1].split("."))
    assert AESGCM(dek).decrypt(iv, ct + tag, b"username").rstrip(b"\0") == b"YWRtaW4="


def test_blob_for_another_held_key_is_refused(settings: Any, key_b: str) -> None:
    blob = open_key(f"pgp:{key_b}", settings).wrap(os.urandom(32))
    with pytest.raises(CryptoError, match="another key"):
        open_key(f"pgp:{TEST_KEY_A_FPR}", settings).unwrap(blob)
    assert len(open_key(f"pgp:{key_b}", settings).unwrap(blob)) == 32


def test_unsigned_data_key_is_refused(settings: Any, gpg_home: GpgHome) -> None:
    blob = gpg_home.run("--armor", "--encrypt", "-r", TEST_KEY_A_FPR, input=os.urandom(32)).stdout
    with pytest.raises(CryptoError, match="not signed"):
        open_key(f"pgp:{TEST_KEY_A_FPR}", settings).unwrap(blob)


def test_data_key_signed_by_an_unknown_key_is_refused(settings: Any, stranger: Any) -> None:
    """An attacker can encrypt a DEK of their choosing to A's public key, but cannot sign it with a key we know."""
    home, stranger_fpr = stranger
    blob = home.run("--sign", "--armor", "--encrypt", "-u", stranger_fpr, "-r", TEST_KEY_A_FPR,
                    input=os.urandom(32)).stdout
    with pytest.raises(CryptoError, match="public key is not in the keyring"):
        open_key(f"pgp:{TEST_KEY_A_FPR}", settings).unwrap(blob)


def test_without_the_secret_key_unwrap_says_so(settings: Any, stranger: Any, secrets_settings: Any) -> None:
    home, _ = stranger
    blob = open_key(f"pgp:{TEST_KEY_A_FPR}", settings).wrap(os.urandom(32))
    with pytest.raises(KeyUnavailable, match="no secret key"):
        open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gnupg_home=str(home.path))).unwrap(blob)


def test_empty_keyring_says_no_secret_key(settings: Any, secrets_settings: Any) -> None:
    blob = open_key(f"pgp:{TEST_KEY_A_FPR}", settings).wrap(os.urandom(32))
    empty = make_gpg_home(with_test_key=False)
    try:
        with pytest.raises(KeyUnavailable, match="no secret key"):
            open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gnupg_home=str(empty.path))).unwrap(blob)
    finally:
        empty.close()


def test_public_only_recipient_is_signed_by_the_default_secret_key(
    stranger: Any, secrets_settings: Any, settings: Any
) -> None:
    """As kubesec: encrypting to a colleague's key signs with your own (gpg's default) key."""
    home, stranger_fpr = stranger
    blob = open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gnupg_home=str(home.path))).wrap(os.urandom(32))
    # A holds the secret key but not the stranger's public key: the error names the signer.
    with pytest.raises(CryptoError, match=f"signed by {stranger_fpr[-16:]}"):
        open_key(f"pgp:{TEST_KEY_A_FPR}", settings).unwrap(blob)


def test_untrusted_recipient_is_refused_with_a_fix(tmp_path: Path, secrets_settings: Any) -> None:
    home = make_gpg_home(with_test_key=False)
    try:
        home.import_file(INTEROP_DIR / "test-key-A.public.asc")
        home.generate_key("Own Key")
        with pytest.raises(KeyUnavailable, match="lsign-key"):
            open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gnupg_home=str(home.path))).wrap(os.urandom(32))
        with pytest.raises(KeyUnavailable, match="not in the GnuPG keyring"):
            open_key("pgp:" + "AB" * 20, secrets_settings(gnupg_home=str(home.path))).wrap(os.urandom(32))
    finally:
        home.close()


def test_no_secret_key_to_sign_with(secrets_settings: Any) -> None:
    home = make_gpg_home(with_test_key=False)
    try:
        home.import_file(INTEROP_DIR / "test-key-A.public.asc")
        home.trust(TEST_KEY_A_FPR)
        with pytest.raises(KeyUnavailable, match="secret key to sign"):
            open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gnupg_home=str(home.path))).wrap(os.urandom(32))
    finally:
        home.close()


@pytest.mark.parametrize(
    "blob", [b"", b"not a pgp message", b"-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n",
             b"x" * (64 * 1024)]  # the largest blob accepted: all of it goes through gpg's stdin pipe
)
def test_garbage_is_a_crypto_error(settings: Any, blob: bytes) -> None:
    with pytest.raises(CryptoError):
        open_key(f"pgp:{TEST_KEY_A_FPR}", settings).unwrap(blob)


def test_passphrase_protected_key_without_an_agent_passphrase_says_so(secrets_settings: Any) -> None:
    home = make_gpg_home(with_test_key=False)
    try:
        (home.path / "gpg-agent.conf").write_text("pinentry-program /bin/false\ns2k-count 65536\n")  # fast, no prompt
        fpr = home.generate_key("Protected", passphrase="correct horse")
        blob = home.run("--pinentry-mode", "loopback", "--passphrase", "correct horse",
                        "--sign", "--armor", "--encrypt", "-u", fpr, "-r", fpr, input=os.urandom(32)).stdout
        subprocess.run(["gpgconf", "--homedir", str(home.path), "--reload", "gpg-agent"], check=True)
        key = open_key(f"pgp:{fpr}", secrets_settings(gnupg_home=str(home.path)))
        with pytest.raises(KeyUnavailable, match="passphrase-protected"):
            key.unwrap(blob)
        with pytest.raises(KeyUnavailable, match="passphrase-protected"):
            key.wrap(os.urandom(32))
    finally:
        home.close()


def test_missing_gpg_binary(secrets_settings: Any, tmp_path: Path) -> None:
    key = open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gpg_binary=str(tmp_path / "no-gpg")))
    with pytest.raises(KeyUnavailable, match="not found"):
        key.unwrap(b"x")


def test_hung_gpg_times_out(secrets_settings: Any, tmp_path: Path) -> None:
    script = tmp_path / "slow-gpg"
    script.write_text("#!/bin/sh\nsleep 30 &\nsleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    key = open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gpg_binary=str(script), kms_timeout_seconds=1.0))
    started = time.monotonic()
    with pytest.raises(KeyUnavailable, match="within 1s"):
        key.unwrap(b"x")
    assert time.monotonic() - started < 3


def test_signature_by_a_known_then_revoked_key(secrets_settings: Any) -> None:
    """Signed by a colleague whose public key we hold: accepted (as kubesec); once they revoke it: refused."""
    colleague = make_gpg_home(with_test_key=False)
    reader = make_gpg_home()
    try:
        colleague.import_file(INTEROP_DIR / "test-key-A.public.asc")
        colleague.trust(TEST_KEY_A_FPR)
        signer = colleague.generate_key("Colleague")
        blob = colleague.run("--sign", "--armor", "--encrypt", "-u", signer, "-r", TEST_KEY_A_FPR,
                             input=b"d" * 32).stdout
        reader.import_bytes(colleague.export_public(signer))
        key = open_key(f"pgp:{TEST_KEY_A_FPR}", secrets_settings(gnupg_home=str(reader.path)))
        assert key.unwrap(blob) == b"d" * 32
        # gpg writes a revocation certificate for every new key; its first armour line is guarded with ':'.
        certificate = (colleague.path / "openpgp-revocs.d" / f"{signer}.rev").read_text()
        reader.import_bytes(certificate.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----",
                                                "-----BEGIN PGP PUBLIC KEY BLOCK-----").encode())
        with pytest.raises(CryptoError, match="revoked"):
            key.unwrap(blob)
    finally:
        colleague.close()
        reader.close()
