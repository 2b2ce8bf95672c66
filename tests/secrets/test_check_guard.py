"""Must show (issue 17.4): the pre-commit guard reads every encoding kubectl reads (UTF-8/16/32 with a BOM) and
scans files it cannot parse as YAML (Helm templates) for Secret-shaped plaintext instead of passing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


@pytest.mark.parametrize("encoding,bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                                          ("utf-32-le", b"\xff\xfe\x00\x00"), ("utf-32-be", b"\x00\x00\xfe\xff"),
                                          ("utf-8", b"\xef\xbb\xbf")])
def test_bom_encoded_secret_is_checked(ksec: Any, tmp_path: Path, encoding: str, bom: bytes) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(bom + SECRET.encode(encoding))
    result = ksec("check", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{path}: Secret default/app: stringData.password is plaintext"]


def test_fix_encrypts_a_utf16_file_and_says_it_became_utf8(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xff\xfe" + SECRET.encode("utf-16-le"))
    result = ksec("check", "--fix", str(path))
    assert result.exit_code == 1 and "rewritten as UTF-8, was utf-16-le" in result.stderr
    assert ksec("check", str(path)).exit_code == 0
    assert ksec("decrypt", str(path)).stdout == SECRET


def test_undecodable_secret_file_is_a_finding(ksec: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(SECRET.encode() + b"\xff\xfe\xfa")
    result = ksec("check", str(path))
    assert result.exit_code == 1
    assert "is not UTF-8 and has no UTF-16/32 byte-order mark" in result.stderr
    assert f"{path}:6: stringData.password looks like a plaintext value" in result.stderr


HELM = """\
{{- if .Values.enabled }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}
  labels: {{ include "chart.labels" . | nindent 4 }}
type: Opaque
data:
  token: {{ .Values.token | b64enc }}
  # a comment
  cert: |
    {{ .Values.cert | nindent 4 }}
stringData:
  password: hunter2
  dsn: "postgres://app:{{ .Values.pw }}@db/app"
  note: >
    plain text in a block
{{- end }}
"""


def test_helm_template_with_literal_plaintext_is_a_finding(ksec: Any, tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(HELM)
    result = ksec("check", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:14: stringData.password looks like a plaintext value (file not parsed as YAML; line scan)",
        f"{path}:16: stringData.note looks like a plaintext value (file not parsed as YAML; line scan)",
    ]


def test_template_without_plaintext_passes_with_a_note(ksec: Any, tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(HELM.replace("  password: hunter2\n", "").replace("  note: >\n    plain text in a block\n", ""))
    result = ksec("check", str(path))
    assert result.exit_code == 0
    assert result.stderr.startswith(f"kagiya: note: {path}: not parsed as YAML (")
    assert "a line scan found no plaintext value" in result.stderr


def test_broken_yaml_secret_reports_the_parse_error_and_the_scan(ksec: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SECRET + "  bad: [unclosed\n")
    result = ksec("check", str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}: not a valid YAML/JSON manifest")
    assert f"{path}:6: stringData.password looks like a plaintext value" in lines[1]
