"""Stand-in for Google Cloud KMS REST v1 (`cloudkms.googleapis.com`): symmetric encrypt and decrypt only.

Cloud KMS cannot run here, so this small Flask app speaks its wire protocol to the real `google-cloud-kms` client
(`transport="rest"`, `api_endpoint="http://127.0.0.1:PORT"`, `AnonymousCredentials()`); see
specs/test-infrastructure.md, "Stand-ins". Behaviour copied from the real service:

- `POST /v1/{cryptoKey or cryptoKeyVersion}:encrypt` with base64 `plaintext`, optional
  `additionalAuthenticatedData`, `plaintextCrc32c` and `additionalAuthenticatedDataCrc32c` (int64 as decimal
  strings). A checksum that does not match is a 400; a matching one is reported back as `verifiedPlaintextCrc32c`.
  The reply names the key *version* used and carries `ciphertextCrc32c`.
- `POST /v1/{cryptoKey}:decrypt` with `ciphertext` (+ `ciphertextCrc32c`, AAD): the version is read from the
  ciphertext, so a blob made by another key or damaged is a 400 `INVALID_ARGUMENT`; the reply carries
  `plaintextCrc32c` and `usedPrimary`.
- Unknown keys are 404 `NOT_FOUND`, keys listed in `denied` 403 `PERMISSION_DENIED`; errors use Google's JSON error
  body `{"error": {"code", "message", "status"}}`.

Knobs for failure tests: `delay` (seconds before every answer: a slow upstream), `fail_status` (answer every
request with that status, e.g. 503), `corrupt` (`"ciphertext"`: flip a ciphertext byte after computing its CRC,
as a bad network path would; `"plaintext"`: same for decrypt; `"unverified"`: claim the plaintext CRC was not
verified), and `stop()` (the port closes: upstream down). `calls` records each request's method and JSON body.

    with CloudKms() as kms:
        key = kms.create_key("projects/p/locations/global/keyRings/r/cryptoKeys/k")
        kms.rotate(key)     # new primary version; old ciphertexts still decrypt (usedPrimary false)
"""

from __future__ import annotations

import base64
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, jsonify, request

from tests.support.threaded import Serving, ThreadedServer

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
#: Cloud KMS limit on plaintext for symmetric encrypt.
MAX_PLAINTEXT = 64 * 1024
_MAGIC = b"\x0a\x24"  # an opaque prefix, so stand-in ciphertexts do not look like anything else


class _ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _CryptoKey:
    versions: list[bytes] = field(default_factory=list)
    primary: int = 1


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


