"""`aws:arn:aws:kms:REGION:ACCOUNT:key/ID` recipient keys: the data key encrypted by AWS KMS.

Spec: `docs/format.md`, "Trailer": KMS `Encrypt` of the raw DEK with no encryption context, region taken
from the ARN; the trailer base64-encodes the `CiphertextBlob`. Alias ARNs (`…:alias/NAME`) work too, as KMS accepts
them for both calls. On `Decrypt` we pass `KeyId`, so KMS refuses a blob made by a different key instead of
quietly decrypting it with whatever key the blob names.

botocore retries up to 5 times with backoff by default; a CLI must answer within `kms_timeout_seconds`, so a call
makes one attempt with connect and read timeouts of that length. The AWS SDK costs a few hundred ms to import: it
is imported only when a key is used (botocore alone, see `_client`), and one client is built per region/endpoint.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import DEK_BYTES, BadKeyName, KeyUnavailable, KeyUpstreamUnavailable, check_endpoint
from kagiya.secrets.settings import SecretsSettings

_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:kms:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):(?P<account>\d{12}):"
    r"(?:key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)$"
)
#: KMS ciphertext blobs are at most 6 KiB.
MAX_BLOB_BYTES = 6144

_BAD_BLOB = {"InvalidCiphertextException", "IncorrectKeyException"}
_NO_RIGHTS = {
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
    "ExpiredToken", "InvalidClientTokenId", "SignatureDoesNotMatch",
}
_NOT_USABLE = {"DisabledException", "KMSInvalidStateException", "InvalidKeyUsageException"}
#: KMS's own failures, worth retrying (AWS documents each as such).
_RETRYABLE = {"KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException", "ThrottlingException",
              "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "RequestTimeout"}


@functools.lru_cache(maxsize=16)
def _client(region: str, endpoint: str, timeout: float) -> Any:
    """A KMS client from botocore, the engine boto3 wraps: the same credential chain and wire calls, without
    importing boto3's resource layer and s3transfer (~50 ms of a CLI run)."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import NoCredentialsError

    session = botocore.session.Session()
    if session.get_credentials() is None:
        # Raised before caching, so credentials that appear later (a refreshed profile) are picked up.
        raise NoCredentialsError()
    config = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1, "mode": "standard"}
    )
    return session.create_client("kms", region_name=region, endpoint_url=endpoint or None, config=config)


@dataclass
class AwsKmsKey:
    """One AWS KMS symmetric key (or alias), named by its ARN."""

    id: str
    region: str
    settings: SecretsSettings
    scheme: str = field(default="aws", init=False)

    @property
    def uri(self) -> str:
        return f"aws:{self.id}"

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One KMS call within the deadline; every failure becomes a KagiyaError."""
        from botocore import exceptions as bexc

        timeout = self.settings.kms_timeout_seconds
        try:
            client = _client(self.region, self.settings.aws_kms_endpoint, timeout)
            return getattr(client, operation)(**params)
        except bexc.ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", "")) or "UnknownError"
            verb = "decrypt" if operation == "decrypt" else "encrypt"
            if code in _BAD_BLOB and operation == "decrypt":
                raise CryptoError(f"wrapped data key for aws:{self.id} is damaged or was made by another key") from None
            if code == "NotFoundException":
                raise KeyUnavailable(f"AWS KMS key aws:{self.id} does not exist") from None
            if code in _NO_RIGHTS:
                raise KeyUnavailable(f"no permission to {verb} with AWS KMS key aws:{self.id} ({code})") from None
            if code in _NOT_USABLE:
                raise KeyUnavailable(f"AWS KMS key aws:{self.id} cannot be used now ({code})") from None
            if code in _RETRYABLE or int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500:
                raise KeyUpstreamUnavailable(f"AWS KMS could not {verb} with aws:{self.id} now ({code})") from None
            raise KeyUnavailable(f"AWS KMS could not {verb} with aws:{self.id} ({code})") from None
        except (bexc.NoCredentialsError, bexc.PartialCredentialsError, bexc.CredentialRetrievalError):
            raise KeyUnavailable("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID…)") from None
        except (bexc.ConnectTimeoutError, bexc.ReadTimeoutError):
            raise KeyUpstreamUnavailable(f"AWS KMS did not answer within {timeout:g}s") from None
        except bexc.EndpointConnectionError:
            endpoint = self.settings.aws_kms_endpoint or f"kms.{self.region}.amazonaws.com"
            raise KeyUpstreamUnavailable(f"AWS KMS is unreachable at {endpoint}") from None
        except (bexc.BotoCoreError, OSError) as err:
            raise KeyUpstreamUnavailable(f"AWS KMS is unavailable ({type(err).__name__})") from None

    def wrap(self, dek: bytes) -> bytes:
        """The KMS `CiphertextBlob` of `dek` (no encryption context, as kubesec). Raises KeyUnavailable."""
        if len(dek) != DEK_BYTES:
            raise ValueError("a data key is 32 bytes")
        return bytes(self._call("encrypt", KeyId=self.id, Plaintext=dek)["CiphertextBlob"])

    def unwrap(self, blob: bytes) -> bytes:
        """The DEK. Raises KeyUnavailable (no rights, upstream down) or CryptoError (damaged / another key's)."""
        if not blob or len(blob) > MAX_BLOB_BYTES:
            raise CryptoError(f"wrapped data key for aws:{self.id} has an impossible length ({len(blob)} bytes)")
        plaintext = bytes(self._call("decrypt", CiphertextBlob=blob, KeyId=self.id)["Plaintext"])
        if len(plaintext) != DEK_BYTES:
            raise CryptoError(f"wrapped data key for aws:{self.id} does not hold a 32-byte data key")
        return plaintext


def open_key(key_id: str, settings: SecretsSettings) -> AwsKmsKey:
    """`aws:arn:aws:kms:REGION:ACCOUNT:key/ID` or `…:alias/NAME`; the region comes from the ARN."""
    arn = key_id.strip()
    match = _ARN.match(arn)
    if not match:
        raise BadKeyName(
            f"aws key {key_id!r} must be a KMS key or alias ARN: arn:aws:kms:REGION:ACCOUNT:key/ID"
        )
    check_endpoint(settings.aws_kms_endpoint, "secrets.aws_kms_endpoint")
    return AwsKmsKey(arn, match["region"], settings)
