"""Who is calling a metadata endpoint: a projected service-account token (preferred) or the pod's source IP.

Spec: ../shared/specs/cloud-identity.md ("How peers identify the calling pod, and why that is weak").
1. Token: the pod sends a projected service-account token (EKS Pod Identity style). kagiya asks the API server
   with a TokenReview (audience checked), and takes the pod name and uid from the token's `extra`
   (`authentication.kubernetes.io/pod-name`, `.../pod-uid`): the credential follows the pod, not its IP.
2. Source IP (kube2iam / kiam style), looked up in the watch-fed pod index, refusing rather than guessing:
   hostNetwork pods (they share the node's IP), IPs held by several live pods, pods neither Running nor Pending
   (Pending pods with an IP are served: their init containers run then), terminating pods, and IPs whose
   owner changed since the last decision (the old owner's cached credentials are dropped, never handed over).
IMDSv2 session tokens issued here are bound to the pod uid that asked: a new pod that inherits the IP cannot
use the old pod's session token. Refusals name the reason for *this* caller only, never another pod's data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kagiya.errors import Forbidden, NotFound, Unauthorized, UpstreamUnavailable

log = logging.getLogger("kagiya.iam.identity")

SA_PREFIX = "system:serviceaccount:"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
TERMINAL_PHASES = {"Succeeded", "Failed"}
#: Phases served on the IP path: Running, and Pending once the pod has an IP (its init containers run then and
#: may read IMDS / GCE metadata). The IP-reuse rules (terminating, ambiguous, owner change) apply to both.
SERVED_PHASES = {"Pending", "Running"}
MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class Caller:
    """The pod behind a metadata request."""

    namespace: str
    pod_name: str
    pod_uid: str
    service_account: str
    pod_ip: str = ""
    method: str = "ip"  # "token" or "ip"
    #: The node the pod runs on (from the pod index); an agent may only speak for pods on its own node.
    node_name: str = ""

    @property
    def subject(self) -> str:
        return f"{SA_PREFIX}{self.namespace}:{self.service_account}"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.pod_name}"


class CallerRefused(Forbidden):
    """The caller cannot be identified safely. `why` is a short machine reason (metrics label)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


@dataclass(frozen=True)
class PodFacts:
    """What identification needs from a pod, read from a dict (JSON) or a kubernetes client model."""

    uid: str
    name: str
    namespace: str
    service_account: str
    ip: str
    host_network: bool
    phase: str
    labels: dict[str, str]
    annotations: dict[str, str]
    node_name: str = ""
    #: `metadata.deletionTimestamp` is set: the pod is going away and may no longer own its IP.
    terminating: bool = False

    @classmethod
    def of(cls, pod: Any) -> PodFacts:
        if isinstance(pod, PodFacts):
            return pod
        if hasattr(pod, "uid") and hasattr(pod, "host_network"):  # kagiya.kube.PodInfo
            return cls(
                uid=pod.uid, name=pod.name, namespace=pod.namespace, service_account=pod.service_account,
                ip=pod.ip, host_network=bool(pod.host_network), phase=pod.phase,
                labels=dict(pod.labels), annotations=dict(pod.annotations),
                node_name=getattr(pod, "node_name", "") or "", terminating=bool(getattr(pod, "terminating", False)),
            )
        if not isinstance(pod, dict) and hasattr(pod, "to_dict"):
            pod = pod.to_dict()
        meta = _field(pod, "metadata") or {}
        spec = _field(pod, "spec") or {}
        status = _field(pod, "status") or {}
        return cls(
            uid=_field(meta, "uid") or "",
            name=_field(meta, "name") or "",
            namespace=_field(meta, "namespace") or "",
            service_account=_field(spec, "serviceAccountName", "service_account_name") or "default",
            ip=_field(status, "podIP", "pod_ip") or "",
            host_network=bool(_field(spec, "hostNetwork", "host_network")),
            phase=_field(status, "phase") or "",
            labels=dict(_field(meta, "labels") or {}),
            annotations=dict(_field(meta, "annotations") or {}),
            node_name=_field(spec, "nodeName", "node_name") or "",
            terminating=bool(_field(meta, "deletionTimestamp", "deletion_timestamp")),
        )


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