class CloudKms(Serving):
    """Cloud KMS on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.keys: dict[str, _CryptoKey] = {}
        self.denied: set[str] = set()
        self.delay = 0.0
        self.fail_status = 0
        self.corrupt = ""
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.app = self._make_app()
        self._server = ThreadedServer(self.app, "cloudkms-standin")

    # --- keys -------------------------------------------------------------------------------------------------
    def create_key(self, name: str) -> str:
        with self._lock:
            self.keys[name] = _CryptoKey([AESGCM.generate_key(256)])
        return name

    def rotate(self, name: str) -> int:
        """A new primary version; returns its number."""
        with self._lock:
            key = self.keys[name]
            key.versions.append(AESGCM.generate_key(256))
            key.primary = len(key.versions)
            return key.primary

    def reset(self) -> None:
        self.denied.clear()
        self.delay, self.fail_status, self.corrupt = 0.0, 0, ""
        self.calls.clear()

    # --- the API ----------------------------------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("cloudkms-standin")

        @app.post("/v1/<path:target>")
        def call(target: str) -> Any:
            name, _, method = target.rpartition(":")
            body = request.get_json(force=True, silent=True)
            self.calls.append((method, name, body if isinstance(body, dict) else {}))
            if self.delay:
                time.sleep(self.delay)
            try:
                if self.fail_status:
                    raise _ApiError(self.fail_status, "The service is currently unavailable.")
                if not isinstance(body, dict):
                    raise _ApiError(400, "Invalid JSON payload received.")
                if method == "encrypt":
                    return jsonify(self._encrypt(name, body))
                if method == "decrypt":
                    return jsonify(self._decrypt(name, body))
                raise _ApiError(404, f"Method {method!r} not found.")
            except _ApiError as err:
                status = _STATUS.get(err.code, "UNKNOWN")
                return jsonify({"error": {"code": err.code, "message": err.message, "status": status}}), err.code

        return app

    def _lookup(self, name: str) -> _CryptoKey:
        parts = name.split("/")
        if len(parts) != 8 or parts[0::2] != ["projects", "locations", "keyRings", "cryptoKeys"]:
            raise _ApiError(400, f"Resource name [{name}] does not match any known type.")
        if name in self.denied:
            raise _ApiError(403, f"Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '{name}'"
                                 " (or it may not exist).")
        key = self.keys.get(name)
        if key is None:
            raise _ApiError(404, f"CryptoKey {name} not found.")
        return key

    @staticmethod
    def _field(body: dict[str, Any], name: str, *, required: bool = False) -> bytes:
        value = body.get(name)
        if value is None or value == "":
            if required:
                raise _ApiError(400, f"{name}: required field is missing.")
            return b""
        try:
            return base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise _ApiError(400, f"Invalid value at '{name}' (TYPE_BYTES), Base64 decoding failed.") from None

    @staticmethod
    def _check_crc(body: dict[str, Any], name: str, data: bytes, snake: str) -> bool:
        """As the real service: a checksum that is sent must match, else 400. Returns whether one was sent."""
        sent = body.get(name)
        if sent is None:
            return False
        try:
            value = int(sent)
        except (TypeError, ValueError):
            raise _ApiError(400, f"Invalid value at '{name}' (TYPE_INT64), {sent!r}") from None
        if value != crc32c(data):
            raise _ApiError(400, f"The checksum in field {snake}_crc32c did not match the data in field {snake}.")
        return True

    def _encrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        version_number = 0
        if "/cryptoKeyVersions/" in name:
            name, _, number = name.partition("/cryptoKeyVersions/")
            version_number = int(number) if number.isdigit() else -1
        key = self._lookup(name)
        version_number = version_number or key.primary
        if not 1 <= version_number <= len(key.versions):
            raise _ApiError(404, f"CryptoKeyVersion {name}/cryptoKeyVersions/{version_number} not found.")
        plaintext = self._field(body, "plaintext", required=True)
        aad = self._field(body, "additionalAuthenticatedData")
        if len(plaintext) > MAX_PLAINTEXT:
            raise _ApiError(400, f"The plaintext must be no larger than {MAX_PLAINTEXT} bytes.")
        verified_plaintext = self._check_crc(body, "plaintextCrc32c", plaintext, "plaintext")
        verified_aad = self._check_crc(body, "additionalAuthenticatedDataCrc32c", aad, "additional_authenticated_data")
        iv = os.urandom(12)
        sealed = AESGCM(key.versions[version_number - 1]).encrypt(iv, plaintext, name.encode() + b"\0" + aad)
        ciphertext = _MAGIC + struct.pack(">I", version_number) + iv + sealed
        checksum = crc32c(ciphertext)
        if self.corrupt == "ciphertext":
            ciphertext = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
        return {
            "name": f"{name}/cryptoKeyVersions/{version_number}",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "ciphertextCrc32c": str(checksum),
            "verifiedPlaintextCrc32c": verified_plaintext and self.corrupt != "unverified",
            "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
            "protectionLevel": 1,  # SOFTWARE
        }

    def _decrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._lookup(name)
        ciphertext = self._field(body, "ciphertext", required=True)
        aad = self._field(body, "additionalAuthenticatedData")
        self._check_crc(body, "ciphertextCrc32c", ciphertext, "ciphertext")
        self._check_crc(body, "additionalAuthenticatedDataCrc32c", aad, "additional_authenticated_data")
        invalid = _ApiError(400, "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
        if len(ciphertext) < len(_MAGIC) + 4 + 12 + 16 or not ciphertext.startswith(_MAGIC):
            raise invalid
        (version_number,) = struct.unpack(">I", ciphertext[2:6])
        if not 1 <= version_number <= len(key.versions):
            raise invalid
        try:
            plaintext = AESGCM(key.versions[version_number - 1]).decrypt(
                ciphertext[6:18], ciphertext[18:], name.encode() + b"\0" + aad
            )
        except InvalidTag:
            raise invalid from None
        checksum = crc32c(plaintext)
        if self.corrupt == "plaintext" and plaintext:
            plaintext = bytes([plaintext[0] ^ 1]) + plaintext[1:]
        return {
            "plaintext": base64.b64encode(plaintext).decode(),
            "plaintextCrc32c": str(checksum),
            "usedPrimary": version_number == key.primary,
            "protectionLevel": 1,
        }
