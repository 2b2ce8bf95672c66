"""`decrypt --for-diff` (git textconv) never fails: a file it cannot even read as text (not UTF-8, larger than
secrets.max_file_bytes) is printed byte for byte, with exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

KAGIYA = str(Path(sys.executable).parent / "kagiya")
PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


def textconv(path: Path, keyring: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([KAGIYA, "secrets", "decrypt", "--for-diff", str(path)], capture_output=True, timeout=60,
                          env={**os.environ, "KAGIYA_KEYRING": str(keyring), **env})


def test_non_utf8_file_is_printed_as_is(tmp_path: Path, keyring: Path) -> None:
    raw = b"kind: Secret\nstringData:\n  k: \xff\xfe latin-1 \xe9\n"
    f = tmp_path / "bin.yaml"
    f.write_bytes(raw)
    proc = textconv(f, keyring)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw


def test_oversize_encrypted_file_is_printed_as_is(ksec: Any, tmp_path: Path, keyring: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(f)).exit_code == 0
    raw = f.read_bytes()
    proc = textconv(f, keyring, KAGIYA_SECRETS_MAX_FILE_BYTES="100")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw
    assert b"shown encrypted" in proc.stderr and b"larger than 100 bytes" in proc.stderr
    assert textconv(f, keyring).stdout == PLAIN.encode()  # within the limit it decrypts


def test_missing_file_does_not_fail(tmp_path: Path, keyring: Path) -> None:
    proc = textconv(tmp_path / "gone.yaml", keyring)
    assert proc.returncode == 0
    assert proc.stdout == b""