class PodDirectory(Protocol):
    """The watch-fed pod index, as identification needs it (kagiya/kube/index.py)."""

    def pods_by_ip(self, ip: str) -> Sequence[Any]: ...

    def pod_by_uid(self, uid: str) -> Any | None: ...

    def was_deleted(self, uid: str) -> bool: ...

    def is_fresh(self) -> bool: ...


#: (token, audiences) -> TokenReview `status` as a dict; raises UpstreamUnavailable when the API server cannot answer.
TokenReviewer = Callable[[str, Sequence[str]], dict[str, Any]]


class CallerIdentifier:
    """Turns request evidence (source IP, Authorization header) into a `Caller`, or refuses."""

    def __init__(
        self,
        pods: PodDirectory,
        reviewer: TokenReviewer | None,
        *,
        audiences: Sequence[str],
        allow_source_ip: bool = True,
        review_cache_seconds: float = 60.0,
        on_owner_change: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pods = pods
        self.reviewer = reviewer
        self.audiences = tuple(audiences)
        self.allow_source_ip = allow_source_ip
        self.review_cache_seconds = review_cache_seconds
        self.on_owner_change = on_owner_change
        self.clock = clock
        self._reviews: dict[str, tuple[float, Caller]] = {}
        self._decisions: dict[str, str] = {}  # ip -> uid of the pod we last served there
        self._lock = threading.Lock()

    def identify(self, source_ip: str, token: str = "") -> Caller:
        """The calling pod. Raises Unauthorized (bad token), CallerRefused / NotFound, UpstreamUnavailable."""
        if token:
            return self.from_token(token)
        if not self.allow_source_ip:
            raise Unauthorized("a projected service-account token is required (source-IP identification is off)")
        return self.from_ip(source_ip)

    # --- token path ----------------------------------------------------------------------------------------------
    def from_token(self, token: str) -> Caller:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("token too large")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = self.clock()
        with self._lock:
            cached = self._reviews.get(digest)
        if cached and cached[0] > now and self._confirmed(cached[1]):
            return self._still_there(cached[1])
        if self.reviewer is None:
            raise Unauthorized("token authentication is not configured (no Kubernetes API server)")
        status = self.reviewer(token, self.audiences)
        try:
            caller = self._caller_from_review(status)
        except Unauthorized:
            with self._lock:  # the API server now says no: an older positive answer must not come back
                self._reviews.pop(digest, None)
            raise
        with self._lock:
            if len(self._reviews) > 10000:
                self._reviews = {k: v for k, v in self._reviews.items() if v[0] > now}
            self._reviews[digest] = (now + self.review_cache_seconds, caller)
        return self._still_there(caller)

    def _caller_from_review(self, status: dict[str, Any]) -> Caller:
        if not status.get("authenticated"):
            raise Unauthorized("the service-account token was not accepted by the API server")
        granted = set(status.get("audiences") or ())
        if not granted & set(self.audiences):
            raise Unauthorized(f"the token's audience is not one of {', '.join(self.audiences)}")
        user = status.get("user") or {}
        username = str(user.get("username") or "")
        if not username.startswith(SA_PREFIX) or username.count(":") != 3:
            raise Unauthorized("the token does not belong to a service account")
        namespace, service_account = username[len(SA_PREFIX):].split(":")
        extra = user.get("extra") or {}
        pod_name = _first(extra.get(EXTRA_POD_NAME))
        pod_uid = _first(extra.get(EXTRA_POD_UID))
        if not pod_name or not pod_uid:
            raise Unauthorized("the token is not bound to a pod (use a projected service-account token)")
        return Caller(namespace, pod_name, pod_uid, service_account, method="token")

    def _confirmed(self, caller: Caller) -> bool:
        """Whether a cached review may answer: only while a fresh index lists the token's pod.

        A cached review says the pod existed when it was reviewed. If the index does not list the pod now (deleted,
        or not seen yet), or the index may be stale (a silent watch could hide the pod's delete), the review cache
        is bypassed: a live TokenReview asks the API server, which checks that the bound pod still exists, and if
        it cannot be asked the request fails closed (503).
        """
        return self.pods.pod_by_uid(caller.pod_uid) is not None and self.pods.is_fresh()

    def _still_there(self, caller: Caller) -> Caller:
        """A bound token names a pod; if the index knows that uid it must agree (name, namespace, account), and if
        the index saw that pod deleted the token is refused whatever a review (cached or the API server's) says."""
        pod = self.pods.pod_by_uid(caller.pod_uid)
        if pod is None:
            if self.pods.was_deleted(caller.pod_uid):
                self._forget_review(caller.pod_uid)
                raise CallerRefused(f"the pod {caller.ref} this token is bound to has been deleted", "pod-deleted")
            # Only reached on a live review: the API server just vouched for the pod; the index may lag behind.
            return caller
        facts = PodFacts.of(pod)
        if (facts.namespace, facts.name, facts.service_account) != (
            caller.namespace, caller.pod_name, caller.service_account,
        ):
            raise CallerRefused("the token's pod does not match the pod index", "token-pod-mismatch")
        if facts.phase in TERMINAL_PHASES:
            raise CallerRefused("the token's pod has finished", "pod-finished")
        return Caller(caller.namespace, caller.pod_name, caller.pod_uid, caller.service_account,
                      pod_ip=facts.ip, method="token")

    # --- source-IP path ------------------------------------------------------------------------------------------
    def from_ip(self, ip: str) -> Caller:
        live = [PodFacts.of(p) for p in self.pods.pods_by_ip(ip)]
        live = [p for p in live if p.phase not in TERMINAL_PHASES]
        # A terminating pod (deletionTimestamp set) may already have lost its IP to a new pod: never its identity.
        terminating = [p for p in live if p.terminating]
        live = [p for p in live if not p.terminating]
        if any(p.host_network for p in live):
            raise CallerRefused(
                f"{ip} is a node address shared by hostNetwork pods; present a service-account token instead",
                "host-network",
            )
        if not live and terminating:
            raise CallerRefused(f"the pod at {ip} is terminating", "terminating")
        if not live:
            if self._host_network_at(ip):
                raise CallerRefused(
                    f"{ip} is a node address shared by hostNetwork pods; present a service-account token instead",
                    "host-network",
                )
            raise NotFound(f"no pod is known with IP {ip}")
        if len(live) > 1:
            raise CallerRefused(f"several live pods report IP {ip}; refusing to guess", "ambiguous-ip")
        pod = live[0]
        if pod.phase not in SERVED_PHASES:
            raise CallerRefused(f"the pod at {ip} is not running ({pod.phase or 'unknown'} phase)", "not-running")
        with self._lock:
            previous = self._decisions.get(ip)
            self._decisions[ip] = pod.uid
        if previous and previous != pod.uid:
            # The IP changed hands: whatever was decided (and cached) for the old owner must not leak over.
            log.info("pod IP changed owner; old decision dropped", extra={"path": ip})
            if self.on_owner_change is not None:
                self.on_owner_change(ip, previous)
        return Caller(pod.namespace, pod.name, pod.uid, pod.service_account, pod_ip=ip, method="ip",
                      node_name=pod.node_name)

    def _host_network_at(self, ip: str) -> bool:
        """Indexes may leave hostNetwork pods out of the IP index; on a miss, say why instead of 'unknown'."""
        every = getattr(self.pods, "pods", None)
        if not callable(every):
            return False
        return any(f.host_network and f.ip == ip for f in map(PodFacts.of, every()))

    def forget_pod(self, uid: str) -> None:
        """Drop decisions about a deleted pod (pod watch callback)."""
        with self._lock:
            for ip in [ip for ip, owner in self._decisions.items() if owner == uid]:
                del self._decisions[ip]
        self._forget_review(uid)

    def _forget_review(self, uid: str) -> None:
        with self._lock:
            self._reviews = {k: v for k, v in self._reviews.items() if v[1].pod_uid != uid}


def _first(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return str(value[0]) if value else ""
    return str(value or "")


class SessionTokens:
    """IMDSv2 session tokens bound to the pod uid that asked: `kid.uid|expiry.mac`, HMAC'd with a shared key.

    The key is shared by every process and replica (a mounted key file, or a random key kept in the store), so a
    token PUT on one replica is accepted by a GET on another. `kid` names the key that signed a token: the first
    key signs, every listed key verifies, so a key can be rotated by adding the new one first and dropping the
    old one after the longest token TTL (6 h).
    """

    def __init__(self, key: bytes | None = None, clock: Callable[[], float] = time.time, *,
                 keys: Sequence[bytes] = ()) -> None:
        chain = list(keys) or [key or secrets.token_bytes(32)]
        self._keys = {key_id(k): k for k in chain}
        self._kid = key_id(chain[0])
        self.clock = clock

    def issue(self, uid: str, ttl: int) -> str:
        body = f"{uid}|{int(self.clock()) + ttl}".encode()
        mac = hmac.new(self._keys[self._kid], body, hashlib.sha256).digest()[:18]
        return (self._kid + "." + base64.urlsafe_b64encode(body).decode().rstrip("=") + "."
                + base64.urlsafe_b64encode(mac).decode())

    def check(self, token: str, uid: str) -> None:
        """Raise Unauthorized unless `token` is a live session token issued to pod `uid`."""
        try:
            kid, body_b64, mac_b64 = token.split(".", 2)
            body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
            mac = base64.urlsafe_b64decode(mac_b64)
        except (ValueError, TypeError):
            raise Unauthorized("invalid IMDS session token") from None
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("invalid IMDS session token (unknown key; ask for a new one)")
        expected = hmac.new(key, body, hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(mac, expected):
            raise Unauthorized("invalid IMDS session token")
        owner, _, expiry = body.decode("utf-8", "replace").rpartition("|")
        if not (expiry.isascii() and expiry.isdigit()) or int(expiry) < self.clock():
            raise Unauthorized("expired IMDS session token")
        if not hmac.compare_digest(owner.encode(), uid.encode()):
            raise Unauthorized("the IMDS session token was issued to another pod")


def key_id(key: bytes) -> str:
    """A short public name of a key (not reversible): which key signed a session token."""
    return hashlib.sha256(b"kagiya-imds-session-kid|" + key).hexdigest()[:8]


SESSION_KEY_NAME = "iam-imds-session"


def session_keys(path: str, store: Any) -> list[bytes]:
    """The session-token keys: lines of `path` (first signs, all verify), else one random key shared via the store.

    Raises ConfigError when the file cannot be read, holds no key of at least 32 characters, or is accessible
    by group or others.
    """
    from kagiya.errors import ConfigError

    if path:
        from kagiya.private_files import require_private

        try:
            with open(path, encoding="utf-8") as fh:
                lines = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            raise ConfigError(f"credentials.session_key_file: cannot read {path}: {exc.strerror}") from None
        if not lines or any(len(line) < 32 for line in lines):
            raise ConfigError("credentials.session_key_file: one key per line, each at least 32 characters")
        require_private(path, "credentials.session_key_file")  # a readable key would let anyone forge sessions
        return [line.encode() for line in lines]
    return [store.shared_key(SESSION_KEY_NAME)]


def kube_token_reviewer(api_client: Any, timeout: float) -> TokenReviewer:
    """A TokenReviewer calling `POST /apis/authentication.k8s.io/v1/tokenreviews` with the kubernetes client."""

    def review(token: str, audiences: Sequence[str]) -> dict[str, Any]:
        from kubernetes import client as k8s
        from kubernetes.client.rest import ApiException

        body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=list(audiences)))
        try:
            reply = k8s.AuthenticationV1Api(api_client).create_token_review(body, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status in (401, 403):
                log.error("kagiya may not create TokenReviews (HTTP %s)", exc.status)
            raise UpstreamUnavailable(f"TokenReview failed (HTTP {exc.status})") from None
        except Exception as exc:  # noqa: BLE001 - urllib3/socket errors: the API server is unreachable
            log.warning("TokenReview unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("the Kubernetes API server is unreachable") from None
        status = reply.status
        if status is None:
            return {"authenticated": False}
        user = status.user
        return {
            "authenticated": bool(status.authenticated),
            "audiences": list(status.audiences or []),
            "user": {
                "username": getattr(user, "username", "") or "",
                "extra": dict(getattr(user, "extra", None) or {}),
            },
        }

    return review
