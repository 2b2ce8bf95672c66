"""Must show (issue 13): `encrypt` reads the plainest files without PyYAML, and no plaintext value ever survives.

The scanned path (scan.py + the seal_check safety net) is compared with PyYAML's reading on generated manifests
full of the YAML that trips hand-written readers: block and folded scalars, quotes and escapes, flow maps,
comments (own-line and trailing, and own-line ones holding a YAML 1.1 line break: U+2028, U+2029, NEL),
anchors and aliases, multi-document streams with `...`, `kind: List`, CRLF,
quoted keys, ConfigMaps with `data:` of their own. Whatever the input, `ops.encrypt` either fails as the PyYAML
path fails, or writes a file where PyYAML finds exactly the values it found in the input, each one ciphertext,
decrypting to the original value.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagiya.errors import KagiyaError
from kagiya.secrets import checker, envelope, manifest, ops, scan, seal_check
from kagiya.secrets.keys import local
from kagiya.secrets.settings import SecretsSettings

B64 = st.sampled_from(["YQ==", "aHVudGVyMg==", "dG9rZW4=", "Zm9vYmFy", "", "MTIz"])
TEXT = st.sampled_from(["hunter2", "abc def", "it's", 'say "hi"', "a#b", "y", "123", "é", "x: y", "-lead",
                        "multi\nline", "tab\there", "", " pad "])
KEYS = st.sampled_from(["a", "password", "tls.crt", "k-1", "data", "stringData", "kind", "_x"])


def _quote(value: str, style: str) -> str | None:
    """`value` in `style`, or None when that style cannot carry it."""
    if style == "plain":
        ok = value and "\n" not in value and "\t" not in value and value == value.strip() and value[0] not in "-'\"#"
        return value if ok and ": " not in value and " #" not in value else None
    if style == "single":
        return None if "\n" in value or "\t" in value else "'" + value.replace("'", "''") + "'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


@st.composite
def entries(draw: st.DrawFn, section: str, indent: int) -> list[str]:
    """A block mapping's entries, in a mix of scalar styles."""
    pad = " " * indent
    lines, anchored = [], False
    keys = draw(st.lists(KEYS, max_size=4))
    for key in keys:
        value = draw(B64 if section == "data" else TEXT)
        style = draw(st.sampled_from(["plain", "plain", "single", "double", "literal", "folded", "anchor", "alias",
                                      "trailing", "quoted-key", "comment", "break-in-comment"]))
        if style == "comment":
            lines.append(f"{pad}# {key}: not a value")
            style = "plain"
        if style == "break-in-comment":  # YAML 1.1 line breaks end a comment: the rest of the line is a value
            brk = draw(st.sampled_from(["\x85", "\u2028", "\u2029"]))
            lines.append(f"{pad}# note{brk}{pad}{key}: {_quote(value, 'plain') or _quote(value, 'double')}")
            continue
        if style == "quoted-key":
            key, style = f'"{key}"', "plain"
        if style in ("literal", "folded"):
            marker = "|" if style == "literal" else ">"
            body = value.split("\n") if value else [""]
            lines.append(f"{pad}{key}: {marker}-")
            lines += [f"{pad}  {part}" for part in body]
            continue
        if style == "alias" and anchored:
            lines.append(f"{pad}{key}: *v")
            continue
        scalar = _quote(value, "plain") or _quote(value, "double")
        if style == "anchor" and not anchored:
            lines.append(f"{pad}{key}: &v {scalar}")
            anchored = True
        elif style == "trailing":
            lines.append(f"{pad}{key}: {scalar}  # note")
        else:
            lines.append(f"{pad}{key}: {_quote(value, style) or scalar}")
    return lines


@st.composite
def section(draw: st.DrawFn, name: str, indent: int) -> list[str]:
    shape = draw(st.sampled_from(["block", "block", "block", "flow", "empty-flow", "null"]))
    pad = " " * (indent - 2)
    if shape == "flow":
        values = draw(st.lists(st.tuples(KEYS, B64 if name == "data" else TEXT), max_size=3))
        inner = ", ".join(f"{k}: {_quote(v, 'double')}" for k, v in values)
        return [f"{pad}{name}: {{{inner}}}"]
    if shape == "empty-flow":
        return [f"{pad}{name}: {{}}"]
    if shape == "null":
        return [f"{pad}{name}:"]
    return [f"{pad}{name}:"] + draw(entries(name, indent))


@st.composite
def document(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["Secret", "Secret", "Secret", '"Secret"', "'Secret'", "ConfigMap", "SecretList"]))
    indent = draw(st.sampled_from([2, 2, 4]))
    lines = []
    if draw(st.booleans()):
        lines.append("# a Secret, or not")
    if kind == "SecretList":
        lines += ["apiVersion: v1", "kind: SecretList", "items:", "- kind: Secret", "  metadata:", "    name: item"]
        lines += ["  " + line for line in draw(section("stringData", indent))]
        return lines
    name = draw(st.sampled_from(["a", "b"]))
    lines += ["apiVersion: v1", f"kind: {kind}", "metadata:", f"{' ' * indent}name: {name}"]
    for part in ("data", "stringData"):
        if draw(st.booleans()):
            lines += draw(section(part, indent))
    if draw(st.integers(0, 5)) == 0:
        lines.append("type: Opaque")
    return lines


