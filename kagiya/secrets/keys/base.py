"""The recipient-key seam: every backend wraps and unwraps a file's 32-byte data key (DEK).

A key URI names the backend by scheme: `local:NAME`, `pgp:FINGERPRINT`, `gcp:projects/…/cryptoKeys/K`,
`aws:arn:aws:kms:REGION:ACCOUNT:key/ID`. The part after the scheme is the key's `id`: exactly what the kubesec
trailer line carries (`# kubesec:<scheme>:<id>:<base64 of wrap(dek)>`) and what the MAC covers.

Backends are imported lazily through `REGISTRY` so that `kagiya secrets` never loads boto3 or google.cloud
unless a file actually names such a key. Every backend applies its own timeout and turns library and upstream
errors into `KeyUnavailable` (we cannot use this key here: not in the keyring, no rights), its subclass
`KeyUpstreamUnavailable` (upstream down, slow or failing: retryable, HTTP 503) or `CryptoError` (the wrapped blob
is damaged or was not made for this key).
"""

from __future__ import annotations

import sys

from kagiya.errors import ExitCode, KagiyaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kagiya.secrets.keys.recipient import RecipientKey

#: scheme -> "module:factory"; the factory is `open_key(key_id: str, settings: SecretsSettings) -> RecipientKey`.
REGISTRY: dict[str, str] = {
    "local": "kagiya.secrets.keys.local:open_key",
    "pgp": "kagiya.secrets.keys.pgp:open_key",
    "gcp": "kagiya.secrets.keys.gcpkms:open_key",
    "aws": "kagiya.secrets.keys.awskms:open_key",
    "age": "kagiya.secrets.keys.age:open_key",
}

#: Schemes kubesec 0.9.2 itself understands; files using only other schemes cannot be opened by kubesec.
KUBESEC_SCHEMES = ("pgp", "gcp", "aws")
DEK_BYTES = 32


class KeyUnavailable(KagiyaError):
    """This key cannot be used here (not held, no permission, upstream unreachable)."""

    code = "KeyUnavailable"
    reason = "BadRequest"
    http_status = 400
    exit_code = ExitCode.CRYPTO


class BadKeyName(KeyUnavailable):
    """A key URI that names nothing usable as given: malformed, an unknown scheme, a short pgp id, a local key
    that is not in the keyring. A usage error on the command line (exit 2); when a file's own recipient line
    is the one that fails, opening the file reports it among the recipients that could not be used (exit 7)."""

    code = "BadKeyName"
    exit_code = ExitCode.USAGE


class KeyUpstreamUnavailable(KeyUnavailable):
    """The key's upstream (Cloud KMS, AWS KMS, gpg) timed out, could not be reached or failed on its side: worth
    retrying, so HTTP answers 503. Not holding a key or lacking permission stays `KeyUnavailable` (400)."""

    code = "KeyUpstreamUnavailable"
    reason = "ServiceUnavailable"
    http_status = 503
    exit_code = ExitCode.UPSTREAM


def __getattr__(name: str) -> object:
    """`RecipientKey` (keys/recipient.py), loaded on first use: it is a typing.Protocol, and importing typing
    costs ~2 ms of every `kagiya secrets decrypt` (issue 13)."""
    if name == "RecipientKey":
        from kagiya.secrets.keys.recipient import RecipientKey

        return RecipientKey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_endpoint(endpoint: str, setting: str) -> None:
    """Plain http only to this machine: the data key itself travels in the request body (KMS stand-ins,
    moto_server, LocalStack listen on loopback). Raises KeyUnavailable naming `setting`."""
    if not endpoint:
        return
    from urllib.parse import urlsplit

    from kagiya.config import is_loopback

    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise KeyUnavailable(
        f"{setting} {endpoint!r} must be an https:// URL (http:// only for 127.0.0.1/localhost stand-ins)"
    )


def split_uri(uri: str) -> tuple[str, str]:
    """`"aws:arn:aws:kms:…"` -> ("aws", "arn:aws:kms:…"); raises KeyUnavailable for an unknown scheme."""
    scheme, sep, key_id = uri.strip().partition(":")
    if not sep or not key_id:
        raise BadKeyName(f"key {uri!r} is not of the form SCHEME:ID (schemes: {', '.join(REGISTRY)})")
    if scheme not in REGISTRY:
        raise BadKeyName(f"unknown key type {scheme!r} in {uri!r} (known: {', '.join(REGISTRY)})")
    return scheme, key_id


def normalize_uri(uri: str) -> str:
    """The canonical spelling of a key URI, as its backend's `uri` would give it, without starting any backend:
    pgp fingerprints upper-case without spaces (as gpg prints and kubesec writes them), others stripped.
    Recipient lists are compared in this form, so `pgp:<lower-case fpr>` does not add a second line."""
    scheme, key_id = split_uri(uri)
    key_id = key_id.strip()
    if scheme == "pgp":
        key_id = key_id.replace(" ", "").upper()
    return f"{scheme}:{key_id}"


def open_key(uri: str, settings: object) -> RecipientKey:
    """The backend object for `uri`, built by its module's `open_key(key_id, settings)`."""
    scheme, key_id = split_uri(uri)
    module, _, attr = REGISTRY[scheme].partition(":")
    __import__(module)  # not importlib.import_module: importing importlib (and warnings) costs start-up time
    factory = getattr(sys.modules[module], attr)
    return factory(key_id, settings)  # type: ignore[no-any-return,unused-ignore]
