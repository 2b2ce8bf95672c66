"""Hypothesis properties: arbitrary key names and values round-trip; any single-byte tamper in a value or the
MAC is detected; re-encrypting without changes is byte-identical."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagiya.errors import KagiyaError
from kagiya.secrets import envelope, manifest
from kagiya.secrets.keys import local
from kagiya.secrets.settings import SecretsSettings

KEYS = st.from_regex(r"\A[-._a-zA-Z0-9]{1,30}\Z")
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=120)
B64 = st.binary(max_size=80).map(lambda b: __import__("base64").b64encode(b).decode())
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def sett(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretsSettings]:
    s = SecretsSettings(keyring=str(tmp_path_factory.mktemp("kr") / "keyring"))
    local.generate(s, "default")
    yield s


def seal_text(text: str, s: SecretsSettings) -> str:
    m = manifest.parse(text)
    return envelope.seal(m, envelope.plain_values(m), ["local:default"], s)


def open_text(text: str, s: SecretsSettings) -> envelope.Opened:
    return envelope.open_manifest(manifest.parse(text), s)


def manifest_text(data: dict[str, str], string_data: dict[str, str]) -> str:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p"}}
    if data:
        doc["data"] = data
    if string_data:
        doc["stringData"] = string_data
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@PROFILE
@given(data=st.dictionaries(KEYS, B64, max_size=5), string_data=st.dictionaries(KEYS, VALUES, max_size=5))
def test_round_trip_any_names_and_values(sett: SecretsSettings, data: dict[str, str],
                                         string_data: dict[str, str]) -> None:
    text = manifest_text(data, string_data)
    sealed = seal_text(text, sett)
    for line in sealed.split("# kubesec:v:")[0].splitlines():  # no plaintext value survives in the body
        for value in [*data.values(), *string_data.values()]:
            if len(value) > 12:
                assert value not in line
    opened = open_text(sealed, sett)
    plain = yaml.safe_load(envelope.decrypted_text(opened))
    # compare with what a YAML reader sees in the input: PyYAML's emitter mangles a few characters (NEL)
    expected = yaml.safe_load(text)
    assert plain.get("data", {}) == expected.get("data", {}) == data
    assert plain.get("stringData", {}) == expected.get("stringData", {})


@PROFILE
@given(data=st.dictionaries(KEYS, B64, max_size=4), string_data=st.dictionaries(KEYS, VALUES, max_size=4))
def test_no_change_reencrypt_is_byte_identical(sett: SecretsSettings, data: dict[str, str],
                                               string_data: dict[str, str]) -> None:
    sealed = seal_text(manifest_text(data, string_data), sett)
    opened = open_text(sealed, sett)
    again = envelope.seal(opened.manifest, opened.plaintexts, opened.recipients, sett, previous=opened)
    assert again == sealed


@pytest.fixture(scope="module")
def sealed_sample(sett: SecretsSettings) -> str:
    return seal_text(manifest_text({"token": "dG9rZW4tMTIzNDU2"}, {"password": "correct horse battery staple"}), sett)


def tamper_positions(text: str) -> list[int]:
    """Every character position inside an encrypted value, and every character of the trailer (version,
    recipient and MAC lines) except the line breaks between them."""
    m = manifest.parse(text)
    positions = [i for slot in m.slots for i in range(slot.start, slot.end)]
    trailer = text.index("# kubesec:v:")
    positions += [i for i in range(trailer, len(text)) if text[i] != "\n"]
    return positions


@settings(max_examples=200, deadline=None)
@given(pick=st.integers(min_value=0), replacement=st.characters(min_codepoint=9, max_codepoint=126))
def test_any_single_byte_tamper_is_detected(sett: SecretsSettings, sealed_sample: str, pick: int,
                                            replacement: str) -> None:
    positions = tamper_positions(sealed_sample)
    i = positions[pick % len(positions)]
    if sealed_sample[i] == replacement:
        replacement = "A" if replacement != "A" else "B"
    tampered = sealed_sample[:i] + replacement + sealed_sample[i + 1:]
    with pytest.raises(KagiyaError):
        open_text(tampered, sett)


def test_tamper_positions_cover_values_and_mac(sealed_sample: str, tmp_path: Path) -> None:
    positions = tamper_positions(sealed_sample)
    assert len(positions) > 64 + 16 + 24 + 40
    version = sealed_sample.index("# kubesec:v:4") + len("# kubesec:v:")
    recipient = sealed_sample.index("# kagiya:local:default:")
    assert {version, version - 1, recipient, recipient + len("# kagiya:local:d")} <= set(positions)
    del tmp_path


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_lowered_version_is_detected(sett: SecretsSettings, sealed_sample: str, version: str) -> None:
    with pytest.raises(KagiyaError, match="version|MAC"):
        open_text(sealed_sample.replace("# kubesec:v:4", f"# kubesec:v:{version}"), sett)


PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='"\\'), max_size=40)
PLAIN_WORD = st.from_regex(r"\Av[a-z0-9]{0,20}\Z")


@st.composite
def styled_entries(draw: st.DrawFn) -> list[str]:
    """stringData lines in every quoting style a person writes, with comments between them."""
    lines = []
    for key in draw(st.lists(KEYS, min_size=1, max_size=6, unique=True)):
        style = draw(st.sampled_from(["plain", "single", "double"]))
        if style == "plain":
            value = draw(PLAIN_WORD)
        elif style == "single":
            value = "'" + draw(PRINTABLE).replace("'", "''") + "'"
        else:
            value = '"' + draw(PRINTABLE) + '"'
        comment = draw(st.sampled_from(["", "  # note", "    #x"]))
        lines.append(f"  '{key}': {value}{comment}")
        if draw(st.booleans()):
            lines.append("  # a comment line")
    return lines


@PROFILE
@given(entries=styled_entries(), crlf=st.booleans())
def test_layout_round_trip_is_byte_identical(sett: SecretsSettings, entries: list[str], crlf: bool) -> None:
    text = ("# leading comment\napiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n---\nkind: Secret\n"
            "metadata:\n  name: x   # trailing\nstringData:\n" + "\n".join(entries) + "\n---\nkind: Other\n")
    if crlf:
        text = text.replace("\n", "\r\n")
    sealed = seal_text(text, sett)
    opened = open_text(sealed, sett)
    assert envelope.decrypted_text(opened) == text
    changed = [a for a, b in zip(text.splitlines(), sealed.splitlines(), strict=False) if a != b]
    assert all(line.startswith("  '") for line in changed)  # only value lines differ before the trailer
