"""gcp: Cloud KMS recipient keys through the real google-cloud-kms client against the REST stand-in."""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import pytest

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import KeyUnavailable, open_key
from tests.secrets_keys.conftest import GCP_KEY, GCP_OTHER_KEY
from tests.standins.cloudkms import crc32c

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(cloudkms: Any, secrets_settings: Any) -> Any:
    return secrets_settings(gcp_kms_endpoint=cloudkms.url, kms_timeout_seconds=2.0)


def test_wrap_then_unwrap(settings: Any, cloudkms: Any) -> None:
    key = open_key(f"gcp:{GCP_KEY}", settings)
    dek = os.urandom(32)
    blob = key.wrap(dek)
    assert dek not in blob
    assert key.unwrap(blob) == dek
    assert key.uri == f"gcp:{GCP_KEY}" and key.id == GCP_KEY


def test_checksums_are_sent_both_ways(settings: Any, cloudkms: Any) -> None:
    key = open_key(f"gcp:{GCP_KEY}", settings)
    dek = os.urandom(32)
    blob = key.wrap(dek)
    key.unwrap(blob)
    (enc_method, enc_name, enc), (dec_method, dec_name, dec) = cloudkms.calls
    assert (enc_method, enc_name, dec_method, dec_name) == ("encrypt", GCP_KEY, "decrypt", GCP_KEY)
    assert base64.b64decode(enc["plaintext"]) == dek and int(enc["plaintextCrc32c"]) == crc32c(dek)
    assert base64.b64decode(dec["ciphertext"]) == blob and int(dec["ciphertextCrc32c"]) == crc32c(blob)
    assert "additionalAuthenticatedData" not in enc  # kubesec sends none


def test_still_unwraps_after_the_cloud_kms_key_rotates(settings: Any, cloudkms: Any) -> None:
    name = cloudkms.create_key(GCP_KEY.replace("/dek", "/rotating"))
    key = open_key(f"gcp:{name}", settings)
    dek = os.urandom(32)
    old_blob = key.wrap(dek)
    cloudkms.rotate(name)
    assert key.unwrap(old_blob) == dek
    assert key.wrap(dek) != old_blob


@pytest.mark.parametrize("corrupt", ["ciphertext", "unverified"])
def test_encrypt_response_damaged_in_transit_is_refused(settings: Any, cloudkms: Any, corrupt: str) -> None:
    cloudkms.corrupt = corrupt
    with pytest.raises(KeyUnavailable, match="checksum|damaged in transit"):
        open_key(f"gcp:{GCP_KEY}", settings).wrap(os.urandom(32))


def test_decrypt_response_damaged_in_transit_is_refused(settings: Any, cloudkms: Any) -> None:
    key = open_key(f"gcp:{GCP_KEY}", settings)
    blob = key.wrap(os.urandom(32))
    cloudkms.corrupt = "plaintext"
    with pytest.raises(KeyUnavailable, match="damaged in transit"):
        key.unwrap(blob)


def test_blob_of_another_key_is_a_crypto_error(settings: Any) -> None:
    blob = open_key(f"gcp:{GCP_OTHER_KEY}", settings).wrap(os.urandom(32))
    with pytest.raises(CryptoError, match="another key"):
        open_key(f"gcp:{GCP_KEY}", settings).unwrap(blob)


def test_unknown_key_and_denied_key_are_unavailable(settings: Any, cloudkms: Any) -> None:
    with pytest.raises(KeyUnavailable, match="does not exist"):
        open_key(f"gcp:{GCP_KEY}-missing", settings).wrap(os.urandom(32))
    cloudkms.denied.add(GCP_KEY)
    with pytest.raises(KeyUnavailable, match="no permission to encrypt"):
        open_key(f"gcp:{GCP_KEY}", settings).wrap(os.urandom(32))


@pytest.mark.parametrize(
    "bad",
    [
        "projects/p/locations/global/keyRings/r",
        "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "arn:aws:kms:us-east-1:1:key/x",
        "projects//locations/global/keyRings/r/cryptoKeys/k",
    ],
)
def test_key_names_are_validated(settings: Any, bad: str) -> None:
    with pytest.raises(KeyUnavailable, match="must be a Cloud KMS key name"):
        open_key(f"gcp:{bad}", settings)


def test_answers_503_within_the_timeout_without_retrying_for_a_minute(settings: Any, cloudkms: Any) -> None:
    cloudkms.fail_status = 503
    started = time.monotonic()
    with pytest.raises(KeyUnavailable, match="Cloud KMS is unavailable"):
        open_key(f"gcp:{GCP_KEY}", settings).wrap(os.urandom(32))
    assert time.monotonic() - started < 1.5
    assert len(cloudkms.calls) == 1


def test_slow_cloud_kms_times_out(settings: Any, cloudkms: Any) -> None:
    cloudkms.delay = 4.0
    started = time.monotonic()
    with pytest.raises(KeyUnavailable, match="did not answer within 2s"):
        open_key(f"gcp:{GCP_KEY}", settings).wrap(os.urandom(32))
    assert time.monotonic() - started < 3.5


def test_anonymous_credentials_only_for_a_loopback_http_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real endpoint uses Application Default Credentials; with none configured, the error says how to fix it."""
    from kagiya.secrets.keys import gcpkms

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")
    gcpkms._client.cache_clear()
    key = gcpkms.open_key(GCP_KEY, gcpkms.SecretsSettings(gcp_kms_endpoint="https://cloudkms.invalid"))
    with pytest.raises(KeyUnavailable, match="credentials"):
        key.wrap(os.urandom(32))
    gcpkms._client.cache_clear()


@pytest.mark.parametrize("endpoint", ["http://kms.example.com", "kms.example.com:443", "ftp://127.0.0.1"])
def test_plain_http_endpoint_only_on_loopback(secrets_settings: Any, endpoint: str) -> None:
    """The data key travels in the request body, so it never goes over plain http to another machine."""
    with pytest.raises(KeyUnavailable, match="must be an https:// URL"):
        open_key(f"gcp:{GCP_KEY}", secrets_settings(gcp_kms_endpoint=endpoint))
    assert open_key(f"gcp:{GCP_KEY}", secrets_settings(gcp_kms_endpoint="https://kms.example.com")).id
