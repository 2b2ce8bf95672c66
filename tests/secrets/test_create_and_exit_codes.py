"""Must show (issue 17.3, 17.5, 17.8): `create` never replaces a file without --force and sets annotations,
labels and metadata like kubesec; every documented exit code is what a user gets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from kagiya.errors import ExitCode


def test_create_refuses_to_overwrite_without_force(ksec: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.yaml"
    assert ksec("create", "app", "-s", "a=1", "-o", str(out)).exit_code == 0
    before = out.read_bytes()
    result = ksec("create", "app", "-s", "a=2", "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"kagiya: error: {out} exists (use --force/-f to replace it)"
    assert out.read_bytes() == before
    assert ksec("create", "app", "-s", "a=2", "-o", str(out), "--force").exit_code == 0
    assert yaml.safe_load(ksec("decrypt", str(out)).stdout)["stringData"] == {"a": "2"}


def test_create_sets_annotations_labels_and_metadata(ksec: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.yaml"
    result = ksec("create", "app", "-n", "prod", "-a", "origin=http://x/y", "-l", "app=web", "-l", "on=yes",
                  "-m", "generateName=app-", "-d", "bin=file:" + str(_binary(tmp_path)), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(ksec("decrypt", str(out)).stdout)
    assert doc["metadata"] == {"name": "app", "namespace": "prod", "generateName": "app-",
                               "annotations": {"origin": "http://x/y"}, "labels": {"app": "web", "on": "yes"}}
    assert base64.b64decode(doc["data"]["bin"]) == bytes(range(256))


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)))
    return path


@pytest.mark.parametrize("args", [["-a", "novalue"], ["-l", "bad key=x"], ["-m", "labels=x"], ["-m", "name=Bad_Name"]])
def test_create_bad_metadata_is_a_usage_error(ksec: Any, args: list[str]) -> None:
    result = ksec("create", "app", "-s", "a=b", *args)
    assert result.exit_code == 2 and result.stderr.startswith("kagiya: error: ")


PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


@pytest.mark.parametrize("key", ["vault:transit/k", "pgp:ABCD1234", "local:nosuch", "nocolon", "gcp:nope",
                                 "aws:arn:bad", "local:bad/name"])
def test_bad_recipient_on_the_command_line_exits_2(ksec: Any, keyring: Path, tmp_path: Path, key: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    result = ksec("encrypt", "-k", key, str(path))
    assert result.exit_code == ExitCode.USAGE == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert path.read_text() == PLAIN


def test_exit_codes_one_per_documented_case(ksec: Any, keyring: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "p.yaml"
    plain.write_text(PLAIN)
    assert ksec("check", str(plain)).exit_code == 1  # findings
    assert ksec("decrypt", str(tmp_path / "missing.yaml")).exit_code == 2  # usage
    assert ksec("encrypt", "-i", "-o", "x", str(plain)).exit_code == 2  # usage
    not_yaml = tmp_path / "n.yaml"
    not_yaml.write_text("kind: Secret\n  data: [unclosed\n")
    assert ksec("encrypt", str(not_yaml)).exit_code == 2  # bad manifest
    (tmp_path / ".kagiya.yaml").write_text("creation_rules: [{recipients: []}]\n")
    assert ksec("encrypt", str(plain)).exit_code == 3  # configuration
    (tmp_path / ".kagiya.yaml").unlink()
    enc = tmp_path / "e.yaml"
    assert ksec("encrypt", "-o", str(enc), str(plain)).exit_code == 0
    keyring.write_text("default " + base64.b64encode(b"\x01" * 32).decode() + "\n")
    assert ksec("decrypt", str(enc)).exit_code == 7  # no recipient usable
    assert ksec("nosuchverb").exit_code == 2  # click usage error
    assert ksec("decrypt", "--nosuchflag", str(enc)).exit_code == 2
