"""Envelope rules: old versions without a MAC, several Secrets under one trailer, DEK reuse only when allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kagiya.errors import CryptoError
from kagiya.secrets import envelope, manifest

TWO = ("kind: Secret\nmetadata:\n  name: a\nstringData:\n  pw: alpha\n---\n"
       "kind: Secret\nmetadata:\n  name: b\nstringData:\n  pw: bravo\n")


def seal(text: str, s: Any, recipients: tuple[str, ...] = ("local:k",)) -> str:
    m = manifest.parse(text)
    return envelope.seal(m, envelope.plain_values(m), list(recipients), s)


@pytest.fixture
def s(sset: Any) -> Any:
    from kagiya.secrets.keys import local

    settings = sset()
    local.generate(settings, "k")
    return settings


def test_version_2_file_without_mac_is_read_and_upgraded(s: Any) -> None:
    text = seal(TWO, s)
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith("# kubesec:mac:")]
    v2 = "".join(lines).replace("# kubesec:v:4", "# kubesec:v:2")
    with pytest.raises(CryptoError, match="no MAC.*--allow-unauthenticated"):
        envelope.open_manifest(manifest.parse(v2), s)
    opened = envelope.open_manifest(manifest.parse(v2), s, allow_unauthenticated=True)
    assert envelope.decrypted_text(opened) == TWO
    again = envelope.seal(opened.manifest, opened.plaintexts, opened.recipients, s, previous=opened)
    assert "# kubesec:v:4\n" in again and "# kubesec:mac:" in again
    assert again.split("# kubesec:v:")[0] == v2.split("# kubesec:v:")[0]  # value lines kept


def test_two_secrets_share_a_trailer_and_swaps_are_caught(s: Any) -> None:
    text = seal(TWO, s)
    assert text.count("# kubesec:v:") == 1
    opened = envelope.open_manifest(manifest.parse(text), s)
    assert envelope.decrypted_text(opened) == TWO
    lines = text.splitlines(keepends=True)
    i, j = [n for n, ln in enumerate(lines) if ln.startswith("  pw: ")]
    lines[i], lines[j] = lines[j], lines[i]  # same key name, so each value still authenticates on its own
    with pytest.raises(CryptoError, match="MAC check failed"):
        envelope.open_manifest(manifest.parse("".join(lines)), s)


def test_rotation_and_removal_make_a_new_dek(s: Any) -> None:
    from kagiya.secrets.keys import local

    local.generate(s, "k2")
    opened = envelope.open_manifest(manifest.parse(seal(TWO, s, ("local:k", "local:k2"))), s)
    same = envelope.seal(opened.manifest, opened.plaintexts, ["local:k", "local:k2"], s, previous=opened)
    assert envelope.open_manifest(manifest.parse(same), s).dek == opened.dek
    for recipients, rotate in ((["local:k"], False), (["local:k", "local:k2"], True)):
        text = envelope.seal(opened.manifest, opened.plaintexts, recipients, s, previous=opened, rotate=rotate)
        assert envelope.open_manifest(manifest.parse(text), s).dek != opened.dek


def test_recipient_order_is_kubesecs() -> None:
    uris = ["local:x", "aws:arn:aws:kms:eu-west-1:123456789012:key/a", "pgp:AB", "gcp:projects/p/k", "pgp:CD"]
    assert envelope.order_recipients(uris) == ["pgp:AB", "pgp:CD", "aws:arn:aws:kms:eu-west-1:123456789012:key/a",
                                                "gcp:projects/p/k", "local:x"]


def test_no_secret_and_anchors_are_refused(tmp_path: Path) -> None:
    with pytest.raises(manifest.ManifestError, match="anchor"):
        manifest.parse("kind: Secret\nstringData:\n  a: &x v\n  b: *x\n")
    assert manifest.parse("kind: ConfigMap\ndata:\n  a: b\n").secrets == []
    del tmp_path
