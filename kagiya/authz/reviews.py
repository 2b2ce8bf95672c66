"""SubjectAccessReview wire format, `authorization.k8s.io/v1` and `v1beta1` (specs/kubernetes-webhooks.md).

The two versions differ in one field name that matters for security: the user's groups are `spec.groups` in v1
and `spec.group` in v1beta1. A review carrying the other version's spelling is refused with 400 instead of being
read as "no groups", which could silently skip a group `deny` rule. The reply always uses the request's version.
"""

from __future__ import annotations

from typing import Any

from kagiya.authz.policy import Attributes, Decision
from kagiya.errors import BadRequest

GROUP = "authorization.k8s.io"
VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta1")
KIND = "SubjectAccessReview"
MAX_FIELD = 1024
RESOURCE_FIELDS = ("namespace", "verb", "group", "version", "resource", "subresource", "name")


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{where}{key} must be a string")
    if len(value) > MAX_FIELD:
        raise BadRequest(f"{where}{key} is longer than {MAX_FIELD} characters")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{where} must be a list of strings")
    return tuple(value)


def parse_review(body: dict[str, Any]) -> tuple[str, Attributes]:
    """(apiVersion, attributes) of a SubjectAccessReview body; raises BadRequest naming the field."""
    version = body.get("apiVersion")
    if version not in VERSIONS:
        raise BadRequest(f"apiVersion must be one of {', '.join(VERSIONS)}, got {version!r}")
    if body.get("kind") != KIND:
        raise BadRequest(f"kind must be {KIND}, got {body.get('kind')!r}")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise BadRequest("spec must be an object")
    beta = version.endswith("v1beta1")
    groups_key, wrong_key = ("group", "groups") if beta else ("groups", "group")
    if wrong_key in spec:
        raise BadRequest(f"spec.{wrong_key} is not a {version} field: {version} spells the user's groups "
                         f"spec.{groups_key}")
    user = _opt_str(spec, "user", "spec.")
    groups = _str_list(spec.get(groups_key), f"spec.{groups_key}")
    if not user and not groups:
        raise BadRequest(f"spec.user or spec.{groups_key} is required")
    uid = _opt_str(spec, "uid", "spec.")
    extra_raw = spec.get("extra") or {}
    if not isinstance(extra_raw, dict):
        raise BadRequest("spec.extra must be an object of string lists")
    extra = {str(k): _str_list(v, f"spec.extra.{k}") for k, v in extra_raw.items()}
    res, nonres = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (res is None) == (nonres is None):
        raise BadRequest("exactly one of spec.resourceAttributes and spec.nonResourceAttributes is required")
    if res is not None:
        if not isinstance(res, dict):
            raise BadRequest("spec.resourceAttributes must be an object")
        f = {k: _opt_str(res, k, "spec.resourceAttributes.") for k in RESOURCE_FIELDS}
        attrs = Attributes(
            user=user, groups=groups, uid=uid, extra=extra, verb=f["verb"], resource_request=True,
            namespace=f["namespace"], api_group=f["group"], api_version=f["version"], resource=f["resource"],
            subresource=f["subresource"], name=f["name"],
        )
    else:
        if not isinstance(nonres, dict):
            raise BadRequest("spec.nonResourceAttributes must be an object")
        attrs = Attributes(
            user=user, groups=groups, uid=uid, extra=extra, resource_request=False,
            verb=_opt_str(nonres, "verb", "spec.nonResourceAttributes."),
            path=_opt_str(nonres, "path", "spec.nonResourceAttributes."),
        )
    return version, attrs


def review_reply(version: str, decision: Decision) -> dict[str, Any]:
    """The reply body in the request's version: allowed / denied / no opinion (allowed=false alone)."""
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.denied:
        status["denied"] = True
    reason = decision.reason
    if reason:
        status["reason"] = reason
    return {"apiVersion": version, "kind": KIND, "status": status}
