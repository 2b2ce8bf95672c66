"""A real GnuPG keyring for tests: a short temp GNUPGHOME with the kubesec test key imported and trusted.

Use the `gpg_home` session fixture (import it into a conftest: `from tests.support.gpg import gpg_home`), or
`make_gpg_home()` for an extra, separate keyring (always `close()` it). `GpgHome.generate_key()` makes throwaway
keys at test time: an ed25519 signing primary plus a cv25519 encryption subkey, because `--quick-gen-key … default
never` alone gives no encryption subkey (specs/test-infrastructure.md, GnuPG row).

GNUPGHOME lives directly under /tmp with a short name: gpg-agent puts its sockets there, and a Unix socket path
longer than ~107 bytes makes gpg fail with a confusing "No agent running".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
#: The kubesec interoperability vectors (test key A, secret.yml, secret.kubesec.enc.yml).
INTEROP_DIR = next(
    (p for p in (_REPO / "tests" / "data" / "kubesec", _REPO.parent / "shared" / "interop" / "kubesec") if p.is_dir()),
    _REPO.parent / "shared" / "interop" / "kubesec",
)
#: Fingerprint of `test-key-A` (primary key [SC] plus an [E] subkey, no passphrase).
TEST_KEY_A_FPR = "7E03DC8CF9567D204644FA6589C6545204FA2D1B"
GPG = shutil.which("gpg") or "gpg"


@dataclass
class GpgHome:
    path: Path

    @property
    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.path)}

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [GPG, "--homedir", str(self.path), "--batch", "--no-tty", *args],
            input=input,
            capture_output=True,
            timeout=60,
            check=check,
        )

    def import_file(self, path: Path | str) -> None:
        self.run("--import", str(path))

    def import_bytes(self, armoured: bytes) -> None:
        self.run("--import", input=armoured)

    def trust(self, fingerprint: str) -> None:
        """Ultimate owner trust, as a user does for their own or a verified colleague's key."""
        self.run("--import-ownertrust", input=f"{fingerprint}:6:\n".encode())

    def export_public(self, fingerprint: str) -> bytes:
        return self.run("--armor", "--export", fingerprint).stdout

    def delete_secret_key(self, fingerprint: str) -> None:
        self.run("--yes", "--delete-secret-keys", fingerprint)

    def delete_key(self, fingerprint: str) -> None:
        self.run("--yes", "--delete-secret-and-public-key", fingerprint)

    def generate_key(self, name: str = "Kagiya Test", *, encryption_subkey: bool = True, passphrase: str = "") -> str:
        """A new key (ed25519 sign + cv25519 encrypt), passphrase-less by default; returns its fingerprint."""
        result = self.run(
            "--pinentry-mode", "loopback", "--passphrase", passphrase, "--status-fd", "1",
            "--quick-gen-key", f"{name} <{name.lower().replace(' ', '.')}@example.invalid>", "ed25519", "sign", "never",
        )
        fingerprint = next(
            line.split()[3] for line in result.stdout.decode().splitlines() if line.startswith("[GNUPG:] KEY_CREATED")
        )
        if encryption_subkey:
            self.run(
                "--pinentry-mode", "loopback", "--passphrase", passphrase,
                "--quick-add-key", fingerprint, "cv25519", "encr", "never",
            )
        return fingerprint

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.path), "--kill", "all"], capture_output=True, timeout=30, check=False
        )
        shutil.rmtree(self.path, ignore_errors=True)


def make_gpg_home(*, with_test_key: bool = True) -> GpgHome:
    """A fresh keyring; with test key A (secret part) imported and trusted unless `with_test_key=False`."""
    home = GpgHome(Path(tempfile.mkdtemp(prefix="kg", dir="/tmp")))
    os.chmod(home.path, 0o700)
    try:
        if with_test_key:
            home.import_file(INTEROP_DIR / "test-key-A.private.asc")
            home.trust(TEST_KEY_A_FPR)
    except BaseException:
        home.close()
        raise
    return home


@pytest.fixture(scope="session")
def gpg_home() -> Iterator[GpgHome]:
    """The session's keyring with test key A; tests pass `gnupg_home=str(gpg_home.path)` in secrets settings."""
    home = make_gpg_home()
    try:
        yield home
    finally:
        home.close()