@st.composite
def stream(draw: st.DrawFn) -> str:
    docs = ["\n".join(draw(document())) + "\n" for _ in range(draw(st.integers(1, 3)))]
    sep = draw(st.sampled_from(["---\n", "---\n", "...\n---\n"]))
    text = ("---\n" if draw(st.booleans()) else "") + sep.join(docs)
    return text.replace("\n", "\r\n") if draw(st.integers(0, 4)) == 0 else text


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> SecretsSettings:
    sset = SecretsSettings(keyring=str(tmp_path_factory.mktemp("kr") / "keyring"))
    local.generate(sset, "t")
    return sset


def _reference(text: str, sset: SecretsSettings) -> tuple[list[tuple[int, str, str]], dict[Any, str]] | None:
    """PyYAML's reading of the input: the values to encrypt, or None when the PyYAML path refuses the file."""
    try:
        m = manifest.parse(text)
        if not m.secrets:
            return None
        values = envelope.plain_values(m)
        envelope.validate_values(m, values)
    except KagiyaError:
        return None
    return [(s.secret, s.section, s.key) for s in m.slots], values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream())
def test_encrypt_never_leaves_plaintext(keyed: SecretsSettings, text: str) -> None:
    expected = _reference(text, keyed)
    try:
        out = ops.encrypt(ops.Source(text, None), keyed, ["local:t"])
    except KagiyaError:
        assert expected is None, text  # the scanned path refuses only what the PyYAML path refuses
        return
    assert expected is not None, text
    sealed = manifest.parse(out)  # PyYAML's reading of what encrypt wrote
    assert checker.plaintext_values(sealed, "f") == [], out
    assert [(s.secret, s.section, s.key) for s in sealed.slots] == expected[0], out
    plain, _ = ops.decrypt(ops.Source(out, None), keyed)
    assert envelope.plain_values(manifest.parse(plain)) == expected[1]


def test_plain_files_take_the_scanned_path(keyed: SecretsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The everyday file is read without PyYAML, and the safety net passes its output."""
    text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\ndata:\n  k: aHVudGVyMg==\nstringData:\n  p: 'x y'\n"
    assert manifest.parse(text, quick=True).scanned
    calls: list[bool] = []
    real = seal_check.only_ciphertext
    monkeypatch.setattr(seal_check, "only_ciphertext", lambda body, n: calls.append(real(body, n)) or calls[-1])
    out = ops.encrypt(ops.Source(text, None), keyed, ["local:t"])
    assert calls == [True]
    assert "hunter2" not in out and "aHVudGVyMg==" not in out and "x y" not in out


def test_a_value_the_scanner_missed_is_caught_and_encrypted(keyed: SecretsSettings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: were the scanner to miss a value, the safety net sees it and PyYAML's path runs."""
    text = "kind: Secret\nmetadata:\n  name: a\nstringData:\n  a: first-secret\n  b: second-secret\n"
    real = scan.scan

    def forgetful(body: str) -> Any:
        docs = real(body)
        if docs:
            docs[0].slots.pop()
        return docs

    monkeypatch.setattr(scan, "scan", forgetful)
    out = ops.encrypt(ops.Source(text, None), keyed, ["local:t"])
    assert "second-secret" not in out and "first-secret" not in out
    assert checker.plaintext_values(manifest.parse(out), "f") == []


@pytest.mark.parametrize("body,values,ok", [
    ("kind: Secret\ndata:\n  a: AAAAAAAAAAAAAAAAAAAAAA==.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\n", 1, True),
    ("kind: Secret\ndata:\n  a: AAAAAAAAAAAAAAAAAAAAAA==.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\n", 2, False),
    ("kind: Secret\ndata:\n  a: aHVudGVyMg==\n", 1, False),
    ("kind: Secret\ndata:\n  a: |\n    aHVudGVyMg==\n", 1, False),
    ("kind: Secret\ndata: {a: aHVudGVyMg==}\n", 0, False),
    ("kind: Secret\nstringData:\n    # c\n  a: 'AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA=='\n", 1, True),
    ("kind: ConfigMap\ndata:\n  a: plain\n---\nkind: Secret\n", 0, False),
    ("kind: Secret\ndata:\n  a: AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\n  nested:\n    b: hunter2\n", 1, False),
    ("kind: Secret\r\ndata:\r\n  a: AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\r\n", 1, False),
    ("kind: Secret\ndata:\n  a: AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\n  # c\u2028  b: aHVudGVyMg==\n", 1, False),
    ("kind: Secret\ndata:\n  a: AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\n  # c\x85  b: aHVudGVyMg==\n", 1, False),
])
def test_seal_check_passes_only_pure_ciphertext(body: str, values: int, ok: bool) -> None:
    assert seal_check.only_ciphertext(body, values) is ok


def test_a_file_outside_the_subset_goes_through_pyyaml(keyed: SecretsSettings) -> None:
    """A file outside the scanner's subset (block scalar, anchor, CRLF) gets PyYAML's reading and its errors."""
    text = "kind: Secret\r\nmetadata:\r\n  name: a\r\nstringData:\r\n  a: &v |\r\n    line one\r\n  b: *v\r\n"
    assert scan.scan(text) is None
    with pytest.raises(KagiyaError, match="anchor"):
        ops.encrypt(ops.Source(text, None), keyed, ["local:t"])


def test_the_cheap_aes_gcm_import_is_cryptographys_class() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kagiya.secrets import aesgcm

    assert aesgcm.AESGCM is AESGCM


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(alphabet="AZaz09+/=.\n\rxé- ", max_size=14), st.text(max_size=8)))
def test_fast_base64_checks_agree_with_the_regular_expressions(value: str) -> None:
    """valid_base64 / base64ish use bytes.translate for speed; they must say what the plain regexes say."""
    import re

    joined = value.replace("\r", "").replace("\n", "") if "\n" in value else value
    expected = len(joined) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", joined) is not None
    assert manifest.valid_base64(value) is expected
    assert manifest.base64ish(value) is (re.fullmatch(r"[A-Za-z0-9+/=.]+", value) is not None)


