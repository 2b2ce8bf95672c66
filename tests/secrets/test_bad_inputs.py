"""Must show: every bad input gives a one-line error, a non-zero exit, and leaves the input file unchanged."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PLAIN = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: ns\ndata:\n  password: cGFzc3dvcmQ=\n"
         "stringData:\n  user: admin\n")


def _flip(text: str, pattern: str) -> str:
    """Change one base64 character of the first match of `pattern` (still valid base64)."""
    m = re.search(pattern, text, re.MULTILINE)
    assert m
    i = m.start(1)
    return text[:i] + ("B" if text[i] != "B" else "C") + text[i + 1:]


def _other_key(keyring: Path) -> None:
    keyring.write_text("default " + base64.b64encode(b"\x01" * 32).decode() + "\n")


# name -> (how to damage the encrypted file, command, expected message fragment)
CASES: dict[str, tuple[Callable[[str], str], str, str]] = {
    "bad base64 in a value": (lambda t: re.sub(r"(  password: \S{4})(\S{4})", r"\1$$$$", t), "decrypt",
                              "not valid base64"),
    "truncated trailer": (lambda t: t[: t.index("# kubesec:mac:")], "decrypt", "(truncated file?)"),
    "trailer cut mid-line": (lambda t: t[: t.index("# kagiya:local:") + 20], "decrypt", "truncated local"),
    "unknown recipient type": (lambda t: t.replace("# kagiya:local:", "# kagiya:vault:"), "decrypt",
                               "unknown recipient type 'vault'"),
    "tampered value": (lambda t: _flip(t, r"^  password: (\S)"), "decrypt", "'password' failed authentication"),
    "tampered key name": (lambda t: t.replace("  password:", "  passw0rd:"), "decrypt", "'passw0rd'"),
    "tampered recipient line": (lambda t: _flip(t, r"^# kagiya:local:default:(\S)"), "decrypt",
                                "local:default"),
    "renamed recipient": (lambda t: t.replace("# kagiya:local:default:", "# kagiya:local:other:"), "decrypt",
                          "local:other"),
    "tampered MAC": (lambda t: _flip(t, r"^# kubesec:mac:(\S)"), "decrypt", "MAC check failed"),
    "non-string value": (lambda t: PLAIN.replace("user: admin", "user: 3"), "encrypt",
                         "stringData.user must be a string"),
    "plain value not base64": (lambda t: PLAIN.replace("cGFzc3dvcmQ=", "pass word"), "encrypt",
                               "data.password is not valid base64"),
    "not yaml": (lambda t: "kind: Secret\n  data: [unclosed\n", "encrypt", "not a valid YAML/JSON manifest"),
    "not utf-8": (lambda t: "\udcff", "encrypt", "not UTF-8"),
    "plaintext given to decrypt": (lambda t: PLAIN, "decrypt", "not encrypted"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_error_file_unchanged(case: str, ksec: Any, keyring: Path, tmp_path: Path) -> None:
    damage, command, fragment = CASES[case]
    assert ksec("keygen", "default").exit_code == 0
    assert ksec("keygen", "other").exit_code == 0
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    bad = damage(path.read_text())
    path.write_bytes(bad.encode("utf-8", "surrogateescape"))
    before = path.read_bytes()
    result = ksec(command, "-i", str(path))
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kagiya: error: "), result.stderr
    assert fragment in result.stderr, result.stderr
    assert result.stdout == ""
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s.yaml")] == []  # no temp left behind


def test_wrong_key_and_recipients_you_do_not_hold(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    ksec("keygen", "ops")
    ksec("keygen", "default")
    assert ksec("encrypt", "-i", "-k", "local:default,local:ops", str(path)).exit_code == 0
    before = path.read_bytes()
    _other_key(keyring)  # a different `default` key, and no `ops`
    result = ksec("decrypt", "-i", str(path))
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert "encrypted for local:default, local:ops" in result.stderr
    assert "cannot unwrap" in result.stderr and "not in keyring" in result.stderr
    assert path.read_bytes() == before


def test_oversize_file_is_refused(ksec: Any, keyring: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("KAGIYA_SECRETS_MAX_FILE_BYTES", "64")
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    result = ksec("encrypt", "-i", str(path))
    assert result.exit_code != 0 and "larger than 64 bytes" in result.stderr and result.stderr.count("\n") == 1
    assert path.read_text() == PLAIN


def test_unknown_key_type_on_encrypt(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    result = ksec("encrypt", "-i", "-k", "vault:x", str(path))
    assert result.exit_code != 0 and "unknown key type 'vault'" in result.stderr
    assert path.read_text() == PLAIN
