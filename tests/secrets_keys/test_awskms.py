"""aws: AWS KMS recipient keys through boto3 against a real moto_server on loopback."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import KeyUnavailable, open_key
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(moto_server: Any, secrets_settings: Any) -> Any:
    return secrets_settings(aws_kms_endpoint=moto_server.url, kms_timeout_seconds=2.0)


def test_wrap_then_unwrap(settings: Any, aws_keys: dict[str, str]) -> None:
    key = open_key(f"aws:{aws_keys['key']}", settings)
    dek = os.urandom(32)
    blob = key.wrap(dek)
    assert dek not in blob
    assert key.unwrap(blob) == dek
    assert key.id == aws_keys["key"] and key.uri == f"aws:{aws_keys['key']}"


def test_region_comes_from_the_arn(settings: Any, aws_keys: dict[str, str], moto_server: Any) -> None:
    """The key lives in us-east-2 only: the call must go to that region (moto keeps regions apart)."""
    key = open_key(f"aws:{aws_keys['alias']}", settings)
    assert key.region == "us-east-2"  # type: ignore[attr-defined]
    dek = os.urandom(32)
    assert key.unwrap(key.wrap(dek)) == dek
    wrong_region = open_key("aws:" + aws_keys["alias"].replace("us-east-2", "eu-west-1"), settings)
    with pytest.raises(KeyUnavailable, match="does not exist"):
        wrong_region.wrap(dek)


def test_no_encryption_context_is_sent_as_kubesec(settings: Any, aws_keys: dict[str, str], moto_server: Any) -> None:
    """A blob we wrote opens with a plain KMS Decrypt (what kubesec calls), and vice versa."""
    kms = moto_server.client("kms", "eu-west-1")
    dek = os.urandom(32)
    blob = open_key(f"aws:{aws_keys['key']}", settings).wrap(dek)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == dek
    theirs = kms.encrypt(KeyId=aws_keys["key"], Plaintext=dek)["CiphertextBlob"]
    assert open_key(f"aws:{aws_keys['key']}", settings).unwrap(theirs) == dek


def test_blob_of_another_key_is_refused(settings: Any, aws_keys: dict[str, str]) -> None:
    """KeyId is passed on Decrypt. Real KMS answers IncorrectKeyException (CryptoError); moto answers
    AccessDeniedException (KeyUnavailable). Either way no data key comes back."""
    blob = open_key(f"aws:{aws_keys['other']}", settings).wrap(os.urandom(32))
    with pytest.raises((CryptoError, KeyUnavailable)):
        open_key(f"aws:{aws_keys['key']}", settings).unwrap(blob)


def test_damaged_blob_is_a_crypto_error(settings: Any, aws_keys: dict[str, str]) -> None:
    key = open_key(f"aws:{aws_keys['key']}", settings)
    blob = key.wrap(os.urandom(32))
    with pytest.raises(CryptoError, match="damaged"):
        key.unwrap(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(CryptoError, match="impossible length"):
        key.unwrap(b"")


def test_unknown_key_is_unavailable(settings: Any, aws_keys: dict[str, str]) -> None:
    missing = aws_keys["key"].rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyUnavailable, match="does not exist"):
        open_key(f"aws:{missing}", settings).wrap(os.urandom(32))


@pytest.mark.parametrize(
    "bad",
    [
        "arn:aws:kms:eu-west-1:123456789012",
        "arn:aws:s3:eu-west-1:123456789012:key/abc",
        "arn:aws:kms::123456789012:key/abc",
        "arn:aws:kms:eu-west-1:12345:key/abc",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "alias/foo",
    ],
)
def test_only_arns_are_accepted(settings: Any, bad: str) -> None:
    with pytest.raises(KeyUnavailable, match="must be a KMS key or alias ARN"):
        open_key(f"aws:{bad}", settings)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws-cn:kms:cn-north-1:123456789012:alias/team/app",
    ],
)
def test_other_partitions_parse(settings: Any, arn: str) -> None:
    assert open_key(f"aws:{arn}", settings).id == arn


def test_no_credentials_says_how_to_fix(
    secrets_settings: Any, aws_keys: dict[str, str], moto_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    settings = secrets_settings(aws_kms_endpoint=moto_server.url, kms_timeout_seconds=1.25)  # not a cached client
    with pytest.raises(KeyUnavailable, match="no AWS credentials"):
        open_key(f"aws:{aws_keys['key']}", settings).wrap(os.urandom(32))
    monkeypatch.undo()  # credentials appear: the same settings now work (no client without them was cached)
    assert len(open_key(f"aws:{aws_keys['key']}", settings).wrap(os.urandom(32))) > 32


def test_unreachable_endpoint_fails_fast(secrets_settings: Any, aws_keys: dict[str, str]) -> None:
    settings = secrets_settings(aws_kms_endpoint=f"http://127.0.0.1:{free_port()}", kms_timeout_seconds=2.0)
    started = time.monotonic()
    with pytest.raises(KeyUnavailable, match="unreachable"):
        open_key(f"aws:{aws_keys['key']}", settings).wrap(os.urandom(32))
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("endpoint", ["http://kms.example.com", "kms.example.com:443", "ftp://127.0.0.1"])
def test_plain_http_endpoint_only_on_loopback(secrets_settings: Any, aws_keys: dict[str, str], endpoint: str) -> None:
    """The data key travels in the request body, so it never goes over plain http to another machine."""
    with pytest.raises(KeyUnavailable, match="must be an https:// URL"):
        open_key(f"aws:{aws_keys['key']}", secrets_settings(aws_kms_endpoint=endpoint))
    assert open_key(f"aws:{aws_keys['key']}", secrets_settings(aws_kms_endpoint="https://kms.example.com")).id
