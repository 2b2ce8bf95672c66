"""Must show: `check` exits 1 naming each plaintext value and 0 on encrypted files; the pre-commit hook works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAIN = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: prod\ndata:\n  token: dG9rZW4=\n"
         "stringData:\n  password: hunter2\n")
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  password: not-a-secret\n"


def test_check_names_each_plaintext_value(ksec: Any, tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(PLAIN)
    result = ksec("check", str(plain))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{plain}: Secret prod/app: data.token is plaintext",
        f"{plain}: Secret prod/app: stringData.password is plaintext",
    ]
    assert plain.read_text() == PLAIN


def test_check_passes_encrypted_and_non_secret_files(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    enc = tmp_path / "enc.yaml"
    enc.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(enc)).exit_code == 0
    cm = tmp_path / "cm.yaml"
    cm.write_text(CONFIGMAP)
    helm = tmp_path / "template.yaml"
    helm.write_text("kind: ConfigMap\nvalue: {{ .Values.x }}\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text("{kind: ConfigMap, data: {a: b}}\n")
    chart = tmp_path / "secret-template.yaml"
    chart.write_text("kind: Secret\ndata:\n{{- range $k, $v := .Values.s }}\n"
                     "  {{ $k }}: {{ $v | b64enc }}\n{{- end }}\n")
    keyring.unlink()  # check needs no key
    result = ksec("check", str(enc), str(cm), str(helm), str(flow), str(chart))
    assert result.exit_code == 0, result.stderr
    # the template is not YAML: the guard says so (and that its line scan found nothing), without failing
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"kagiya: note: {chart}: not parsed as YAML (")


def test_check_sees_flow_and_json_secrets_and_broken_ones(ksec: Any, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("{kind: Secret, metadata: {name: f}, stringData: {k: v}}\n")
    js = tmp_path / "s.json"
    js.write_text('{"kind": "Secret", "metadata": {"name": "j"}, "data": {"k": "dg=="}}')
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Secret\nstringData:\n  k: [v\n")
    result = ksec("check", str(flow), str(js), str(broken))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{flow}: Secret default/f: stringData.k is plaintext",
                                          f"{js}: Secret default/j: data.k is plaintext",
                                          f"{broken}: not a valid YAML/JSON manifest at line 4: "
                                          "did not find expected ',' or ']'",
                                          f"{broken}:3: stringData.k looks like a plaintext value (file not parsed "
                                          "as YAML; line scan)"]


def test_check_flags_plaintext_added_to_an_encrypted_file(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    enc = tmp_path / "enc.yaml"
    enc.write_text(PLAIN)
    ksec("encrypt", "-i", str(enc))
    enc.write_text(enc.read_text().replace("stringData:\n", "stringData:\n  added: oops\n"))
    result = ksec("check", str(enc))
    assert result.exit_code == 1 and "stringData.added is plaintext" in result.stderr
    assert "password" not in result.stderr


def test_check_fix_encrypts_in_place(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(PLAIN)
    result = ksec("check", "--fix", str(plain))
    assert result.exit_code == 1 and "encrypted 2 plaintext value(s)" in result.stderr
    assert ksec("check", str(plain)).exit_code == 0
    assert ksec("decrypt", str(plain)).stdout == PLAIN


@pytest.mark.slow
def test_pre_commit_try_repo(tmp_path: Path, keyring: Path, ksec: Any) -> None:
    """The real pre-commit installs the hook (language: python) from this repository and runs it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "plain.yaml").write_text(PLAIN)
    (work / "enc.yaml").write_text(PLAIN)
    assert ksec("encrypt", "-i", str(work / "enc.yaml")).exit_code == 0
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(tmp_path)}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, env=env)
    subprocess.run(["git", "add", "."], cwd=work, check=True, env=env)
    pre_commit = Path(sys.executable).parent / "pre-commit"
    proc = subprocess.run([str(pre_commit), "try-repo", str(REPO), "kagiya-secrets-check",
                           "--files", "plain.yaml", "enc.yaml"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "plain.yaml: Secret prod/app: stringData.password is plaintext" in proc.stdout
    assert "enc.yaml" not in proc.stdout.split("kagiya secrets check")[-1]
