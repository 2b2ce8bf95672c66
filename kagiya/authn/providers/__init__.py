"""Identity providers behind one interface (`base.Provider`).

`REGISTRY` maps a provider type (Guard's names, used in client-certificate `O=` and URL paths) to the factory
`from_config(name: str, options: Mapping[str, Any]) -> Provider` in its module, imported only when configured.
Each module validates its own options with `kagiya.config.from_mapping(<its dataclass>, options, prefix)`,
so a bad provider section fails at start-up with the key named.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from kagiya.authn.providers.base import Provider
from kagiya.errors import ConfigError

REGISTRY: dict[str, str] = {
    "token-auth": "kagiya.authn.providers.tokenfile:from_config",
    "oidc": "kagiya.authn.providers.oidc:from_config",
    "google": "kagiya.authn.providers.google:from_config",
    "azure": "kagiya.authn.providers.azure:from_config",
    "github": "kagiya.authn.providers.github:from_config",
    "gitlab": "kagiya.authn.providers.gitlab:from_config",
    "ldap": "kagiya.authn.providers.ldap:from_config",
}


def build_provider(provider_type: str, name: str, options: Mapping[str, Any]) -> Provider:
    if provider_type not in REGISTRY:
        raise ConfigError(f"unknown authn provider type {provider_type!r} (known: {', '.join(REGISTRY)})")
    module, _, attr = REGISTRY[provider_type].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    return factory(name, options)
