"""In a file with several Secrets (a kagiya extension), the MAC binds every value to its Secret (ordinal and
namespace/name) and its section, so moving a ciphertext line to another Secret or from data to stringData, or
renaming a Secret, is detected. Single-Secret files keep kubesec's MAC exactly (see test_interop)."""

from __future__ import annotations

import pytest

from kagiya.errors import CryptoError
from kagiya.secrets import envelope, kubesec, manifest
from kagiya.secrets.keys import local
from kagiya.secrets.settings import SecretsSettings

TWO = ("kind: Secret\nmetadata:\n  name: a\nstringData:\n  k: value-k\n---\n"
       "kind: Secret\nmetadata:\n  name: b\nstringData:\n  m: value-m\n")
DATA_MOVE = ("kind: Secret\nmetadata:\n  name: a\ndata:\n  k: dmFsdWU=\n---\n"
             "kind: Secret\nmetadata:\n  name: b\nstringData:\n  m: value-m\n")


@pytest.fixture
def sett(sset: object) -> SecretsSettings:
    s = sset()  # type: ignore[operator]
    local.generate(s, "default")
    return s


def seal(text: str, s: SecretsSettings) -> str:
    m = manifest.parse(text)
    return envelope.seal(m, envelope.plain_values(m), ["local:default"], s)


def open_text(text: str, s: SecretsSettings) -> envelope.Opened:
    return envelope.open_manifest(manifest.parse(text), s)


def test_value_moved_to_another_secret_is_detected(sett: SecretsSettings) -> None:
    sealed = seal(TWO, sett)
    open_text(sealed, sett)
    lines = sealed.split("\n")
    k_line = next(ln for ln in lines if ln.startswith("  k: "))
    # move `k` (same key name, so its own AAD still matches) from Secret a into Secret b
    moved = sealed.replace(k_line + "\n", "").replace("  name: b\nstringData:\n", f"  name: b\nstringData:\n{k_line}\n")
    assert manifest.parse(moved).secrets[1].section("stringData")[0][0] == "k"
    with pytest.raises(CryptoError, match="moved between Secrets"):
        open_text(moved, sett)


def test_value_moved_from_data_to_string_data_is_detected(sett: SecretsSettings) -> None:
    sealed = seal(DATA_MOVE, sett)
    moved = sealed.replace("  name: a\ndata:\n", "  name: a\nstringData:\n")
    assert moved != sealed
    with pytest.raises(CryptoError, match="MAC check failed"):
        open_text(moved, sett)


def test_renamed_secret_is_detected(sett: SecretsSettings) -> None:
    sealed = seal(TWO, sett)
    with pytest.raises(CryptoError, match="MAC check failed"):
        open_text(sealed.replace("name: b\n", "name: c\n"), sett)
    with pytest.raises(CryptoError, match="MAC check failed"):
        open_text(sealed.replace("name: b\n", "name: b\n  namespace: prod\n"), sett)


def test_multi_secret_reencrypt_is_stable(sett: SecretsSettings) -> None:
    sealed = seal(TWO, sett)
    opened = open_text(sealed, sett)
    assert envelope.seal(opened.manifest, opened.plaintexts, opened.recipients, sett, previous=opened) == sealed


def test_single_secret_mac_input_is_kubesecs() -> None:
    """One Secret: no tags, no separators, exactly kubesec's concatenation (interop depends on it)."""
    assert kubesec.mac_input([([("k", "v")], [("s", "t")])], ["R"], ["0:/a"]) == b"kvstR"
