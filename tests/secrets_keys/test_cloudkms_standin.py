"""The Cloud KMS stand-in answers the real google-cloud-kms client the way Cloud KMS does (so the gcp tests mean
something): checksums are checked when sent, errors carry the right HTTP status, decrypt finds the version."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.secrets_keys.conftest import GCP_KEY
from tests.standins.cloudkms import crc32c

pytestmark = pytest.mark.integration


@pytest.fixture
def client(cloudkms: Any) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import kms

    return kms.KeyManagementServiceClient(
        transport="rest", client_options={"api_endpoint": cloudkms.url}, credentials=AnonymousCredentials()
    )


def test_round_trip_reports_version_and_checksums(client: Any) -> None:
    data = os.urandom(32)
    enc = client.encrypt(request={"name": GCP_KEY, "plaintext": data, "plaintext_crc32c": crc32c(data)}, retry=None)
    assert enc.name == f"{GCP_KEY}/cryptoKeyVersions/1"
    assert enc.verified_plaintext_crc32c and enc.ciphertext_crc32c == crc32c(enc.ciphertext)
    dec = client.decrypt(request={"name": GCP_KEY, "ciphertext": enc.ciphertext}, retry=None)
    assert dec.plaintext == data and dec.plaintext_crc32c == crc32c(data) and dec.used_primary


def test_without_a_checksum_nothing_is_claimed_verified(client: Any) -> None:
    enc = client.encrypt(request={"name": GCP_KEY, "plaintext": b"x" * 32}, retry=None)
    assert not enc.verified_plaintext_crc32c


def test_wrong_checksums_are_400(client: Any) -> None:
    from google.api_core import exceptions

    data = os.urandom(32)
    with pytest.raises(exceptions.BadRequest, match="plaintext_crc32c"):
        client.encrypt(request={"name": GCP_KEY, "plaintext": data, "plaintext_crc32c": crc32c(data) ^ 1}, retry=None)
    blob = client.encrypt(request={"name": GCP_KEY, "plaintext": data}, retry=None).ciphertext
    with pytest.raises(exceptions.BadRequest, match="ciphertext_crc32c"):
        client.decrypt(request={"name": GCP_KEY, "ciphertext": blob, "ciphertext_crc32c": crc32c(blob) ^ 1}, retry=None)


def test_errors_have_the_services_statuses(client: Any, cloudkms: Any) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.NotFound):
        client.encrypt(request={"name": GCP_KEY + "x", "plaintext": b"x"}, retry=None)
    with pytest.raises(exceptions.BadRequest, match="correct CryptoKey"):
        client.decrypt(request={"name": GCP_KEY, "ciphertext": b"x" * 40}, retry=None)
    cloudkms.denied.add(GCP_KEY)
    with pytest.raises(exceptions.Forbidden):
        client.encrypt(request={"name": GCP_KEY, "plaintext": b"x"}, retry=None)
