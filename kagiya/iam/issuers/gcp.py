"""Google issuer: IAM Credentials `generateAccessToken` / `generateIdToken` with google-cloud-iam (REST).

Spec: ../shared/specs/cloud-identity.md ("IAM Credentials API"). kagiya impersonates the bound service account
with its own credentials (google.auth.default()); `AnonymousCredentials` are used only against an `http://`
loopback endpoint, which is what tests point at (a stand-in speaking the same REST shape).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kagiya.config import is_loopback
from kagiya.errors import ConfigError, Forbidden, UpstreamUnavailable
from kagiya.iam.issuers.base import Credentials, Grant

if TYPE_CHECKING:
    from kagiya.iam.credential_settings import CredentialSettings
    from kagiya.iam.identity import Caller

log = logging.getLogger("kagiya.iam.issuers.gcp")


class GcpIssuer:
    cloud = "gcp"

    def __init__(self, settings: CredentialSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _iam(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import iam_credentials_v1

                endpoint = self.settings.iam_credentials_endpoint
                options: dict[str, Any] = {}
                credentials: Any = None
                if endpoint:
                    options["api_endpoint"] = endpoint
                    parts = urlsplit(endpoint)
                    if parts.scheme == "http":
                        if not is_loopback(parts.hostname or ""):
                            raise ConfigError("credentials.iam_credentials_endpoint: plain http only to loopback")
                        from google.auth.credentials import AnonymousCredentials

                        credentials = AnonymousCredentials()
                self._client = iam_credentials_v1.IAMCredentialsClient(
                    transport="rest", client_options=options, credentials=credentials,
                )
            return self._client

    def issue(
        self, grant: Grant, caller: Caller, *, duration_seconds: int, scopes: tuple[str, ...] = ()
    ) -> Credentials:
        """An OAuth access token for `grant.identity`. Raises Forbidden or UpstreamUnavailable."""
        from google.protobuf import duration_pb2

        reply = self._call(
            "generate_access_token",
            name=f"projects/-/serviceAccounts/{grant.identity}",
            scope=list(scopes or self.settings.gcp_scopes),
            lifetime=duration_pb2.Duration(seconds=duration_seconds),
        )
        expiry = _utc(reply.expire_time)
        return Credentials(
            expiry=expiry,
            fields={"access_token": reply.access_token},
            public={"serviceAccount": grant.identity, "scopes": ",".join(scopes or self.settings.gcp_scopes)},
        )

    def id_token(self, grant: Grant, audience: str, include_email: bool) -> tuple[str, dt.datetime]:
        """An OIDC ID token for `audience`, with its expiry (read from the unverified payload, for caching)."""
        reply = self._call(
            "generate_id_token", name=f"projects/-/serviceAccounts/{grant.identity}",
            audience=audience, include_email=include_email,
        )
        return reply.token, _unverified_expiry(reply.token)

    def _call(self, method: str, **kwargs: Any) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return getattr(self._iam(), method)(retry=None, timeout=self.settings.issuer_timeout_seconds, **kwargs)
        except (gexc.PermissionDenied, gexc.NotFound, gexc.InvalidArgument, gexc.Unauthenticated) as exc:
            raise Forbidden(f"IAM Credentials refused {kwargs.get('name', '')}: {type(exc).__name__}") from None
        except gexc.GoogleAPIError as exc:
            raise UpstreamUnavailable(f"IAM Credentials failed: {type(exc).__name__}") from None
        except (OSError, ValueError) as exc:
            # requests' connection errors are OSErrors; a garbled reply surfaces as ValueError.
            log.warning("IAM Credentials unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("IAM Credentials is unreachable or timed out") from None


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(value.seconds, dt.UTC)


def _unverified_expiry(token: str) -> dt.datetime:
    """`exp` of a JWT we just received from Google (not verified: only used to decide when to ask again)."""
    fallback = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
    except (IndexError, ValueError, KeyError, TypeError):
        return fallback
