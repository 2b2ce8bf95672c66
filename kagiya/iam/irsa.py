"""The web-identity (IRSA) injection of the admission webhook: exactly what amazon-eks-pod-identity-webhook adds.

A namespace whose stored policy says `aws_injection: "web-identity"` gets, for a pod whose service account
resolves to an AWS role, the IRSA shape: the SDK reads `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` and calls
STS `AssumeRoleWithWebIdentity` itself with a projected token, so nothing central sits in the credential path.
The shape follows the upstream webhook's patches (one JSONPatch op per changed list, in this order):
- `/spec/volumes`: an `aws-iam-token` projected `serviceAccountToken` (audience `sts.amazonaws.com`, 86400 s,
  path `token`); added as the list when there is none, else prepended (`/spec/volumes/0`); left alone if present.
- `/spec/containers`, then `/spec/initContainers`, each replaced as a whole list: every container not named in the
  pod annotation `eks.amazonaws.com/skip-containers` (comma-separated) gets, in this order and only when missing,
  `AWS_STS_REGIONAL_ENDPOINTS=regional` (when regional endpoints are on), `AWS_DEFAULT_REGION` and `AWS_REGION`
  (unless either is set), `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (unless either is set), and a read-only
  mount of the volume at `/var/run/secrets/eks.amazonaws.com/serviceaccount` (unless one by that name exists).
Service-account annotations `eks.amazonaws.com/audience`, `/token-expiration` (the pod annotation of the same name
wins; clamped to 600 s .. 2^32 s) and `/sts-regional-endpoints` (`"true"`/`"false"`) override the defaults, as upstream.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "eks.amazonaws.com/"
AUDIENCE = PREFIX + "audience"
TOKEN_EXPIRATION = PREFIX + "token-expiration"
STS_REGIONAL = PREFIX + "sts-regional-endpoints"
SKIP_CONTAINERS = PREFIX + "skip-containers"
VOLUME = "aws-iam-token"
MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = MOUNT_PATH + "/token"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_EXPIRATION = 86400
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2**32
MODES = ("container-credentials", "web-identity")


@dataclass(frozen=True)
class WebIdentity:
    role_arn: str
    audience: str = DEFAULT_AUDIENCE
    expiration: int = DEFAULT_EXPIRATION
    region: str = ""
    regional_sts: bool = False


def web_identity_for(role_arn: str, sa_annotations: Mapping[str, str], pod_annotations: Mapping[str, str], *,
                     region: str, regional_sts: bool) -> WebIdentity:
    """The injection parameters for one pod, from its service account's and its own annotations."""
    raw = pod_annotations.get(TOKEN_EXPIRATION) or sa_annotations.get(TOKEN_EXPIRATION) or ""
    expiration = DEFAULT_EXPIRATION
    value = raw.strip().lstrip("-")
    if value.isascii() and value.isdigit():
        # the API server refuses a projected token outside 600 s .. 2^32 s: clamp rather than make the pod invalid
        expiration = min(max(int(raw.strip()), MIN_EXPIRATION), MAX_EXPIRATION)
    sts = sa_annotations.get(STS_REGIONAL, "").strip().lower()
    if sts in ("true", "false"):
        regional_sts = sts == "true"
    return WebIdentity(role_arn=role_arn, audience=sa_annotations.get(AUDIENCE, "").strip() or DEFAULT_AUDIENCE,
                       expiration=expiration, region=region, regional_sts=regional_sts)


def web_identity_patch(pod: Mapping[str, Any], wi: WebIdentity) -> list[dict[str, Any]]:
    """JSONPatch operations in the upstream webhook's shape; [] when the pod already has everything."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    skip = {n.strip() for n in str((meta.get("annotations") or {}).get(SKIP_CONTAINERS, "")).split(",") if n.strip()}
    ops: list[dict[str, Any]] = []
    volumes = spec.get("volumes")
    if not any(isinstance(v, dict) and v.get("name") == VOLUME for v in volumes or ()):
        volume = {"name": VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": wi.audience, "expirationSeconds": wi.expiration, "path": "token"}}]}}
        ops.append({"op": "add", "path": "/spec/volumes", "value": [volume]} if not volumes
                   else {"op": "add", "path": "/spec/volumes/0", "value": volume})
    for kind in ("containers", "initContainers"):
        containers = spec.get(kind)
        if not containers:
            continue
        patched = [c if not isinstance(c, dict) or c.get("name") in skip else _container(c, wi) for c in containers]
        if patched != containers:
            ops.append({"op": "add", "path": f"/spec/{kind}", "value": patched})
    return ops


def _container(container: Mapping[str, Any], wi: WebIdentity) -> dict[str, Any]:
    out = copy.deepcopy(dict(container))
    env = list(out.get("env") or [])
    have = {e.get("name") for e in env if isinstance(e, dict)}
    add: list[dict[str, str]] = []
    if wi.regional_sts and "AWS_STS_REGIONAL_ENDPOINTS" not in have:
        add.append({"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"})
    if wi.region and not have & {"AWS_REGION", "AWS_DEFAULT_REGION"}:
        add += [{"name": "AWS_DEFAULT_REGION", "value": wi.region}, {"name": "AWS_REGION", "value": wi.region}]
    if not have & {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}:
        add += [{"name": "AWS_ROLE_ARN", "value": wi.role_arn},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE}]
    if add:
        out["env"] = env + add
    mounts = list(out.get("volumeMounts") or [])
    if not any(isinstance(m, dict) and m.get("name") == VOLUME for m in mounts):
        out["volumeMounts"] = mounts + [{"name": VOLUME, "readOnly": True, "mountPath": MOUNT_PATH}]
    return out
