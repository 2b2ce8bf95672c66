"""Must show (issue 17.1): every plaintext value kagiya prints or writes reads back as the same string in PyYAML
and in kubectl's YAML 1.1 decoding (the real `k8s-yaml-check` peer), so `kagiya secrets decrypt | kubectl apply`
never fails on `y`, `1e3`, `0x1F`, `017`, `1_000`, `.inf` or a date."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagiya.secrets import manifest

PEER = Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "k8s-yaml-check"
needs_peer = pytest.mark.skipif(not PEER.exists(), reason=f"kubectl YAML decoding peer not found at {PEER}")

TRICKY = ["y", "Y", "n", "N", "yes", "No", "on", "OFF", "true", "~", "null", "1e3", "1E3", "0x1F", "017", "0o17",
          "0b101", "-0b1", "1_000", "+12", "-1.5", ".5", ".inf", "-.Inf", ".NaN", "2001-12-14",
          "2001-12-14t21:59:43.10-05:00",
          "2001-1-2 3:4:5", "1:20", "190:20:30", "<<", "=", "", " lead", "trail ", "a: b", "#x", "x #y", "- a",
          "[a]", "{a}", "'q'", '"d"', "12e", "1.2.3", "0x", "x1e3", "hello", "1abc", "MTIz", "@at", "%p", "!t",
          "&a", "*b", "|", ">", "?", ":", "multi\nline", "tab\there", "crlf\r\n", "é ü", "\u2028", "\x85"]

VALUE = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(r"[-+.0-9eExXoObB_:tTzZ ]{1,10}", fullmatch=True),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\0"), max_size=12),
)
KEY = st.one_of(st.sampled_from(["y", "n", "on", "true", "1e3", "017", ".inf", "1_000", "~", "null", "a.b", "k-1"]),
                st.from_regex(r"[-._a-zA-Z0-9]{1,8}", fullmatch=True))


def plain_slot(indent: int = 4) -> manifest.Slot:
    return manifest.Slot(0, "stringData", "k", "", 0, 0, "", False, indent)


def document(values: list[str]) -> str:
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", "  name: t", "stringData:"]
    for i, v in enumerate(values):
        lines.append(f"  k{i}: {manifest.render_plain(plain_slot(), v, chr(10))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None)
@given(VALUE)
def test_rendered_value_reads_back_in_pyyaml(value: str) -> None:
    loaded = yaml.safe_load(document([value]))
    assert loaded["stringData"]["k0"] == value


@settings(max_examples=200, deadline=None)
@given(KEY)
def test_rendered_key_reads_back_as_the_same_string(key: str) -> None:
    text = f"stringData:\n  {manifest.render_key(key)}: v\n"
    assert yaml.safe_load(text)["stringData"] == {key: "v"}


@pytest.mark.parametrize("value", ["y", "n", "on", "1e3", "0x1F", "017", "1_000", ".inf", "2001-12-14", "~"])
def test_yaml11_special_values_are_quoted(value: str) -> None:
    rendered = manifest.render_plain(plain_slot(), value, "\n")
    assert rendered[0] in "'\"", rendered


@needs_peer
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(VALUE, min_size=10, max_size=40), st.lists(KEY, min_size=1, max_size=10, unique=True))
def test_rendered_values_and_keys_decode_in_kubectl(tmp_path: Path, values: list[str], keys: list[str]) -> None:
    path = tmp_path / "s.yaml"
    text = document(values) + "".join(f"  {manifest.render_key('x' + k if k.startswith('k') else k)}: v\n"
                                      for k in keys)
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run([str(PEER), str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + text
    assert f"stringData={len(values) + len(keys)}" in proc.stdout


@needs_peer
def test_create_then_decrypt_output_decodes_in_kubectl(ksec: Any, tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    args = [f"k{i}={v}" for i, v in enumerate(TRICKY) if "\n" not in v and "\r" not in v and "=" not in v[:1]]
    created = ksec("create", "t", *[a for arg in args for a in ("-s", arg)], "-s", "y=yes", "-o", str(out))
    assert created.exit_code == 0, created.stderr
    plain = tmp_path / "plain.yaml"
    result = ksec("decrypt", str(out), "-o", str(plain))
    assert result.exit_code == 0, result.stderr
    loaded = yaml.safe_load(plain.read_text())
    assert loaded["stringData"]["y"] == "yes"
    for arg in args:
        key, _, value = arg.partition("=")
        assert loaded["stringData"][key] == value
    proc = subprocess.run([str(PEER), str(plain)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout
    # patch adds keys the same way
    assert ksec("patch", str(out), "-s", "on=off", "-s", "n=1e3").exit_code == 0
    result = ksec("decrypt", str(out), "-o", str(plain))
    assert yaml.safe_load(plain.read_text())["stringData"]["on"] == "off"
    assert subprocess.run([str(PEER), str(plain)], capture_output=True, timeout=30).returncode == 0