def test_the_real_process_ends_early_with_all_output_and_the_exit_status(tmp_path: Any, keyed: Any) -> None:
    """kagiya.cli ends a fast-path process with os._exit (no interpreter teardown): stdout must still arrive
    whole through a pipe, errors still on stderr with their exit status."""
    import os
    import subprocess
    import sys

    plain = "kind: Secret\nmetadata:\n  name: big\ndata:\n" + "".join(
        f"  k{i}: {'QUJD' * 200}\n" for i in range(500))
    sealed = tmp_path / "s.yaml"
    sealed.write_text(ops.encrypt(ops.Source(plain, None), keyed, ["local:t"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    env["KAGIYA_KEYRING"] = keyed.keyring
    script = "import sys; from kagiya.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", script, "secrets", "decrypt", str(sealed)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, plain)
    missing = subprocess.run([sys.executable, "-c", script, "secrets", "decrypt", str(tmp_path / "none.yaml")],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.parametrize("brk", ["\u2028", "\u2029", "\x85"])
def test_a_value_behind_a_unicode_line_break_in_a_comment_is_encrypted(keyed: SecretsSettings, brk: str) -> None:
    """PyYAML (like libyaml, hence kubectl) ends a comment at U+2028/U+2029/NEL: `b` below is a data value, not
    part of a comment, and must come out encrypted, not left as plaintext by a reader that splits on \\n only."""
    text = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\ndata:\n  a: Zm9v\n  # c{brk}  b: aHVudGVyMg==\n"
    assert [s.key for s in manifest.parse(text).slots] == ["a", "b"]
    out = ops.encrypt(ops.Source(text, None), keyed, ["local:t"])
    assert "aHVudGVyMg==" not in out
    assert checker.plaintext_values(manifest.parse(out), "f") == []
    plain, _ = ops.decrypt(ops.Source(out, None), keyed)
    assert envelope.plain_values(manifest.parse(plain)) == envelope.plain_values(manifest.parse(text))


@st.composite
def plain_stream_with_hidden_line(draw: st.DrawFn) -> str:
    """A file entirely inside the scanner's subset except one own-line comment that, after a YAML 1.1 line
    break, holds a data/stringData entry (or a `kind:`/`data:` line) PyYAML reads as YAML."""
    indent = draw(st.sampled_from([2, 4]))
    pad = " " * indent
    section = draw(st.sampled_from(["data", "stringData"]))
    keys = draw(st.lists(st.sampled_from(["a", "b", "password", "tls.crt"]), min_size=1, max_size=3, unique=True))
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"{pad}name: s", f"{section}:"]
    lines += [f"{pad}{k}: aGVsbG8=" for k in keys]
    brk = draw(st.sampled_from(["\x85", "\u2028", "\u2029"]))
    hidden = draw(st.sampled_from([f"{pad}hidden: c2VjcmV0", f"{pad}# twice{brk}{pad}hidden: c2VjcmV0"]))
    at = draw(st.integers(5, len(lines)))
    lines.insert(at, f"{pad}# note{brk}{hidden}")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_stream_with_hidden_line())
def test_a_line_hidden_after_a_unicode_break_never_stays_plaintext(keyed: SecretsSettings, text: str) -> None:
    expected = _reference(text, keyed)
    assert expected is not None and ("hidden" in [k for _, _, k in expected[0]])
    out = ops.encrypt(ops.Source(text, None), keyed, ["local:t"])
    assert "c2VjcmV0" not in out
    sealed = manifest.parse(out)
    assert checker.plaintext_values(sealed, "f") == [], out
    assert [(s.secret, s.section, s.key) for s in sealed.slots] == expected[0], out
