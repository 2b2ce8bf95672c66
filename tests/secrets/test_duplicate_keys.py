"""Duplicate YAML keys: PyYAML keeps both, Go readers (kubectl, the apiserver) take the last one. A second
`data:` block or a `kind: ConfigMap` followed by `kind: Secret` would hide plaintext from encrypt and check;
such files are refused with the key and its line, and `check` reports them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kagiya.secrets import manifest
from kagiya.secrets.manifest import ManifestError

SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


def _encrypted(ksec: Any, tmp_path: Path) -> str:
    f = tmp_path / "enc.yaml"
    f.write_text(SECRET)
    assert ksec("encrypt", "-i", str(f)).exit_code == 0
    return f.read_text()


def test_second_data_block_in_encrypted_file_fails_check_and_decrypt(ksec: Any, tmp_path: Path) -> None:
    enc = _encrypted(ksec, tmp_path)
    body, trailer = enc.split("# kubesec:v:")
    # reviewer repro: a plaintext block appended below the encrypted one; kubectl would apply the second
    tampered = body + "stringData:\n  password: plaintext-leak\n# kubesec:v:" + trailer
    f = tmp_path / "tampered.yaml"
    f.write_text(tampered)
    result = ksec("check", str(f))
    assert result.exit_code == 1
    assert "duplicate key 'stringData' at line 7" in result.stderr
    assert ksec("decrypt", str(f)).exit_code != 0
    assert f.read_text() == tampered


def test_two_data_blocks_in_plaintext_refused_by_encrypt(ksec: Any, tmp_path: Path) -> None:
    text = "kind: Secret\nmetadata:\n  name: a\ndata:\n  k: dg==\ndata:\n  leaked: c2VjcmV0\n"
    f = tmp_path / "two.yaml"
    f.write_text(text)
    result = ksec("encrypt", "-i", str(f))
    assert result.exit_code != 0
    assert "duplicate key 'data' at line 6 (first at line 4)" in result.stderr
    assert f.read_text() == text
    assert ksec("check", str(f)).exit_code == 1


def test_configmap_then_secret_kind_is_refused(ksec: Any, tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata:\n  name: a\nstringData:\n  password: hunter2\n"
    f = tmp_path / "kind.yaml"
    f.write_text(text)
    result = ksec("check", str(f))
    assert result.exit_code == 1
    assert "duplicate key 'kind' at line 3" in result.stderr
    assert ksec("encrypt", "-i", str(f)).exit_code != 0
    assert f.read_text() == text


@pytest.mark.parametrize("text, key", [
    ("kind: Secret\nmetadata:\n  name: a\n  name: b\nstringData:\n  k: v\n", "'name' at line 4"),
    ("kind: Secret\nstringData:\n  k: v\n  k: w\n", "'k' at line 4"),
    ("kind: List\nitems:\n- kind: ConfigMap\n  kind: Secret\n  stringData: {k: v}\n", "'kind' at line 4"),
    ("kind: List\nitems:\n- kind: Secret\n  stringData: {k: v}\n  stringData: {k: w}\n", "'stringData' at line 5"),
    ("kind: List\nitems: []\nitems:\n- kind: Secret\n  stringData: {k: v}\n", "'items' at line 3"),
])
def test_duplicates_in_metadata_sections_and_list_items(text: str, key: str) -> None:
    with pytest.raises(ManifestError, match=f"duplicate key {key}"):
        manifest.parse(text)


def test_duplicates_in_other_documents_are_left_alone() -> None:
    m = manifest.parse("kind: ConfigMap\ndata: {a: b}\ndata: {c: d}\n---\nkind: Secret\nstringData: {k: v}\n")
    assert [s.key for s in m.slots] == ["k"]
