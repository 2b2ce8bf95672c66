"""AWS issuer: STS `AssumeRole` with boto3 (spec: ../shared/specs/cloud-identity.md, "STS").

The session name comes from the namespace and pod (or the pod's `iam.amazonaws.com/session-name`), session tags
(opt-in, `credentials.aws_session_tags`: they need `sts:TagSession` in the trust policy) carry namespace / service
account / pod so CloudTrail and IAM conditions can see which workload acted, and the
duration is capped by the namespace policy. kagiya's own AWS credentials come from boto3's usual chain (never
from the IMDS kagiya itself serves: the service runs with AWS_EC2_METADATA_DISABLED in tests).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING, Any

from kagiya import audit
from kagiya.errors import Forbidden, UpstreamUnavailable
from kagiya.iam.issuers.base import Credentials, Grant, session_name

if TYPE_CHECKING:
    from kagiya.iam.credential_settings import CredentialSettings
    from kagiya.iam.identity import Caller

log = logging.getLogger("kagiya.iam.issuers.aws")

#: STS refuses tag values longer than 256 characters and these characters outside [\w\s_.:/=+\-@].
MAX_TAG_VALUE = 256
#: Error codes that mean "this role may not be assumed this way" (the pod's problem, not an outage).
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "ValidationError", "InvalidParameterValue",
                "MalformedPolicyDocument", "PackedPolicyTooLarge", "RegionDisabledException"}


class AwsIssuer:
    cloud = "aws"

    def __init__(self, settings: CredentialSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _sts(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                timeout = self.settings.issuer_timeout_seconds
                config = Config(connect_timeout=timeout, read_timeout=timeout,
                                retries={"max_attempts": 1, "mode": "standard"})
                self._client = boto3.session.Session().client(
                    "sts", region_name=self.settings.sts_region, endpoint_url=self.settings.sts_endpoint or None,
                    config=config,
                )
            return self._client

    def issue(
        self, grant: Grant, caller: Caller, *, duration_seconds: int, scopes: tuple[str, ...] = ()
    ) -> Credentials:
        """AssumeRole for `grant.identity`. Raises Forbidden (STS said no) or UpstreamUnavailable."""
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {
            "RoleArn": grant.identity,
            "RoleSessionName": session_name(caller.namespace, caller.pod_name, grant.session_name),
            "DurationSeconds": duration_seconds,
        }
        if self.settings.aws_session_tags:  # opt-in: the role's trust policy must then allow sts:TagSession
            params["Tags"] = [
                {"Key": "kubernetes-namespace", "Value": _tag(caller.namespace)},
                {"Key": "kubernetes-service-account", "Value": _tag(caller.service_account)},
                {"Key": "kubernetes-pod", "Value": _tag(caller.pod_name)},
            ]
        if grant.external_id:
            params["ExternalId"] = grant.external_id
        try:
            reply = self._sts().assume_role(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in DENIED_CODES:
                raise Forbidden(f"STS refused to assume {grant.identity}: {code}") from None
            raise UpstreamUnavailable(f"STS AssumeRole failed: {code or 'error'}") from None
        except BotoCoreError as exc:
            log.warning("STS unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("STS is unreachable or timed out") from None
        creds = reply["Credentials"]
        expiry = creds["Expiration"]
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=dt.UTC)
        assumed = reply.get("AssumedRoleUser", {}).get("Arn", "")
        return Credentials(
            expiry=expiry.astimezone(dt.UTC),
            fields={
                "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"],
                "AccountId": _account_of(grant.identity),
            },
            public={"assumedRoleArn": assumed, "accessKey": audit.fingerprint(creds["AccessKeyId"])},
        )


def _tag(value: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in " _.:/=+-@" else "-" for c in value)
    return (cleaned or "-")[:MAX_TAG_VALUE]


def _account_of(role_arn: str) -> str:
    parts = role_arn.split(":")
    return parts[4] if len(parts) > 5 else ""
