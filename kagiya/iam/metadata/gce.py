"""GCE metadata server paths that google-auth and gcloud read (GKE Workload Identity shape).

Spec: ../shared/specs/cloud-identity.md ("Google endpoints the SDKs read"):
- every request must carry `Metadata-Flavor: Google` (else 403) and every reply carries it, errors included;
  `X-Forwarded-For` is refused (403) as on GCE.
- `instance/service-accounts/{default|EMAIL}/token[?scopes=a,b]` -> `{"access_token","expires_in","token_type"}`,
  `.../email`, `.../scopes` (newline-separated), `.../identity?audience=..&format=full` (a JWT),
  `.../?recursive=true` (`{"aliases","email","scopes"}`), `instance/service-accounts/?recursive=true`,
  `project/project-id`; `instance/zone`, `project/numeric-project-id` and `instance/attributes/cluster-name` from
  configuration (404 when not configured). Callers are identified by source IP (google-auth sends no token) or by
  the agent's evidence.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from kagiya.errors import BadRequest, Forbidden, NotFound
from kagiya.iam.identity import Caller
from kagiya.iam.issuers.base import Grant
from kagiya.iam.metadata.service import MetadataService, service_of
from kagiya.openapi import describe

bp = Blueprint("gce_metadata", __name__)
ENDPOINT = "gce"
ROOT = "/computeMetadata/v1"
FLAVOR = "Metadata-Flavor"


@bp.before_request
def _flavor_rules() -> None:
    svc = service_of()
    if request.headers.get(FLAVOR) != "Google":
        svc.refused(ENDPOINT, "no-flavor", "missing Metadata-Flavor: Google")
        raise Forbidden("missing Metadata-Flavor:Google header")
    if "X-Forwarded-For" in request.headers:
        svc.refused(ENDPOINT, "forwarded", "request carries X-Forwarded-For")
        raise Forbidden("requests carrying X-Forwarded-For are refused")


@bp.after_request
def _stamp_flavor(response: Response) -> Response:
    response.headers[FLAVOR] = "Google"
    return response


def _who(svc: MetadataService, account: str) -> tuple[Caller, Grant]:
    caller = svc.caller(ENDPOINT)
    grant = svc.grant(ENDPOINT, caller, "gcp")
    if account not in ("default", grant.identity):
        svc.refused(ENDPOINT, "other-account", f"{caller.ref} asked for a service account that is not its own")
        raise NotFound(f"service account {account!r} is not available to this pod")
    return caller, grant


def _account_info(svc: MetadataService, grant: Grant) -> dict[str, object]:
    return {"aliases": ["default"], "email": grant.identity, "scopes": list(svc.settings.gcp_scopes)}


def _text(value: str) -> Response:
    return Response(value, mimetype="application/text")


@bp.get(f"{ROOT}/instance/service-accounts/")
@describe("GCE: the pod's service accounts (recursive=true for details).", tags=["metadata"])
def accounts() -> Response:
    svc = service_of()
    _caller, grant = _who(svc, "default")
    if request.args.get("recursive") == "true":
        info = _account_info(svc, grant)
        return jsonify({"default": info, grant.identity: info})
    return _text(f"default/\n{grant.identity}/\n")


@bp.get(f"{ROOT}/instance/service-accounts/<account>/")
@describe("GCE: one service account (recursive=true: aliases, email, scopes).", tags=["metadata"])
def account(account: str) -> Response:
    svc = service_of()
    _caller, grant = _who(svc, account)
    if request.args.get("recursive") == "true":
        return jsonify(_account_info(svc, grant))
    return _text("aliases\nemail\nidentity\nscopes\ntoken\n")


@bp.route(f"{ROOT}/instance/service-accounts/<account>/token", methods=["GET", "POST"])
@describe("GCE: an OAuth access token for the pod's service account.", tags=["metadata"])
def token(account: str) -> Response:
    svc = service_of()
    caller, grant = _who(svc, account)
    raw = request.args.get("scopes", "")
    scopes = tuple(s for s in (p.strip() for p in raw.split(",")) if s) or tuple(svc.settings.gcp_scopes)
    if len(scopes) > 50 or any(len(s) > 512 for s in scopes):
        raise BadRequest("too many or too long scopes")
    creds = svc.credentials(ENDPOINT, caller, grant, scopes)
    expires_in = max(int(svc.cache.remaining(creds)), 0)
    return jsonify({"access_token": creds.fields["access_token"], "expires_in": expires_in, "token_type": "Bearer"})


@bp.get(f"{ROOT}/instance/service-accounts/<account>/email")
@describe("GCE: the pod's service-account email.", tags=["metadata"])
def email(account: str) -> Response:
    svc = service_of()
    _caller, grant = _who(svc, account)
    return _text(grant.identity)


@bp.get(f"{ROOT}/instance/service-accounts/<account>/scopes")
@describe("GCE: the default scopes, one per line.", tags=["metadata"])
def scopes(account: str) -> Response:
    svc = service_of()
    _who(svc, account)
    return _text("\n".join(svc.settings.gcp_scopes) + "\n")


@bp.get(f"{ROOT}/instance/service-accounts/<account>/aliases")
def aliases(account: str) -> Response:
    """GCE: the account's aliases."""
    _who(service_of(), account)
    return _text("default\n")


