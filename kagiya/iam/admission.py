"""`POST /iam/mutate`: a mutating admission webhook (AdmissionReview v1, JSONPatch) for pods with a binding.

Spec: ../shared/specs/cloud-identity.md ("AWS endpoints the SDKs read", "Google endpoints the SDKs read").
A pod that resolves to an AWS identity gets `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` plus a projected service-account token volume (audience
`credentials.token_audiences[0]`), so boto3 and the AWS CLI use the token path; a pod with a Google identity gets
`GCE_METADATA_HOST` / `GCE_METADATA_IP`. Other pods are untouched (no patch). The patch is idempotent: variables,
volumes and mounts that already exist (by name) are left as they are, so re-admitting a patched pod is a no-op.
A namespace whose stored policy sets `aws_injection: "web-identity"` gets the IRSA shape of
amazon-eks-pod-identity-webhook instead (kagiya/iam/irsa.py). The pod's ServiceAccount is looked up live when the
index has not seen it yet (a pod created right after its ServiceAccount); when it cannot be determined, or the
API server cannot be asked, the webhook answers 503, so the webhook's `failurePolicy` decides, never a silently
unpatched pod. Other resolution failures admit the pod with an AdmissionReview warning.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kagiya.errors import BadRequest, KagiyaError, UpstreamUnavailable
from kagiya.httpjson import json_body
from kagiya.iam.credential_settings import CredentialSettings
from kagiya.openapi import describe

log = logging.getLogger("kagiya.iam.admission")
bp = Blueprint("iam_admission", __name__)
API_VERSION = "admission.k8s.io/v1"
CONTAINER_KINDS = ("initContainers", "containers")


def pod_patch(pod: dict[str, Any], clouds: set[str], settings: CredentialSettings) -> list[dict[str, Any]]:
    """JSONPatch operations that give `pod` what its SDKs need for `clouds` ("aws", "gcp"); [] when nothing to do."""
    env: list[dict[str, str]] = []
    needs_token = "aws" in clouds
    mount_path = settings.token_mount_path.rstrip("/")
    if "aws" in clouds:
        env += [
            {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": settings.container_credentials_uri},
            {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": f"{mount_path}/token"},
        ]
    if "gcp" in clouds:
        host = settings.gce_metadata_host
        env += [{"name": "GCE_METADATA_HOST", "value": host},
                {"name": "GCE_METADATA_IP", "value": host.rsplit(":", 1)[0] if host.count(":") == 1 else host}]
    if not env:
        return []
    spec = pod.get("spec") or {}
    ops: list[dict[str, Any]] = []
    mount = {"name": settings.token_volume_name, "mountPath": mount_path, "readOnly": True}
    for kind in CONTAINER_KINDS:
        for i, container in enumerate(spec.get(kind) or []):
            base = f"/spec/{kind}/{i}"
            have = {e.get("name") for e in container.get("env") or [] if isinstance(e, dict)}
            missing = [e for e in env if e["name"] not in have]
            ops += _append(base, "env", container.get("env"), missing)
            if needs_token:
                mounts = container.get("volumeMounts") or []
                if not any(m.get("name") == mount["name"] or m.get("mountPath") == mount_path for m in mounts):
                    ops += _append(base, "volumeMounts", container.get("volumeMounts"), [mount])
    if needs_token:
        volumes = spec.get("volumes") or []
        if not any(v.get("name") == settings.token_volume_name for v in volumes):
            volume = {"name": settings.token_volume_name, "projected": {"sources": [{"serviceAccountToken": {
                "audience": settings.token_audiences[0],
                "expirationSeconds": settings.token_expiration_seconds,
                "path": "token",
            }}]}}
            ops += _append("/spec", "volumes", spec.get("volumes"), [volume])
    return ops


def _append(base: str, field: str, current: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not items:
        return []
    if current is None:
        return [{"op": "add", "path": f"{base}/{field}", "value": items}]
    return [{"op": "add", "path": f"{base}/{field}/-", "value": item} for item in items]


def review_response(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview reply for one request (raises BadRequest for a malformed review)."""
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise BadRequest(f"expected an AdmissionReview of apiVersion {API_VERSION}")
    req = review.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("uid"), str) or not req["uid"]:
        raise BadRequest("request.uid is required")
    answer: dict[str, Any] = {"uid": req["uid"], "allowed": True}
    pod = req.get("object")
    kind = (req.get("kind") or {}).get("kind")
    if kind != "Pod" or req.get("operation", "CREATE") != "CREATE" or not isinstance(pod, dict):
        return _reply(answer)
    meta = pod.get("metadata") or {}
    namespace = req.get("namespace") or meta.get("namespace") or ""
    if not isinstance(namespace, str) or not namespace:
        raise BadRequest("request.namespace is required for a Pod")
    try:
        found = _resolve(namespace, pod)
    except UpstreamUnavailable:
        raise  # 503: the API server's failurePolicy decides; never an unpatched pod admitted silently
    except KagiyaError as exc:
        log.warning("admission: cannot resolve pod in %s: %s", namespace, exc.message)
        answer["warnings"] = [f"kagiya: credentials not injected: {exc.message}"]
        return _reply(answer)
    clouds = {cloud for cloud, res in found.items() if res.allowed and cloud in ("aws", "gcp")}
    settings: CredentialSettings = current_app.extensions["kagiya.settings"].section("credentials")
    ops = _patch(namespace, pod, clouds, found, settings)
    if ops:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return _reply(answer)


