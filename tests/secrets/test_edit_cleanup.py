"""`edit` whose editor fails without changing anything leaves no plaintext copy behind (there is no edit to keep)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `edit` makes its temp dir (tempfile caches the temp dir, so set it directly)."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.delenv("VISUAL", raising=False)
    return d


@pytest.fixture
def enc(ksec: Any, tmp_path: Path) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    return path


def test_failing_editor_without_changes_leaves_no_temp_file(ksec: Any, enc: Path, private_tmp: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    before = enc.read_bytes()
    monkeypatch.setenv("EDITOR", "false")
    result = ksec("edit", str(enc))
    assert result.exit_code != 0
    assert "editor exited with status 1; nothing changed, nothing written" in result.stderr
    assert "kept at" not in result.stderr
    assert list(private_tmp.iterdir()) == []  # no plaintext left on disk
    assert enc.read_bytes() == before


def test_failing_editor_with_changes_still_keeps_the_edit(ksec: Any, enc: Path, private_tmp: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", "sh -c 'echo \"  extra: typed\" >> \"$1\"; exit 2' editor")
    result = ksec("edit", str(enc))
    assert result.exit_code != 0 and "your edit is kept at" in result.stderr
    [kept_dir] = list(private_tmp.iterdir())
    assert "typed" in next(kept_dir.iterdir()).read_text()
