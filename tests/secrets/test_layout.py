"""Must show: only the Secret's value lines and the trailer change; everything else stays byte-identical."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

THREE_DOCS = """\
# platform config for myapp -- reviewed by the security team
apiVersion: v1
kind: ConfigMap
metadata:
  name: myapp-config   # not secret
data:
  LOG_LEVEL: debug
  password_hint: "not a secret, lives in a ConfigMap"
---
# the credentials
apiVersion: v1
kind: Secret
metadata:
  namespace: prod
  name: myapp
type: Opaque
stringData:
  # the DSN the app reads
  dsn: "postgres://app@db:5432/app"
  motd: 'hello, world'
  plain: some plain words
data:
  token:    dG9rZW4tMTIz     # odd spacing kept
  cert: |
    TUlJQ2VqQ0NBZU9nQXdJQkFnSUJBREFOQmdrcWhraUc5dzBCQVFVRkFEQmxNUXN3Q1FZRFZRUUdFd0pE
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: myapp}
spec:
  replicas: 2   # two is enough
"""


def changed_lines(a: str, b: str) -> list[str]:
    return [line for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_three_documents_only_secret_values_and_trailer_change(ksec: Any, tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(THREE_DOCS)
    result = ksec("encrypt", "-i", str(path))
    assert result.exit_code == 0, result.stderr
    encrypted = path.read_text()
    diff = changed_lines(THREE_DOCS, encrypted)
    removed = [d[1:] for d in diff if d.startswith("-")]
    added = [d[1:] for d in diff if d.startswith("+")]
    assert removed == ['  dsn: "postgres://app@db:5432/app"', "  motd: 'hello, world'", "  plain: some plain words",
                       "  token:    dG9rZW4tMTIz     # odd spacing kept", "  cert: |",
                       "    TUlJQ2VqQ0NBZU9nQXdJQkFnSUJBREFOQmdrcWhraUc5dzBCQVFVRkFEQmxNUXN3Q1FZRFZRUUdFd0pE"]
    assert [a.split(":")[0] for a in added[:5]] == ["  dsn", "  motd", "  plain", "  token", "  cert"]
    assert added[0].startswith('  dsn: "') and added[1].startswith("  motd: '")
    assert added[3].endswith("     # odd spacing kept")
    assert [a.split(":")[1] for a in added[5:]] == ["v", "mac", "local"]
    docs = list(yaml.safe_load_all(encrypted))
    assert docs[0] == list(yaml.safe_load_all(THREE_DOCS))[0] and docs[2] == list(yaml.safe_load_all(THREE_DOCS))[2]

    back = ksec("decrypt", str(path))
    assert back.exit_code == 0, back.stderr
    assert back.stdout == THREE_DOCS


def test_crlf_manifest_round_trips(ksec: Any, tmp_path: Path) -> None:
    text = THREE_DOCS.replace("\n", "\r\n")
    path = tmp_path / "crlf.yaml"
    path.write_bytes(text.encode())
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    raw = path.read_bytes()
    assert b"\r\n# kubesec:v:4\r\n" in raw and raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    back = ksec("decrypt", str(path))
    assert back.stdout.encode() == text.encode()


def test_kind_list_items(ksec: Any, tmp_path: Path) -> None:
    text = ("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: a}\n"
            "  stringData:\n    x: one\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n"
            "  data:\n    y: two\n"
            "- kind: Secret\n  metadata: {name: b}\n  data:\n    z: dHdv\n")
    path = tmp_path / "list.yaml"
    path.write_text(text)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    doc = yaml.safe_load(path.read_text())
    assert doc["items"][1]["data"]["y"] == "two"
    assert doc["items"][0]["stringData"]["x"] != "one" and doc["items"][2]["data"]["z"] != "dHdv"
    assert ksec("decrypt", str(path)).stdout == text


def test_json_manifest(ksec: Any, tmp_path: Path) -> None:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j"},
                "data": {"a": "YWJj"}, "stringData": {"b": "line1\nline2 \"q\""}}
    text = json.dumps(manifest, indent=2) + "\n"
    path = tmp_path / "s.json"
    path.write_text(text)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    body = path.read_text().split("# kubesec:v:")[0]
    parsed = json.loads(body)  # the body stays JSON; the trailer is YAML comment lines after it
    assert parsed["metadata"] == {"name": "j"} and parsed["data"]["a"] != "YWJj"
    assert ksec("decrypt", str(path)).stdout == text


@pytest.mark.parametrize("value", ["x", "with: colon", "'quoted'", "123", "true", "", " lead", "tab\there",
                                   "multi\nline\n", "no-newline\nend", "trailing\n\n", "unicodé ✓", "#hash",
                                   "- dash", "\u2028sep"])
def test_values_of_every_shape_round_trip(ksec: Any, tmp_path: Path, value: str) -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                           "stringData": {"v": value, "w": "x"}}, allow_unicode=True)
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    back = ksec("decrypt", str(path))
    assert back.exit_code == 0, back.stderr
    assert yaml.safe_load(back.stdout)["stringData"] == {"v": value, "w": "x"}


def test_literal_block_value_round_trips_byte_identical(ksec: Any, tmp_path: Path) -> None:
    text = "kind: Secret\nmetadata:\n  name: s\nstringData:\n  conf: |\n    a = 1\n    b = 2\n\n  other: x\n"
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    assert ksec("decrypt", str(path)).stdout == text
