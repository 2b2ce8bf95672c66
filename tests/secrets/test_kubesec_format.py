"""The kubesec value, padding, trailer and MAC format (specs/kubesec-format.md)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kagiya.errors import CryptoError
from kagiya.secrets import kubesec
from kagiya.secrets.keys.base import REGISTRY

VECTOR = "ZHNaYVQ=.ZmZmZmZmZmZmZmZm.pcgqz0hb478fIRa/buj8CA=="


def test_kubesec_unit_test_vector_encodes_exactly() -> None:
    aead = AESGCM(b"f" * 32)
    sealed = aead.encrypt(b"f" * 12, b"VALUE", b"KEY")  # kubesec's own test applies no padding
    assert kubesec.EncryptedValue(b"f" * 12, sealed[:-16], sealed[-16:]).encode() == VECTOR
    assert kubesec.decrypt_value(aead, "KEY", VECTOR) == "VALUE"


def test_vector_fails_under_another_key_name() -> None:
    with pytest.raises(CryptoError, match="'password'"):
        kubesec.decrypt_value(AESGCM(b"f" * 32), "password", VECTOR)


def test_padding_to_48_and_empty_value_has_no_ciphertext() -> None:
    aead = AESGCM(b"k" * 32)
    assert kubesec.pad(b"") == b""
    assert len(kubesec.pad(b"x")) == 48 and len(kubesec.pad(b"x" * 48)) == 48 and len(kubesec.pad(b"x" * 49)) == 96
    empty = kubesec.encrypt_value(aead, "empty", "")
    assert empty.count(".") == 1 and kubesec.VALUE_RE.match(empty)
    assert kubesec.decrypt_value(aead, "empty", empty) == ""
    long = kubesec.encrypt_value(aead, "k", "a" * 50)
    assert len(kubesec.parse_value(long, "k").ciphertext) == 96
    assert kubesec.decrypt_value(aead, "k", long) == "a" * 50


def test_same_iv_reproduces_the_same_line() -> None:
    aead = AESGCM(b"k" * 32)
    line = kubesec.encrypt_value(aead, "k", "v")
    iv = kubesec.parse_value(line, "k").iv
    assert kubesec.encrypt_value(aead, "k", "v", iv) == line


def test_mac_input_order_matches_kubesec() -> None:
    aad = kubesec.mac_input([([("b", "2"), ("a", "1")], [("z", "s")])], ["FPR1", "proj/key"])
    assert aad == b"a1b2zsFPR1proj/key"


def test_mac_round_trip_and_tamper() -> None:
    aead = AESGCM(b"k" * 32)
    mac = kubesec.make_mac(aead, b"abc")
    assert kubesec.verify_mac(aead, b"abc", mac)
    assert not kubesec.verify_mac(aead, b"abd", mac)
    assert not kubesec.verify_mac(aead, b"abc", "garbage")


def test_trailer_parse_render_crlf_and_arn_colons() -> None:
    blob = "QUJD"
    text = (f"# kubesec:v:3\r\n# kubesec:aws:arn:aws:kms:eu-west-1:123456789012:key/abc:{blob}\r\n"
            "# kubesec:mac:AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA==\r\n")
    t = kubesec.parse_trailer(text, REGISTRY)
    assert t.version == 3 and t.recipients[0].id == "arn:aws:kms:eu-west-1:123456789012:key/abc"
    assert t.recipients[0].blob == b"ABC"
    assert t.render("\r\n") == text


@pytest.mark.parametrize(("text", "message"), [
    ("# kubesec:v:9\n# kubesec:local:a:QUJD\n", "version 9"),
    ("# kubesec:v:x\n", "bad version"),
    ("# kubesec:v:4\n", "no recipients"),
    ("# kubesec:v:4\n# kubesec:local:a:QUJD\n", "no mac line"),
    ("# kubesec:v:4\n# kubesec:vault:a:QUJD\n# kubesec:mac:x\n", "unknown recipient type 'vault'"),
    ("# kubesec:v:4\n# kubesec:pgp:ABCDEF\n", "truncated pgp"),
    ("# kubesec:v:4\n# kubesec:local:a:Q!JD\n# kubesec:mac:x\n", "not valid base64"),
    ("# kubesec:v:4\n# kubesec:local:a:QUJD\nkey: value\n", "unexpected content"),
])
def test_bad_trailers(text: str, message: str) -> None:
    with pytest.raises(kubesec.FormatError, match=message):
        kubesec.parse_trailer(text, REGISTRY)


def test_versions_1_and_2_need_no_mac() -> None:
    for v in (1, 2):
        assert kubesec.parse_trailer(f"# kubesec:v:{v}\n# kubesec:local:a:QUJD\n", REGISTRY).mac is None
