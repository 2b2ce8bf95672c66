"""`introspect --verify` tries every recipient, not just the first that works: a damaged wrapped key for a
second recipient is reported (exit 7) while the file still decrypts through the first."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


def _two_recipient_file(ksec: Any, tmp_path: Path) -> Path:
    for name in ("first", "second"):
        assert ksec("keygen", name).exit_code == 0
    f = tmp_path / "s.yaml"
    f.write_text(PLAIN)
    assert ksec("encrypt", "-k", "local:first,local:second", "-i", str(f)).exit_code == 0
    return f


def _corrupt_line(f: Path, uri: str) -> None:
    prefix = f"# {'kubesec' if uri.startswith(('pgp:', 'gcp:', 'aws:')) else 'kagiya'}:{uri}:"
    lines = f.read_text().split("\n")
    i = next(n for n, ln in enumerate(lines) if ln.startswith(prefix))
    blob = bytearray(base64.b64decode(lines[i][len(prefix):]))
    blob[20] ^= 0x01
    lines[i] = prefix + base64.b64encode(bytes(blob)).decode()
    f.write_text("\n".join(lines))


def test_verify_reports_each_recipient(ksec: Any, tmp_path: Path) -> None:
    f = _two_recipient_file(ksec, tmp_path)
    result = ksec("introspect", "--verify", str(f))
    assert result.exit_code == 0, result.stderr
    assert "  local:first: ok\n  local:second: ok\n" in result.stdout


def test_damaged_second_recipient_is_reported(ksec: Any, tmp_path: Path) -> None:
    f = _two_recipient_file(ksec, tmp_path)
    _corrupt_line(f, "local:second")
    assert ksec("decrypt", str(f)).exit_code == 0  # the first recipient still opens it: nothing else notices
    plain = ksec("introspect", str(f))
    assert plain.exit_code == 0 and ": damaged" not in plain.stdout
    result = ksec("introspect", "--verify", str(f))
    assert result.exit_code == 7
    assert "  local:first: ok\n" in result.stdout
    assert "  local:second: damaged (local:second cannot unwrap the data key" in result.stdout
    assert f"kagiya secrets rotate {f}" in result.stderr
    assert ksec("rotate", str(f)).exit_code == 0
    assert ksec("introspect", "--verify", str(f)).exit_code == 0


def test_recipient_not_held_is_unusable_not_damaged(ksec: Any, tmp_path: Path, keyring: Path) -> None:
    f = _two_recipient_file(ksec, tmp_path)
    keyring.write_text("".join(ln + "\n" for ln in keyring.read_text().splitlines() if not ln.startswith("second ")))
    result = ksec("introspect", "--verify", str(f))
    assert result.exit_code == 0, result.stderr
    assert "  local:first: ok\n" in result.stdout
    assert "  local:second: unusable here (local key 'second' is not in keyring" in result.stdout


def test_key_that_unwraps_but_does_not_open_the_file_is_damaged(ksec: Any, tmp_path: Path) -> None:
    """A well-formed line carrying another file's data key (spliced in from another file) is damaged too."""
    f = _two_recipient_file(ksec, tmp_path)
    g = tmp_path / "other.yaml"
    g.write_text(PLAIN)
    assert ksec("encrypt", "-k", "local:first,local:second", "-i", str(g)).exit_code == 0
    other = next(ln for ln in g.read_text().split("\n") if ln.startswith("# kagiya:local:second:"))
    lines = [other if ln.startswith("# kagiya:local:second:") else ln for ln in f.read_text().split("\n")]
    f.write_text("\n".join(lines))
    result = ksec("introspect", "--verify", str(f))
    assert result.exit_code == 7
    assert "  local:second: damaged (its data key does not open this file" in result.stdout
