"""Fixtures for the recipient-key backends: a real GnuPG keyring, moto_server for AWS KMS, the Cloud KMS stand-in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gpg import gpg_home  # noqa: F401 - session fixture


@pytest.fixture
def secrets_settings() -> Any:
    """`secrets_settings(gnupg_home=..., kms_timeout_seconds=...)` -> SecretsSettings."""
    from kagiya.secrets.settings import SecretsSettings

    def make(**fields: Any) -> SecretsSettings:
        fields.setdefault("kms_timeout_seconds", 5.0)
        return SecretsSettings(**fields)

    return make
