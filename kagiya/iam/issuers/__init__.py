"""Credential issuers, one module per cloud behind `base.Issuer`; the module name is the registry key.

Imported lazily: `issuer_for("aws", settings)` loads boto3 only when an AWS credential is first needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kagiya.errors import ConfigError

if TYPE_CHECKING:
    from kagiya.iam.credential_settings import CredentialSettings
    from kagiya.iam.issuers.base import Issuer

#: cloud -> "module:Class".
REGISTRY: dict[str, str] = {
    "aws": "kagiya.iam.issuers.aws:AwsIssuer",
    "gcp": "kagiya.iam.issuers.gcp:GcpIssuer",
}


def issuer_for(cloud: str, settings: CredentialSettings) -> Issuer:
    """A new issuer for `cloud`; raises ConfigError for a cloud kagiya cannot mint credentials for."""
    try:
        target = REGISTRY[cloud]
    except KeyError:
        raise ConfigError(f"no credential issuer for cloud {cloud!r} (known: {', '.join(sorted(REGISTRY))})") from None
    module, _, attr = target.partition(":")
    cls: Any = getattr(importlib.import_module(module), attr)
    return cls(settings)
