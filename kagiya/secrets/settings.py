"""Settings section `secrets:` (env `KAGIYA_SECRETS_<KEY>`; the keyring path also as `KAGIYA_KEYRING`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SecretsSettings:
    #: Local keyring file; empty means `${XDG_CONFIG_HOME:-~/.config}/kagiya/keyring`.
    keyring: str = field(default="", metadata={"env": "KAGIYA_KEYRING"})
    #: GnuPG home for pgp keys; empty means gpg's own default (`$GNUPGHOME` or `~/.gnupg`).
    gnupg_home: str = ""
    gpg_binary: str = "gpg"
    #: age identity file read first for `age:` keys; SOPS_AGE_KEY_FILE and sops' usual path are read after it.
    age_key_file: str = field(default="", metadata={"env": "KAGIYA_AGE_KEY_FILE"})
    #: Cloud KMS API endpoint (`http://127.0.0.1:PORT` for a stand-in); empty means Google's default.
    gcp_kms_endpoint: str = ""
    #: AWS KMS endpoint URL (moto_server in tests); empty means the region's default.
    aws_kms_endpoint: str = ""
    #: Timeout for each KMS / gpg call, in seconds.
    kms_timeout_seconds: float = 10.0
    #: Largest manifest accepted by the CLI and the HTTP API.
    max_file_bytes: int = 16 * 1024 * 1024
    #: Recipients the HTTP `POST /v1/secrets/encrypt` uses when the request names none.
    default_recipients: tuple[str, ...] = ()
    #: Groups whose members may call `POST /v1/secrets/decrypt`; empty means nobody may.
    decrypt_groups: tuple[str, ...] = ()
