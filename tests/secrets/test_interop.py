"""Must show: kagiya reads kubesec 0.9.2's own file (real gpg, test key A) and re-encrypts it byte-identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.secrets.conftest import PGP_A


def _values(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    return {"data": doc.get("data"), "stringData": doc.get("stringData")}


def test_decrypt_reproduces_secret_yml_values(ksec: Any, pgp_env: Any, interop: Path) -> None:
    result = ksec("decrypt", str(interop / "secret.kubesec.enc.yml"))
    assert result.exit_code == 0, result.stderr
    assert _values(result.stdout) == _values((interop / "secret.yml").read_text())
    assert "kubesec:" not in result.stdout


def test_reencrypt_without_changes_is_byte_identical(ksec: Any, pgp_env: Any, interop: Path) -> None:
    path = interop / "secret.kubesec.enc.yml"
    before = path.read_bytes()
    result = ksec("encrypt", "-i", str(path))
    assert result.exit_code == 0, result.stderr
    assert path.read_bytes() == before


def test_patch_of_interop_file_changes_one_value_and_the_mac(ksec: Any, pgp_env: Any, interop: Path) -> None:
    path = interop / "secret.kubesec.enc.yml"
    before = path.read_text().splitlines()
    result = ksec("patch", str(path), "-d", "username=root")
    assert result.exit_code == 0, result.stderr
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [a.split(":")[0] for a, _ in changed] == ["  username", "# kubesec"]
    assert changed[1][0].startswith("# kubesec:mac:")
    decrypted = ksec("decrypt", str(path))
    assert yaml.safe_load(decrypted.stdout)["data"]["username"] == "cm9vdA=="


def test_kagiya_pgp_file_has_kubesec_shape(ksec: Any, pgp_env: Any, interop: Path) -> None:
    path = interop / "secret.yml"
    result = ksec("encrypt", "-k", PGP_A, str(path))
    assert result.exit_code == 0, result.stderr
    trailer = [line for line in result.stdout.splitlines() if line.startswith("# kubesec:")]
    assert trailer[0] == "# kubesec:v:4"
    assert trailer[1].startswith(f"# kubesec:{PGP_A}:")
    assert trailer[2].startswith("# kubesec:mac:") and len(trailer) == 3
    back = ksec("decrypt", "-", input=result.stdout)
    assert back.stdout == path.read_text()
