"""`encrypt -i` and `check --fix` rewrite the target of a symlinked manifest; the link stays a link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


def _linked(tmp_path: Path) -> tuple[Path, Path]:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "secret.yaml"
    target.write_text(PLAIN)
    link = tmp_path / "link.yaml"
    link.symlink_to(os.path.relpath(target, tmp_path))
    return target, link


def test_encrypt_in_place_through_a_symlink(ksec: Any, tmp_path: Path) -> None:
    target, link = _linked(tmp_path)
    result = ksec("encrypt", "-i", str(link))
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert "# kubesec:v:4" in target.read_text() and "hunter2" not in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.yaml"]  # no temp file left
    assert ksec("decrypt", str(link)).stdout == PLAIN


def test_check_fix_through_a_symlink(ksec: Any, tmp_path: Path) -> None:
    target, link = _linked(tmp_path)
    result = ksec("check", "--fix", str(link))
    assert result.exit_code == 1
    assert link.is_symlink()
    assert "hunter2" not in target.read_text()
    assert ksec("check", str(link)).exit_code == 0
