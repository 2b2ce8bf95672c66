"""Fixtures for the recipient-key backends: a real GnuPG keyring, moto_server for AWS KMS, the Cloud KMS stand-in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gpg import gpg_home  # noqa: F401 - session fixture
from tests.support.moto import moto_server  # noqa: F401 - session fixture


@pytest.fixture
def secrets_settings() -> Any:
    """`secrets_settings(gnupg_home=..., kms_timeout_seconds=...)` -> SecretsSettings."""
    from kagiya.secrets.settings import SecretsSettings

    def make(**fields: Any) -> SecretsSettings:
        fields.setdefault("kms_timeout_seconds", 5.0)
        return SecretsSettings(**fields)

    return make


GCP_KEY = "projects/kagiya-test/locations/global/keyRings/ring/cryptoKeys/dek"
GCP_OTHER_KEY = "projects/kagiya-test/locations/global/keyRings/ring/cryptoKeys/other"


@pytest.fixture(scope="session")
def cloudkms_session() -> Any:
    from tests.standins.cloudkms import CloudKms

    with CloudKms() as kms:
        kms.create_key(GCP_KEY)
        kms.create_key(GCP_OTHER_KEY)
        yield kms


@pytest.fixture
def cloudkms(cloudkms_session: Any) -> Any:
    """The Cloud KMS stand-in with keys GCP_KEY and GCP_OTHER_KEY, its failure knobs reset for each test."""
    cloudkms_session.reset()
    yield cloudkms_session
    cloudkms_session.reset()


@pytest.fixture(scope="session")
def aws_keys(moto_server: Any) -> dict[str, str]:  # noqa: F811 - the imported fixture
    """Two keys in eu-west-1 (`key`, `other`), and an alias ARN (`alias`) for `key`'s twin in us-east-2."""
    return {
        "key": moto_server.create_kms_key("eu-west-1"),
        "other": moto_server.create_kms_key("eu-west-1"),
        "alias": moto_server.create_kms_key("us-east-2", alias="kagiya-test"),
    }