def _resolve(namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    from kagiya.iam.context import iam_context
    from kagiya.iam.resolve import resolve_all
    from kagiya.kube import PodInfo

    obj = {**pod, "metadata": {**(pod.get("metadata") or {}), "namespace": namespace}}
    info = PodInfo.from_object(obj)
    ctx = iam_context(current_app)
    _ensure_service_account(ctx, namespace, info.service_account)
    return dict(resolve_all(ctx, namespace, info.service_account, info))


def _ensure_service_account(ctx: Any, namespace: str, name: str) -> None:
    """On an index miss, read the ServiceAccount live and put it in the index (its annotations decide the role)."""
    if ctx.kube is None or ctx.watcher is None or ctx.kube.service_account(namespace, name) is not None:
        return
    from kagiya.kube.client import read_service_account

    obj = read_service_account(ctx.watcher.settings, namespace, name)
    if obj is None:
        return  # it does not exist: the API server's own ServiceAccount admission refuses such a pod
    ctx.kube.apply("serviceaccounts", "ADDED", obj)


def _patch(namespace: str, pod: dict[str, Any], clouds: set[str], found: dict[str, Any],
           settings: CredentialSettings) -> list[dict[str, Any]]:
    """The container-credentials patch, or in a web-identity namespace the IRSA patch for AWS (plus GCE env)."""
    from kagiya.iam.context import iam_context
    from kagiya.iam.irsa import web_identity_for, web_identity_patch
    from kagiya.iam.policy import policy_for

    ctx = iam_context(current_app)
    if "aws" not in clouds or policy_for(ctx, namespace).aws_injection != "web-identity":
        return pod_patch(pod, clouds, settings)
    spec = pod.get("spec") or {}
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"  # as PodInfo resolves it
    sa = ctx.kube.service_account(namespace, sa_name) if ctx.kube is not None else None
    pod_notes = (pod.get("metadata") or {}).get("annotations") or {}
    wi = web_identity_for(found["aws"].identity.identity, sa.annotations if sa is not None else {}, pod_notes,
                          region=settings.aws_region or settings.sts_region,
                          regional_sts=settings.aws_sts_regional_endpoints)
    ops = web_identity_patch(pod, wi)
    if "gcp" not in clouds:
        return ops
    after = {**pod, "spec": dict(pod.get("spec") or {})}
    for op in ops:  # the GCE env goes on top of the containers as the IRSA patch leaves them
        if op["path"] in ("/spec/containers", "/spec/initContainers"):
            after["spec"][op["path"].rsplit("/", 1)[1]] = op["value"]
    return ops + pod_patch(after, {"gcp"}, settings)


def _reply(answer: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


@bp.post("/iam/mutate")
@describe("Mutating admission webhook: inject credential env and a projected token into pods with a binding.",
          tags=["iam"])
def mutate() -> Response:
    return jsonify(review_response(json_body()))
