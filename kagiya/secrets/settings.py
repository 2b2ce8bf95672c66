"""Settings section `secrets:`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SecretsSettings:
    #: Local keyring file; default `${XDG_CONFIG_HOME:-~/.config}/kagiya/keyring`. Env KAGIYA_KEYRING too.
    keyring: str = field(default="", metadata={"env": "KAGIYA_KEYRING"})
