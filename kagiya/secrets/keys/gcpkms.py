"""`gcp:projects/P/locations/L/keyRings/R/cryptoKeys/K` recipient keys: the data key encrypted by Cloud KMS.

Spec: `docs/format.md`, "Trailer": kubesec sends the raw DEK to Cloud KMS `encrypt` and stores the
ciphertext bytes; the trailer base64-encodes them. We use the official `google-cloud-kms` client over REST and add
what Google recommends for end-to-end integrity: send `plaintext_crc32c` and check `verified_plaintext_crc32c`
and `ciphertext_crc32c` on encrypt, send `ciphertext_crc32c` and check `plaintext_crc32c` on decrypt. A checksum
mismatch means the bytes were damaged on the way, so it is reported as the upstream being unusable, not as the
file being damaged.

The client's default retry policy retries 503 for up to 60 s; a CLI must answer within `kms_timeout_seconds`, so
every call passes one deadline and no retry. `google.cloud.kms` costs ~1.2 s to import: it is imported only when
a key is used, and the client is built once per endpoint.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import DEK_BYTES, BadKeyName, KeyUnavailable, KeyUpstreamUnavailable, check_endpoint
from kagiya.secrets.settings import SecretsSettings

_NAME = re.compile(
    r"^projects/[^/\s]+/locations/[A-Za-z0-9_-]+/keyRings/[A-Za-z0-9_-]+/cryptoKeys/[A-Za-z0-9_-]+$"
)
#: Cloud KMS ciphertexts of a 32-byte DEK are ~100 bytes; the API itself refuses more than 64 KiB + overhead.
MAX_BLOB_BYTES = 64 * 1024 + 1024


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


@functools.lru_cache(maxsize=8)
def _client(endpoint: str) -> Any:
    """One KeyManagementServiceClient per endpoint (building one reads credentials and sets up a session)."""
    from google.cloud import kms

    options: dict[str, Any] = {}
    credentials = None
    if endpoint:
        options["api_endpoint"] = endpoint
        if urlsplit(endpoint).scheme == "http":
            # A stand-in or emulator on this machine (checked in open_key): never send Google credentials to it.
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
    return kms.KeyManagementServiceClient(transport="rest", client_options=options, credentials=credentials)


@dataclass
class GcpKmsKey:
    """One Cloud KMS symmetric CryptoKey; Cloud KMS picks the primary version for encrypt and finds the right
    version from the ciphertext for decrypt, so key rotation in Cloud KMS needs nothing from us."""

    id: str
    settings: SecretsSettings
    scheme: str = field(default="gcp", init=False)

    @property
    def uri(self) -> str:
        return f"gcp:{self.id}"

    def _call(self, method: str, request: dict[str, Any]) -> Any:
        """One API call with our deadline and no retries; every failure becomes a KagiyaError."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc
        from requests import exceptions as req_exc

        timeout = self.settings.kms_timeout_seconds
        try:
            client = _client(self.settings.gcp_kms_endpoint)
            return getattr(client, method)(request=request, retry=None, timeout=timeout)
        except (gexc.BadRequest, gexc.FailedPrecondition) as err:
            if method == "decrypt":
                raise CryptoError(f"wrapped data key for gcp:{self.id} is damaged or was made by another key") from None
            raise KeyUnavailable(f"Cloud KMS refused to encrypt with gcp:{self.id}: {_short(err)}") from None
        except gexc.NotFound:
            raise KeyUnavailable(f"Cloud KMS key gcp:{self.id} does not exist") from None
        except (gexc.PermissionDenied, gexc.Unauthenticated, gexc.Forbidden, gexc.Unauthorized):
            raise KeyUnavailable(f"no permission to {method} with Cloud KMS key gcp:{self.id}") from None
        except auth_exc.DefaultCredentialsError:
            raise KeyUnavailable(
                "no Google credentials found (run `gcloud auth application-default login` or set "
                "GOOGLE_APPLICATION_CREDENTIALS)"
            ) from None
        except auth_exc.GoogleAuthError as err:
            raise KeyUnavailable(f"Google credentials could not be used: {type(err).__name__}") from None
        except (req_exc.Timeout, gexc.DeadlineExceeded):
            raise KeyUpstreamUnavailable(f"Cloud KMS did not answer within {timeout:g}s") from None
        except req_exc.ConnectionError:
            raise KeyUpstreamUnavailable(f"Cloud KMS is unreachable at {_endpoint_name(self.settings)}") from None
        except (req_exc.RequestException, gexc.GoogleAPIError, OSError) as err:
            raise KeyUpstreamUnavailable(f"Cloud KMS is unavailable: {_short(err)}") from None

    def wrap(self, dek: bytes) -> bytes:
        """The Cloud KMS ciphertext of `dek`. Raises KeyUnavailable."""
        if len(dek) != DEK_BYTES:
            raise ValueError("a data key is 32 bytes")
        response = self._call("encrypt", {"name": self.id, "plaintext": dek, "plaintext_crc32c": _crc32c(dek)})
        if not response.verified_plaintext_crc32c:
            raise KeyUpstreamUnavailable(
                f"Cloud KMS did not verify the data key's checksum for gcp:{self.id}; try again")
        if _crc32c(response.ciphertext) != response.ciphertext_crc32c:
            raise KeyUpstreamUnavailable(
                f"the ciphertext from Cloud KMS for gcp:{self.id} was damaged in transit; try again")
        if not response.name.startswith(self.id + "/cryptoKeyVersions/"):
            raise KeyUnavailable(f"Cloud KMS answered for {response.name!r}, not gcp:{self.id}")
        return bytes(response.ciphertext)

    def unwrap(self, blob: bytes) -> bytes:
        """The DEK. Raises KeyUnavailable (no access, upstream down) or CryptoError (not a blob for this key)."""
        if not blob or len(blob) > MAX_BLOB_BYTES:
            raise CryptoError(f"wrapped data key for gcp:{self.id} has an impossible length ({len(blob)} bytes)")
        response = self._call("decrypt", {"name": self.id, "ciphertext": blob, "ciphertext_crc32c": _crc32c(blob)})
        plaintext = bytes(response.plaintext)
        if _crc32c(plaintext) != response.plaintext_crc32c:
            raise KeyUpstreamUnavailable(
                f"the data key from Cloud KMS for gcp:{self.id} was damaged in transit; try again")
        if len(plaintext) != DEK_BYTES:
            raise CryptoError(f"wrapped data key for gcp:{self.id} does not hold a 32-byte data key")
        return plaintext


def _short(err: BaseException) -> str:
    """The first line of an upstream error, bounded (upstream text never carries key material, but can be long);
    the client prefixes `POST <url>: `, which says nothing the key URI does not."""
    text = str(getattr(err, "message", "") or err).strip().splitlines()
    line = re.sub(r"^[A-Z]+ \S+: ", "", text[0]) if text else ""
    code = getattr(err, "code", None)
    prefix = f"HTTP {code}" if isinstance(code, int) else type(err).__name__
    return f"{prefix}: {line}"[:200] if line else prefix


def _endpoint_name(settings: SecretsSettings) -> str:
    return settings.gcp_kms_endpoint or "cloudkms.googleapis.com"


def open_key(key_id: str, settings: SecretsSettings) -> GcpKmsKey:
    """`gcp:projects/P/locations/L/keyRings/R/cryptoKeys/K` (a CryptoKey, not a CryptoKeyVersion)."""
    name = key_id.strip()
    if not _NAME.match(name):
        raise BadKeyName(
            f"gcp key {key_id!r} must be a Cloud KMS key name: projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )
    check_endpoint(settings.gcp_kms_endpoint, "secrets.gcp_kms_endpoint")
    return GcpKmsKey(name, settings)

