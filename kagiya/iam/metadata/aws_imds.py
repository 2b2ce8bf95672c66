"""AWS instance metadata (IMDSv2) in the shape boto3 and the AWS CLI read.

Spec: ../shared/specs/cloud-identity.md ("AWS endpoints the SDKs read"):
- `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` (missing or bad -> 400, which
  makes botocore stop rather than fall back); the token is bound to the pod uid that asked.
- `GET /latest/meta-data/iam/security-credentials/` -> the role name; `.../ROLE` -> the credential JSON;
  `GET /latest/meta-data/iam/info` -> the pseudo instance profile. GETs need a valid session token unless
  `credentials.imds_v1` is on (401 otherwise).
- Requests carrying `X-Forwarded-For` are refused (403): a proxy in front of IMDS turns SSRF into credential theft.
- `placement/region`, `placement/availability-zone` and `/latest/dynamic/instance-identity/document` answer from
  configuration (`credentials.aws_region`, `aws_availability_zone`, `aws_account_id`), as SDKs read them for the
  region.
- Every other path under `/latest/` is 404, except those listed in `credentials.imds_allowed_paths` (empty 200).
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, jsonify, request

from kagiya.errors import BadRequest, Forbidden, NotFound, Unauthorized
from kagiya.iam.identity import Caller
from kagiya.iam.metadata.service import (
    AGENT_IMDS_SESSION,
    AGENT_NODE,
    MetadataService,
    now_rfc3339,
    rfc3339,
    service_of,
)
from kagiya.openapi import describe

bp = Blueprint("aws_imds", __name__)
ENDPOINT = "imds"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
MAX_TTL = 21600


@bp.before_request
def _refuse_forwarded() -> None:
    if "X-Forwarded-For" in request.headers:
        service_of().refused(ENDPOINT, "forwarded", "request carries X-Forwarded-For")
        raise Forbidden("requests carrying X-Forwarded-For are refused")


def _bearer() -> str:
    header = request.headers.get("Authorization", "").strip()
    scheme, _, rest = header.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else header


def _session_caller(svc: MetadataService) -> Caller:
    """The caller of a GET: identified, and holding a session token issued to that same pod (or, relayed by an
    authenticated agent, one the agent issued to that pod's IP and checked itself)."""
    if request.environ.get(AGENT_IMDS_SESSION) and request.environ.get(AGENT_NODE) is not None:
        return svc.caller(ENDPOINT, _bearer())
    token = request.headers.get(TOKEN_HEADER, "")
    if not token and not svc.settings.imds_v1:
        svc.refused(ENDPOINT, "no-session-token", "IMDSv1 request without a session token")
        raise Unauthorized("an IMDSv2 session token is required (PUT /latest/api/token first)")
    caller = svc.caller(ENDPOINT, _bearer())
    if token:
        try:
            svc.sessions.check(token, caller.pod_uid)
        except Unauthorized as exc:
            svc.refused(ENDPOINT, "bad-session-token", exc.message)
            raise
    return caller


@bp.put("/latest/api/token")
@describe("IMDSv2: a session token bound to the calling pod (TTL header 1..21600 required).", tags=["metadata"],
          request_content_type="text/plain")
def api_token() -> Response:
    raw = request.headers.get(TTL_HEADER)
    if raw is None:
        raise BadRequest(f"the {TTL_HEADER} header is required")
    value = raw.strip()
    # ASCII digits only: "²".isdigit() is True but int("²") raises.
    if not (value.isascii() and value.isdigit()) or len(value) > 6 or not 1 <= int(value) <= MAX_TTL:
        raise BadRequest(f"{TTL_HEADER} must be a whole number from 1 to {MAX_TTL}")
    svc = service_of()
    caller = svc.caller(ENDPOINT, _bearer())
    ttl = int(value)
    response = Response(svc.sessions.issue(caller.pod_uid, ttl), mimetype="text/plain")
    response.headers[TTL_HEADER] = str(ttl)
    return response


@bp.get("/latest/meta-data/iam/security-credentials/")
@bp.get("/latest/meta-data/iam/security-credentials")
@describe("IMDS: the name of the role bound to the calling pod (404 when none).", tags=["metadata"])
def role_name() -> Response:
    svc = service_of()
    caller = _session_caller(svc)
    grant = svc.grant(ENDPOINT, caller, "aws")
    return Response(grant.role_name, mimetype="text/plain")


@bp.get("/latest/meta-data/iam/security-credentials/<role>")
@describe("IMDS: short-lived credentials of the role bound to the calling pod.", tags=["metadata"])
def role_credentials(role: str) -> Response:
    svc = service_of()
    caller = _session_caller(svc)
    grant = svc.grant(ENDPOINT, caller, "aws")
    if role != grant.role_name:
        svc.refused(ENDPOINT, "other-role", f"{caller.ref} asked for a role that is not its own")
        raise NotFound(f"role {role!r} is not bound to this pod")
    creds = svc.credentials(ENDPOINT, caller, grant)
    return jsonify({
        "Code": "Success",
        "LastUpdated": rfc3339(creds.issued_at),
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.fields["AccessKeyId"],
        "SecretAccessKey": creds.fields["SecretAccessKey"],
        "Token": creds.fields["Token"],
        "Expiration": rfc3339(creds.expiry),
    })


@bp.get("/latest/meta-data/iam/info")
@describe("IMDS: the pseudo instance profile of the calling pod's role.", tags=["metadata"])
def iam_info() -> Response:
    svc = service_of()
    caller = _session_caller(svc)
    grant = svc.grant(ENDPOINT, caller, "aws")
    account = grant.identity.split(":")[4] if grant.identity.count(":") >= 5 else ""
    profile_id = "AIPA" + hashlib.sha256(grant.identity.encode()).hexdigest()[:17].upper()
    return jsonify({
        "Code": "Success",
        "LastUpdated": now_rfc3339(),
        "InstanceProfileArn": f"arn:aws:iam::{account}:instance-profile/{grant.role_name}",
        "InstanceProfileId": profile_id,
    })


def _region(svc: MetadataService) -> str:
    return svc.settings.aws_region or svc.settings.sts_region


@bp.get("/latest/meta-data/placement/region")
@describe("IMDS: the region (credentials.aws_region, else credentials.sts_region).", tags=["metadata"])
def placement_region() -> Response:
    svc = service_of()
    _session_caller(svc)
    return Response(_region(svc), mimetype="text/plain")


@bp.get("/latest/meta-data/placement/availability-zone")
@bp.get("/latest/meta-data/placement/availability-zone/")
@describe("IMDS: the availability zone (credentials.aws_availability_zone, else the region + 'a').", tags=["metadata"])
def placement_zone() -> Response:
    svc = service_of()
    _session_caller(svc)
    return Response(svc.settings.aws_availability_zone or _region(svc) + "a", mimetype="text/plain")


@bp.get("/latest/dynamic/instance-identity/document")
@describe("IMDS: an instance-identity document for the calling pod, from configuration.", tags=["metadata"])
def identity_document() -> Response:
    svc = service_of()
    caller = _session_caller(svc)
    account = svc.settings.aws_account_id
    if not account:
        grant = svc.grant_lookup(caller, "aws")
        account = grant.identity.split(":")[4] if grant is not None and grant.identity.count(":") >= 5 else ""
    return jsonify({
        "accountId": account, "architecture": "x86_64",
        "availabilityZone": svc.settings.aws_availability_zone or _region(svc) + "a",
        "billingProducts": None, "devpayProductCodes": None, "marketplaceProductCodes": None, "imageId": "",
        "instanceId": "i-" + hashlib.sha256(caller.pod_uid.encode()).hexdigest()[:17], "instanceType": "",
        "kernelId": None, "pendingTime": now_rfc3339(), "privateIp": caller.pod_ip, "ramdiskId": None,
        "region": _region(svc), "version": "2017-09-30",
    })


@bp.route("/latest/<path:rest>", methods=["GET", "PUT", "POST", "DELETE", "PATCH"])
@describe("IMDS: every other path is 404 unless allow-listed in credentials.imds_allowed_paths.", tags=["metadata"])
def other(rest: str) -> Response:
    svc = service_of()
    if request.method == "GET" and f"/latest/{rest}" in svc.settings.imds_allowed_paths:
        _session_caller(svc)
        return Response("", mimetype="text/plain")
    raise NotFound(f"the path '/latest/{rest}' is not served")
