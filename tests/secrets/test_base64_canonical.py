"""Only the canonical base64 spelling of a value, IV, tag or wrapped key is accepted (a stray low bit in the last
group would otherwise let a changed character through unnoticed); checked without re-encoding whole values."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kagiya.secrets.kubesec import FormatError, _unb64

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@given(st.binary(max_size=64), st.integers(min_value=0), st.sampled_from(ALPHABET))
def test_any_spelling_accepted_is_the_canonical_one(data: bytes, pick: int, char: str) -> None:
    text = base64.b64encode(data).decode()
    assert _unb64(text, "v") == data
    if not text:
        return
    i = pick % len(text.rstrip("="))
    changed = text[:i] + char + text[i + 1:]
    try:
        decoded = _unb64(changed, "v")
    except FormatError:
        return
    assert base64.b64encode(decoded).decode() == changed


def test_empty_and_garbage() -> None:
    assert _unb64("", "v") == b""
    for bad in ("QQ", "QR==", "QUJ=", "Q!==", "QUJD\n"):
        with pytest.raises(FormatError):
            _unb64(bad, "v")