@bp.get(f"{ROOT}/instance/service-accounts/<account>/identity")
@describe("GCE: an OIDC ID token for ?audience= (format=full adds the email).", tags=["metadata"])
def identity(account: str) -> Response:
    svc = service_of()
    audience = request.args.get("audience", "")
    if not audience or len(audience) > 2048:
        raise BadRequest("the audience parameter is required")
    caller, grant = _who(svc, account)
    jwt = svc.id_token(caller, grant, audience, request.args.get("format") == "full")
    return _text(jwt)


@bp.get(f"{ROOT}/project/project-id")
@describe("GCE: the project id (settings, else the service account's project).", tags=["metadata"])
def project_id() -> Response:
    svc = service_of()
    if svc.settings.gcp_project_id:
        return _text(svc.settings.gcp_project_id)
    _caller, grant = _who(svc, "default")
    domain = grant.identity.partition("@")[2]
    project = domain.split(".")[0] if domain.endswith(".iam.gserviceaccount.com") else ""
    if not project:
        raise NotFound("no project id is configured")
    return _text(project)


def _configured(value: str, setting: str) -> Response:
    if not value:
        raise NotFound(f"not configured (credentials.{setting})")
    return _text(value)


@bp.get(f"{ROOT}/instance/zone")
@describe("GCE: projects/NUMBER/zones/ZONE from credentials.gcp_project_number and gcp_zone.", tags=["metadata"])
def zone() -> Response:
    settings = service_of().settings
    if not settings.gcp_zone:
        raise NotFound("not configured (credentials.gcp_zone)")
    return _text(f"projects/{settings.gcp_project_number or '0'}/zones/{settings.gcp_zone}")


@bp.get(f"{ROOT}/project/numeric-project-id")
@describe("GCE: the numeric project id (credentials.gcp_project_number).", tags=["metadata"])
def numeric_project_id() -> Response:
    return _configured(service_of().settings.gcp_project_number, "gcp_project_number")


@bp.get(f"{ROOT}/instance/attributes/cluster-name")
@describe("GCE: the cluster name GKE tools read (credentials.cluster_name).", tags=["metadata"])
def cluster_name() -> Response:
    return _configured(service_of().settings.cluster_name, "cluster_name")


@bp.route(f"{ROOT}/<path:rest>", methods=["GET", "PUT", "POST", "DELETE"])
def other(rest: str) -> Response:
    """GCE: every other path is 404."""
    raise NotFound(f"the path '{ROOT}/{rest}' is not served")
