"""Container credentials (ECS / EKS Pod Identity shape) for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.

Spec: ../shared/specs/cloud-identity.md. The SDK sends the content of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
(a projected service-account token, injected by the admission webhook) verbatim as `Authorization`; kagiya verifies
it with a TokenReview and never falls back to the source IP here: this endpoint exists to bind credentials to the
pod's identity, not its address. Reply: `{"AccessKeyId","SecretAccessKey","Token","Expiration","AccountId"}`.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from kagiya.errors import Forbidden, Unauthorized
from kagiya.iam.metadata.service import rfc3339, service_of
from kagiya.openapi import describe

bp = Blueprint("container_credentials", __name__)
ENDPOINT = "container"


@bp.get("/v1/credentials")
@describe("Container credentials (EKS Pod Identity style): Authorization carries a projected SA token.",
          tags=["metadata"])
def credentials() -> Response:
    svc = service_of()
    if "X-Forwarded-For" in request.headers:
        svc.refused(ENDPOINT, "forwarded", "request carries X-Forwarded-For")
        raise Forbidden("requests carrying X-Forwarded-For are refused")
    header = request.headers.get("Authorization", "").strip()
    scheme, _, rest = header.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else header
    if not token:
        svc.refused(ENDPOINT, "no-token", "no Authorization token")
        raise Unauthorized("the Authorization header must carry the pod's projected service-account token")
    caller = svc.caller(ENDPOINT, token, token_only=True)
    grant = svc.grant(ENDPOINT, caller, "aws")
    creds = svc.credentials(ENDPOINT, caller, grant)
    return jsonify({
        "AccessKeyId": creds.fields["AccessKeyId"],
        "SecretAccessKey": creds.fields["SecretAccessKey"],
        "Token": creds.fields["Token"],
        "Expiration": rfc3339(creds.expiry),
        "AccountId": creds.fields.get("AccountId", ""),
    })
