"""Errors as data: each carries a machine code, an HTTP status and a CLI exit status.

Views turn them into Kubernetes `Status` bodies; the CLI prints their message as one line on stderr.
Library and cloud-SDK exceptions are translated into these at the backend edge, so callers only ever
see a `KagiyaError` (or a bug).
"""

from __future__ import annotations

from enum import IntEnum

TYPE_CHECKING = False  # typing costs ~2 ms of the CLI's start-up; `Any` is only an annotation here
if TYPE_CHECKING:
    from typing import Any


class ExitCode(IntEnum):
    """CLI exit statuses. `check`-style commands use FINDINGS for "ran fine, found problems"."""

    OK = 0
    FINDINGS = 1
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    NOT_FOUND = 4
    DENIED = 5
    UPSTREAM = 6
    CRYPTO = 7


class KagiyaError(Exception):
    """Base of every error kagiya expects. `reason` is the Kubernetes `Status.reason`."""

    code: str = "InternalError"
    reason: str = "InternalError"
    http_status: int = 500
    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_status(self) -> dict[str, Any]:
        """The Kubernetes `Status` body for this error (metav1.Status)."""
        return status_body(self.http_status, self.reason, self.message, self.details)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Kubernetes-style failure `Status` object."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class BadRequest(KagiyaError):
    code = reason = "BadRequest"
    http_status = 400
    exit_code = ExitCode.USAGE


class Invalid(KagiyaError):
    """Well-formed input that breaks a schema or a rule (422, as the apiserver answers)."""

    code = reason = "Invalid"
    http_status = 422
    exit_code = ExitCode.USAGE


class Unauthorized(KagiyaError):
    code = reason = "Unauthorized"
    http_status = 401
    exit_code = ExitCode.DENIED


class Forbidden(KagiyaError):
    code = reason = "Forbidden"
    http_status = 403
    exit_code = ExitCode.DENIED


class NotFound(KagiyaError):
    code = reason = "NotFound"
    http_status = 404
    exit_code = ExitCode.NOT_FOUND


class Conflict(KagiyaError):
    code = reason = "Conflict"
    http_status = 409
    exit_code = ExitCode.ERROR


class PayloadTooLarge(KagiyaError):
    code = reason = "RequestEntityTooLarge"
    http_status = 413
    exit_code = ExitCode.USAGE


class TooManyRequests(KagiyaError):
    code = reason = "TooManyRequests"
    http_status = 429
    exit_code = ExitCode.UPSTREAM


class UpstreamUnavailable(KagiyaError):
    """A dependency (KMS, LDAP, IdP, STS, API server) is down, slow or rate-limiting: retry later."""

    code = "UpstreamUnavailable"
    reason = "ServiceUnavailable"
    http_status = 503
    exit_code = ExitCode.UPSTREAM


class ConfigError(KagiyaError):
    """Configuration is missing or wrong; the message names the key and how to fix it."""

    code = "ConfigError"
    reason = "InternalError"
    http_status = 500
    exit_code = ExitCode.CONFIG


class UsageError(KagiyaError):
    """A CLI invocation that cannot work as given (for example serving 0.0.0.0 without TLS)."""

    code = "UsageError"
    reason = "BadRequest"
    http_status = 400
    exit_code = ExitCode.USAGE


class CryptoError(KagiyaError):
    """Decryption or verification failed. One opaque class on purpose: details go to the log only."""

    code = "CryptoError"
    reason = "BadRequest"
    http_status = 400
    exit_code = ExitCode.CRYPTO
