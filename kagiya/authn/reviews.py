"""TokenReview (`authentication.k8s.io/v1` and `v1beta1`) parsing and replies.

Spec: ../shared/specs/kubernetes-webhooks.md, "TokenReview". The reply always carries the request's
apiVersion (Guard answers `v1` to `v1beta1` requests, which default apiservers reject). A body that is not a
TokenReview is a `BadRequest` (400 Status); a definitive "no" is HTTP 200 with `authenticated: false` and a
short, safe `error`; field names are exactly the Kubernetes ones (`username`, `uid`, `groups`, `extra`,
`audiences`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kagiya.authn.providers.base import User
from kagiya.errors import BadRequest

GROUP = "authentication.k8s.io"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta1")
KIND = "TokenReview"
MAX_TOKEN_CHARS = 16 * 1024
MAX_AUDIENCES = 32
MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class TokenReviewRequest:
    api_version: str
    token: str = ""
    audiences: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show the token, even in a traceback or debugger
        return f"TokenReviewRequest(api_version={self.api_version!r}, audiences={self.audiences!r})"


def parse_token_review(body: Mapping[str, Any]) -> TokenReviewRequest:
    """Validate a TokenReview body; raises BadRequest naming the first problem (never echoing the token)."""
    api_version = body.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise BadRequest(f"apiVersion must be one of {', '.join(API_VERSIONS)}")
    if body.get("kind") != KIND:
        raise BadRequest(f"kind must be {KIND}")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise BadRequest("spec must be an object")
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise BadRequest("spec.token must be a non-empty string")
    if len(token) > MAX_TOKEN_CHARS:
        raise BadRequest(f"spec.token is longer than {MAX_TOKEN_CHARS} characters")
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise BadRequest("spec.audiences must be a list of non-empty strings")
    if len(audiences) > MAX_AUDIENCES:
        raise BadRequest(f"spec.audiences has more than {MAX_AUDIENCES} entries")
    return TokenReviewRequest(api_version=str(api_version), token=token, audiences=tuple(audiences))


def review_api_version(body: Any) -> str:
    """The apiVersion to answer an error in: the request's when it is one we speak, else v1."""
    if isinstance(body, Mapping) and body.get("apiVersion") in API_VERSIONS:
        return str(body["apiVersion"])
    return API_VERSIONS[0]


def authenticated_reply(api_version: str, user: User, requested_audiences: Sequence[str] = ()) -> dict[str, Any]:
    """`status.authenticated=true` with `status.user`; `status.audiences` only when the request named some."""
    user_obj: dict[str, Any] = {"username": user.username}
    if user.uid:
        user_obj["uid"] = user.uid
    user_obj["groups"] = list(user.groups)
    if user.extra:
        user_obj["extra"] = {k: list(v) for k, v in user.extra.items()}
    status: dict[str, Any] = {"authenticated": True, "user": user_obj}
    if requested_audiences and user.audiences:
        status["audiences"] = list(user.audiences)
    return _envelope(api_version, status)


def rejected_reply(api_version: str, error: str) -> dict[str, Any]:
    """`status.authenticated=false` with a short `status.error` (the apiserver caches this answer)."""
    return _envelope(api_version, {"authenticated": False, "error": safe_error(error)})


def safe_error(text: str) -> str:
    """One printable line, bounded: provider reasons are ours, but keep the reply tidy whatever happens."""
    line = " ".join(text.split())
    cleaned = "".join(ch for ch in line if ch.isprintable())
    return cleaned[:MAX_ERROR_CHARS] or "authentication failed"


def _envelope(api_version: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": KIND, "metadata": {"creationTimestamp": None}, "status": status}
