"""Settings section `credentials:` (minting and serving pod credentials: issuers, cache, metadata endpoints)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CredentialSettings:
    #: AWS STS endpoint URL (moto_server in tests); empty means the regional default.
    sts_endpoint: str = ""
