"""Must show (issue 13): the PyYAML-free reader used by decrypt finds exactly what PyYAML's reading finds, or
declines; and the YAML 1.1 plain-scalar check used when rendering agrees with PyYAML's resolver."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kagiya.errors import KagiyaError
from kagiya.secrets import manifest, manifest_yaml, scan

KEYS = st.sampled_from(["a", "b", "password", "user.name", "tls.crt", "k-1", "_x", "y", "on", "1e3", "017",
                        "kind", "data", "stringData", "metadata", "name", "namespace"])
NORMAL = st.sampled_from(["hunter2", "dG9rZW4=", "abc def", "a#b", "v1", "Secret", "é", "x.y/z", "a-b_c", "Zm9v"])
ODD = st.sampled_from(["hunter2", "dG9rZW4=", "abc def", "a#b", "y", "no", "123", "1e3", "0x1F", "~", "null",
                          "2001-12-14", "-x", "a: b", "a:", "x #c", ":", "é", "true", "Secret", "List",
                          "ConfigMap", "v1", "q'q", 'd"d', "", " lead", "trail ", "a\\b", "[a]", "{a}", "*a", "&a",
                          "!t", "|", ">", "%", "@", "`"])
PLAINS = st.one_of(NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, ODD)
STYLE = st.sampled_from(["plain", "single", "double"])


def scalar(value: str, style: str) -> str:
    if style == "single":
        return "'" + value + "'"
    if style == "double":
        return '"' + value + '"'
    return value


@st.composite
def mapping(draw: st.DrawFn, indent: int, depth: int, least: int = 0) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(least, 4))):
        key = draw(KEYS)
        pad = " " * indent
        if draw(st.integers(0, 9)) == 0:
            lines.append(pad + "# a comment")
        if depth < 2 and draw(st.booleans()):
            lines.append(f"{pad}{key}:")
            lines += draw(mapping(indent + draw(st.sampled_from([2, 4])), depth + 1))
        else:
            lines.append(f"{pad}{key}: {scalar(draw(PLAINS), draw(STYLE))}")
    return lines


@st.composite
def manifest_text(draw: st.DrawFn) -> str:
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        lines = []
        if draw(st.integers(0, 3)):
            kind = draw(st.sampled_from(["Secret", "Secret", "Secret", "ConfigMap", "SecretList"]))
            lines.append("kind: " + kind)
            if draw(st.booleans()):
                lines += ["metadata:", f"  name: {draw(PLAINS)}"]
            for section in ("data", "stringData"):
                if draw(st.booleans()):
                    lines.append(f"{section}:")
                    lines += draw(mapping(2, 2, 1))
        if draw(st.integers(0, 3)) == 0:
            lines += draw(mapping(0, 0))
        docs.append("\n".join(lines) + "\n")
    return "---\n".join(docs)


def yaml_view(body: str) -> object:
    try:
        docs = manifest_yaml.read_secrets(body)
    except KagiyaError:
        return "error"
    return [(d.ordinal, d.namespace, d.name, d.slots) for d in docs]


@settings(max_examples=600, deadline=None)
@given(manifest_text())
def test_scan_agrees_with_pyyaml_or_declines(body: str) -> None:
    found = scan.scan(body)
    if found is None:
        return
    assert yaml_view(body) == [(d.ordinal, d.namespace, d.name, d.slots) for d in found], body


@pytest.mark.parametrize("body", [
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: prod\ndata:\n  a: YQ==\nstringData:\n"
    "  b: 'x y'\n  c: \"z\"\n",
    "# head\nkind: Secret\n\nmetadata:\n    name: n\ndata:\n    a: YQ==\n---\nkind: ConfigMap\ndata:\n  a: b\n",
    "---\nkind: Secret\ndata:\n  a: YQ==\n---\n",
])
def test_scan_reads_plain_files(body: str) -> None:
    found = scan.scan(body)
    assert found is not None
    assert yaml_view(body) == [(d.ordinal, d.namespace, d.name, d.slots) for d in found]


@pytest.mark.parametrize("body", [
    "kind: Secret\ndata:\n  a: YQ==  # trailing comment\n", "kind: Secret\ndata:\n  a: |\n    YQ==\n",
    "kind: Secret\ndata: {a: YQ==}\n", "kind: Secret\r\ndata:\r\n  a: YQ==\r\n",
    "kind: Secret\ndata:\n  a: &x YQ==\n", "kind: Secret\ndata:\n  a: YQ==\n  a: Yg==\n",
    "kind: List\nitems:\n- kind: Secret\n", "kind: Secret\ndata:\n\ta: b\n",
    "kind: Secret\ndata:\n  a: \"\\u0041\"\n", "kind: Secret\ndata:\n  a: abc\n    def\n",
    "%YAML 1.1\n---\nkind: Secret\n",
])
def test_scan_declines_what_it_does_not_know(body: str) -> None:
    assert scan.scan(body) is None


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=12), st.from_regex(r"[-+.0-9eExXoObB_:tTzZ ~<=yYnN]{1,12}", fullmatch=True),
                 st.sampled_from(["yes", "No", "ON", "off", "~", "null", "NULL", ".inf", "-.Inf", ".NaN", "<<", "=",
                                  "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
                                  "190:20:30", "1:20", "0b1_0", "0x_1F", "017", "+0", "-1_000.5e+3"])))
def test_plain_string_check_agrees_with_pyyaml(value: str) -> None:
    resolved = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
    if resolved != "tag:yaml.org,2002:str":
        assert not manifest.plain_is_string(value), value
    elif value and manifest.plain_is_string(value):
        assert resolved == "tag:yaml.org,2002:str"


CIPHER = ("dG9rZW4tdG9rZW4tdG9rZW4tdG9rZW4tdG9rZW4tdG9rZW4tdG9rZW4tdG9rZW4tdA==.AAAAAAAAAAAAAAAA."
          "AAAAAAAAAAAAAAAAAAAAAA==")
TRAILER = "# kubesec:v:3\n# kubesec:mac:x\n# kagiya:local:a:QUJD\n"


@settings(max_examples=600, deadline=None)
@given(manifest_text(), st.floats(0, 1))
def test_quick_clean_check_never_passes_what_pyyaml_flags(body: str, share: float) -> None:
    """The pre-commit guard's PyYAML-free verdict: whenever it calls a file clean, PyYAML's reading agrees."""
    from kagiya.secrets import checker

    lines = body.split("\n")
    cut = int(len(lines) * share)  # turn the values of the first part of the file into ciphertext
    for i, line in enumerate(lines[:cut]):
        key, sep, _ = line.partition(": ")
        if sep and line.startswith("  "):
            lines[i] = f"{key}: {CIPHER}"
    text = "\n".join(lines) + TRAILER
    if not checker.quick_clean(text):
        return
    m = manifest.parse(text)
    assert m.secrets and checker.plaintext_values(m, "f") == [], text


def test_quick_clean_is_used_and_declines_plaintext(tmp_path: object) -> None:
    from kagiya.secrets import checker

    clean = f"kind: Secret\nmetadata:\n  name: a\ndata:\n  k: {CIPHER}\n" + TRAILER
    assert checker.quick_clean(clean)
    assert not checker.quick_clean(clean.replace(CIPHER, "aHVudGVyMg==", 1))
    assert not checker.quick_clean(clean.replace("data:\n", "stringData:\n  p: hunter2\ndata:\n"))
    assert not checker.quick_clean(clean + "---\nkind: Secret\nstringData:\n  p: hunter2\n")
    assert not checker.quick_clean(clean.replace("# kubesec:mac:x\n", ""))
