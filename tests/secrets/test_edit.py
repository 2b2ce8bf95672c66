"""`edit`: a private temp file, $EDITOR, stable re-encryption; on error nothing is written and the edit is kept."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

PLAIN = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n# who rotates this: the platform team\n"
         "stringData:\n  password: hunter2\n  user: admin\ndata:\n  token: dG9rZW4=\n")


@pytest.fixture
def enc(ksec: Any, keyring: Path, tmp_path: Path) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    return path


def editor(tmp_path: Path, body: str) -> str:
    """An $EDITOR that runs `body` (Python, the file path in `path`)."""
    script = tmp_path / "editor.py"
    script.write_text("import sys, os, pathlib\npath = pathlib.Path(sys.argv[1])\n" + body)
    return f"{sys.executable} {script}"


def kept_path(stderr: str) -> Path:
    m = re.search(r"your edit is kept at (\S+)", stderr)
    assert m, stderr
    return Path(m.group(1))


def test_edit_changes_only_the_edited_value(ksec: Any, enc: Path, tmp_path: Path, monkeypatch: Any) -> None:
    before = enc.read_text().splitlines()
    monkeypatch.setenv("EDITOR", editor(tmp_path, "path.write_text(path.read_text().replace('hunter2', 'hunter3'))"))
    monkeypatch.delenv("VISUAL", raising=False)
    result = ksec("edit", str(enc))
    assert result.exit_code == 0, result.stderr
    after = enc.read_text().splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert [after[i].split(":")[0] for i in changed] == ["  password", "# kubesec"]
    assert ksec("decrypt", str(enc)).stdout == PLAIN.replace("hunter2", "hunter3")


def test_edit_temp_file_is_private(ksec: Any, enc: Path, tmp_path: Path, monkeypatch: Any) -> None:
    report = tmp_path / "report"
    monkeypatch.setenv("EDITOR", editor(tmp_path, (
        f"pathlib.Path({str(report)!r}).write_text("
        "f'{os.stat(path).st_mode:o} {os.stat(path.parent).st_mode:o} {path}')\n")))
    monkeypatch.delenv("VISUAL", raising=False)
    assert ksec("edit", str(enc)).exit_code == 0
    file_mode, dir_mode, temp = report.read_text().split()
    assert stat.S_IMODE(int(file_mode, 8)) == 0o600 and stat.S_IMODE(int(dir_mode, 8)) == 0o700
    assert not Path(temp).exists() and not Path(temp).parent.exists()  # cleaned up; nothing changed


@pytest.mark.parametrize(("body", "message"), [
    ("path.write_text(path.read_text() + 'oops: [\\n')", "not a valid YAML"),
    ("path.write_text(path.read_text().replace('token: dG9rZW4=', 'token: not base64!'))", "not valid base64"),
    ("path.write_text(path.read_text() + '  x: 1\\n'); sys.exit(3)", "editor exited with status 3"),
])
def test_edit_error_keeps_the_edit_and_writes_nothing(ksec: Any, enc: Path, tmp_path: Path, monkeypatch: Any,
                                                      body: str, message: str) -> None:
    before = enc.read_bytes()
    monkeypatch.setenv("EDITOR", editor(tmp_path, body))
    monkeypatch.delenv("VISUAL", raising=False)
    result = ksec("edit", str(enc))
    assert result.exit_code != 0 and message in result.stderr and result.stderr.count("\n") == 1
    assert enc.read_bytes() == before
    kept = kept_path(result.stderr)
    assert "hunter2" in kept.read_text()  # what the user typed is still there
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    kept.unlink()
    kept.parent.rmdir()
