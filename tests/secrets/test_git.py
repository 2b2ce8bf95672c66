"""git integration: `decrypt --for-diff` as a textconv shows plaintext changes; it never fails a diff."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n  user: admin\n"


def test_for_diff_prints_plaintext_or_the_file_unchanged(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    ksec("encrypt", "-i", str(path))
    assert ksec("decrypt", "--for-diff", str(path)).stdout == PLAIN
    encrypted = path.read_text()
    keyring.unlink()
    result = ksec("decrypt", "--for-diff", str(path))
    assert result.exit_code == 0 and result.stdout == encrypted
    assert "shown encrypted" in result.stderr
    plain = tmp_path / "p.yaml"
    plain.write_text("not: a secret\n")
    assert ksec("decrypt", "--for-diff", str(plain)).stdout == "not: a secret\n"


def test_git_diff_textconv_shows_the_changed_value(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    path = repo / "secret.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    kagiya = Path(sys.executable).parent / "kagiya"
    env = {**os.environ, "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "KAGIYA_KEYRING": str(keyring)}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    git("config", "diff.kagiya.textconv", f"{kagiya} secrets decrypt --for-diff")
    (repo / ".gitattributes").write_text("*.yaml diff=kagiya\n")
    git("add", ".")
    git("commit", "-qm", "one")
    assert ksec("patch", str(path), "-s", "password=hunter3").exit_code == 0
    diff = git("diff")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-  password: hunter2", "+  password: hunter3"]
    raw = git("diff", "--no-textconv")
    raw_changed = [line[:12] for line in raw.splitlines()
                   if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(raw_changed) == ["+  password:", "+# kubesec:m", "-  password:", "-# kubesec:m"]
