"""A small kube-apiserver stand-in (no real one can run here; ../../shared/specs/test-infrastructure.md).

Speaks the real wire protocol for what kagiya uses, so tests drive it through the official `kubernetes` client:
- namespaces, serviceaccounts, pods: GET list (cluster-wide and per namespace), GET one, `fieldSelector`
  (`metadata.name`, `metadata.namespace`, `spec.nodeName`, `spec.serviceAccountName`, `status.podIP`,
  `status.phase`; `=`, `==`, `!=`) and `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`), `limit`/`continue`;
- `?watch=true`: newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`) after `resourceVersion`, `BOOKMARK`
  events when `allowWatchBookmarks=true`, the stream ends after `timeoutSeconds`; a resourceVersion older than the
  compaction point answers a watch `ERROR` event carrying a `Status` with code 410 (`Expired`), as the real server
  does (or, with `gone_as_http=True`, an HTTP 410 Status);
- `POST /apis/authentication.k8s.io/v1/tokenreviews` (the client sends no Content-Type): tokens issued by
  `issue_token()` for a pod's service account, with audiences and expiry; a token bound to a pod stops being valid
  when that pod is gone, like bound service-account tokens;
- errors are `Status` objects. Optional bearer-token check on every request (`require_token`).

Test controls: `add_*`, `update_pod`, `delete`, `drop_watches()` (end every open watch), `block_watches()` /
`unblock_watches()` (refuse new watches with 503 for a while: the "gap"), `compact()` (forget history: resuming
from an older resourceVersion gets 410), and counters of list/watch requests per kind.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

from tests.support.threaded import ThreadedServer

KINDS = {"namespaces": "Namespace", "serviceaccounts": "ServiceAccount", "pods": "Pod"}
API_AUDIENCE = "https://kubernetes.default.svc"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


@dataclass
class IssuedToken:
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    audiences: tuple[str, ...]
    expires: float
    sa_uid: str


@dataclass
class Event:
    rv: int
    kind: str
    type: str
    obj: dict[str, Any]


@dataclass
class KubeApiServer:
    """`with KubeApiServer() as kube:`; `kube.url` for `Configuration(host=...)`."""

    bookmark_interval: float = 0.25
    #: Bookmarks with the global resourceVersion while nothing of the watched kind changes (the real apiserver
    #: sends none then; see `_stream`).
    quiet_bookmarks: bool = True
    gone_as_http: bool = False
    require_token: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    rv: int = 1000
    compacted_rv: int = 0
    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=lambda: {k: {} for k in KINDS})
    events: list[Event] = field(default_factory=list)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    list_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    watch_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    gone_answers: int = 0

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.generation = 0
        self.watches_blocked = False
        self.app = self._make_app()
        self._server: ThreadedServer | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> KubeApiServer:
        """Listen on `host:port` (0: a free port, then kept, so a restart comes back on the same one)."""
        self._server = ThreadedServer(self.app, "kube-standin", host=self.host).start(self.port)
        self.port = self._server.port
        return self

    def stop(self) -> None:
        self.drop_watches()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- objects ---------------------------------------------------------------------------------------------
    def add_namespace(self, name: str, annotations: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None) -> dict[str, Any]:
        obj = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
                            "annotations": dict(annotations or {})},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
        return self.put("namespaces", obj)

    def add_service_account(self, namespace: str, name: str,
                            annotations: dict[str, str] | None = None) -> dict[str, Any]:
        obj = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                            "creationTimestamp": _now(), "annotations": dict(annotations or {})}}
        return self.put("serviceaccounts", obj)

    def add_pod(self, namespace: str, name: str, *, ip: str = "", service_account: str = "default",
                labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                node: str = "node-1", host_network: bool = False, phase: str = "Running") -> dict[str, Any]:
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                            "creationTimestamp": _now(), "labels": dict(labels or {}),
                            "annotations": dict(annotations or {})},
               "spec": {"serviceAccountName": service_account, "serviceAccount": service_account,
                        "nodeName": node, "hostNetwork": host_network,
                        "containers": [{"name": "app", "image": "registry.example/app:1"}]},
               "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                          "hostIP": "192.0.2.10"}}
        return self.put("pods", obj)

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object, bumping resourceVersion and recording the watch event."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self.cond:
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            existed = key in self.objects[kind]
            self.objects[kind][key] = obj
            self.events.append(Event(self.rv, kind, "MODIFIED" if existed else "ADDED", copy.deepcopy(obj)))
            self.cond.notify_all()
        return obj

    def update_pod(self, namespace: str, name: str, **changes: Any) -> dict[str, Any]:
        obj = copy.deepcopy(self.objects["pods"][(namespace, name)])
        for path, value in changes.items():
            section, _, key = path.partition("__")
            obj[section][key] = value
        return self.put("pods", obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self.cond:
            obj = self.objects[kind].pop((namespace, name))
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.events.append(Event(self.rv, kind, "DELETED", copy.deepcopy(obj)))
            self.cond.notify_all()

    # ---- failure injection -----------------------------------------------------------------------------------
    def drop_watches(self) -> None:
        """End every open watch stream now (the client sees the stream close)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def block_watches(self) -> None:
        """Drop open watches and answer new ones 503 until `unblock_watches()`."""
        self.watches_blocked = True
        self.drop_watches()

    def unblock_watches(self) -> None:
        self.watches_blocked = False

    def compact(self) -> None:
        """Forget history up to now: a watch resuming from an older resourceVersion gets 410 Gone."""
        with self.cond:
            self.compacted_rv = self.rv
            self.events = []

    # ---- tokens ----------------------------------------------------------------------------------------------
    def issue_token(self, namespace: str, service_account: str, *, pod_name: str = "", pod_uid: str = "",
                    audiences: tuple[str, ...] = (API_AUDIENCE,), expires_in: float = 3600) -> str:
        """A projected service-account token (JWT-shaped, opaque to clients) registered for TokenReview."""
        sa = self.objects["serviceaccounts"].get((namespace, service_account))
        claims = {"iss": "https://kubernetes.default.svc.cluster.local", "aud": list(audiences),
                  "sub": f"system:serviceaccount:{namespace}:{service_account}", "exp": int(time.time() + expires_in),
                  "jti": secrets.token_hex(8)}

        def b64(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        token = f"{b64({'alg': 'RS256', 'kid': 'standin'})}.{b64(claims)}.{secrets.token_urlsafe(32)}"
        self.tokens[token] = IssuedToken(namespace, service_account, pod_name, pod_uid, tuple(audiences),
                                         time.time() + expires_in, sa["metadata"]["uid"] if sa else "")
        return token

    def _review(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        token = spec.get("token") or ""
        wanted = list(spec.get("audiences") or [])
        out: dict[str, Any] = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                               "metadata": {"creationTimestamp": None}, "spec": spec}
        issued = self.tokens.get(token)
        error = ""
        if issued is None:
            error = "invalid bearer token, token lookup failed"
        elif issued.expires < time.time():
            error = "invalid bearer token, token has expired"
        elif issued.pod_name:
            pod = self.objects["pods"].get((issued.namespace, issued.pod_name))
            if pod is None or pod["metadata"]["uid"] != issued.pod_uid:
                error = f"invalid bearer token, pod {issued.namespace}/{issued.pod_name} not found"
        if not error and issued is not None:
            matched = [a for a in (wanted or [API_AUDIENCE]) if a in issued.audiences]
            if not matched:
                error = "invalid bearer token, token audiences is invalid for the target audiences"
        if error or issued is None:
            out["status"] = {"authenticated": False, "error": error, "user": {}}
            return out
        extra: dict[str, list[str]] = {}
        if issued.pod_name:
            extra = {"authentication.kubernetes.io/pod-name": [issued.pod_name],
                     "authentication.kubernetes.io/pod-uid": [issued.pod_uid]}
            bound = self.objects["pods"].get((issued.namespace, issued.pod_name)) or {}
            node = (bound.get("spec") or {}).get("nodeName")
            if node:  # Kubernetes >= 1.30 (ServiceAccountTokenPodNodeInfo) names the pod's node too
                extra["authentication.kubernetes.io/node-name"] = [node]
        out["status"] = {
            "authenticated": True,
            "user": {"username": f"system:serviceaccount:{issued.namespace}:{issued.service_account}",
                     "uid": issued.sa_uid, "groups": ["system:serviceaccounts",
                                                      f"system:serviceaccounts:{issued.namespace}",
                                                      "system:authenticated"], "extra": extra},
            "audiences": matched if wanted else [],
        }
        return out

    # ---- HTTP ------------------------------------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("kube-apiserver-standin")

        def reply(body: dict[str, Any], code: int = 200) -> Response:
            return Response(json.dumps(body), status=code, content_type="application/json")

        @app.before_request
        def _auth() -> Response | None:
            if self.require_token and request.headers.get("Authorization") != f"Bearer {self.require_token}":
                return reply(status(401, "Unauthorized", "Unauthorized"), 401)
            return None

        @app.get("/api/v1/<kind>")
        def list_all(kind: str) -> Response:
            return self._list_or_watch(kind, None)

        @app.get("/api/v1/namespaces/<namespace>/<kind>")
        def list_ns(namespace: str, kind: str) -> Response:
            return self._list_or_watch(kind, namespace)

        @app.get("/api/v1/namespaces/<name>")
        def get_namespace(name: str) -> Response:
            obj = self.objects["namespaces"].get(("", name))
            if obj is None:
                return reply(status(404, "NotFound", f'namespaces "{name}" not found'), 404)
            return reply(obj)

        @app.get("/api/v1/namespaces/<namespace>/<kind>/<name>")
        def get_one(namespace: str, kind: str, name: str) -> Response:
            if kind not in KINDS or kind == "namespaces":
                return reply(status(404, "NotFound", "the server could not find the requested resource"), 404)
            obj = self.objects[kind].get((namespace, name))
            if obj is None:
                missing = status(404, "NotFound", f'{kind} "{name}" not found')
                missing["details"] = {"name": name, "kind": kind}  # as the real apiserver names it
                return reply(missing, 404)
            return reply(obj)

        @app.post("/apis/authentication.k8s.io/v1/tokenreviews")
        def token_review() -> Response:
            body = request.get_json(force=True, silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
                return reply(status(400, "BadRequest", "a TokenReview with spec.token is required"), 400)
            return reply(self._review(body), 201)

        @app.errorhandler(404)
        def _not_found(_exc: Any) -> Response:
            return reply(status(404, "NotFound", "the server could not find the requested resource"), 404)

        self._reply = reply
        return app

    def _list_or_watch(self, kind: str, namespace: str | None) -> Response:
        reply = self._reply
        if kind not in KINDS or (kind == "namespaces" and namespace is not None):
            return reply(status(404, "NotFound", "the server could not find the requested resource"), 404)
        try:
            match = _selector(request.args.get("fieldSelector", ""), request.args.get("labelSelector", ""),
                              namespace)
        except ValueError as exc:
            return reply(status(400, "BadRequest", str(exc)), 400)
        if request.args.get("watch") in ("true", "1"):
            return self._watch(kind, match)
        self.list_calls[kind] += 1
        with self.cond:
            items = sorted((o for o in self.objects[kind].values() if match(o)),
                           key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            rv = str(self.rv)
        start = 0
        if request.args.get("continue"):
            try:
                start = int(base64.urlsafe_b64decode(request.args["continue"]).decode())
            except ValueError:
                return reply(status(400, "BadRequest", "invalid continue token"), 400)
        meta: dict[str, Any] = {"resourceVersion": rv}
        limit = int(request.args.get("limit") or 0)
        if limit:
            if start + limit < len(items):
                meta["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - limit
            items = items[start:start + limit]
        with self.cond:
            body = json.dumps({"kind": KINDS[kind] + "List", "apiVersion": "v1", "metadata": meta, "items": items})
        return Response(body, content_type="application/json")

    def _watch(self, kind: str, match: Any) -> Response:
        reply = self._reply
        self.watch_calls[kind] += 1
        if self.watches_blocked:
            return reply(status(503, "ServiceUnavailable", "watches are blocked (test gap)"), 503)
        try:
            since = int(request.args.get("resourceVersion") or 0)
            timeout = float(request.args.get("timeoutSeconds") or 1800)
        except ValueError:
            return reply(status(400, "BadRequest", "resourceVersion and timeoutSeconds must be numbers"), 400)
        bookmarks = request.args.get("allowWatchBookmarks") in ("true", "1")
        if since and since < self.compacted_rv:
            self.gone_answers += 1
            gone = status(410, "Expired", f"too old resource version: {since} ({self.compacted_rv})")
            if self.gone_as_http:
                return reply(gone, 410)
            return Response(json.dumps({"type": "ERROR", "object": gone}) + "\n", content_type="application/json")
        if not since:
            since = self.rv  # "0"/absent: start from now (the state before is what a list returns)
        return Response(self._stream(kind, match, since, timeout, bookmarks), content_type="application/json")

    def _stream(self, kind: str, match: Any, since: int, timeout: float, bookmarks: bool) -> Iterator[str]:
        """Events of `kind` after `since`, and a bookmark every `bookmark_interval`.

        With `quiet_bookmarks` (the default, kept for the tests written against it) a bookmark carries the global
        resourceVersion even when nothing of this kind changed. The real apiserver's watch cache does not: its
        bookmarks only report this kind's own progress, so a watch on a kind that does not change gets no bookmark
        at all (measured: none in 150 s from kube-apiserver 1.32 over etcd 3.4), and one that changed gets one shortly
        before `timeoutSeconds` ends it. `quiet_bookmarks=False` behaves so.
        """
        generation = self.generation
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        last = told = since
        while True:
            with self.cond:
                pending = [e for e in self.events if e.rv > last and e.kind == kind]
                if not pending and self.generation == generation:
                    wait = min(deadline, next_bookmark if bookmarks else deadline) - time.monotonic()
                    if wait > 0:
                        self.cond.wait(wait)
                    pending = [e for e in self.events if e.rv > last and e.kind == kind]
                dropped = self.generation != generation
                current = self.rv
            if dropped:
                return
            for event in pending:
                last = event.rv
                if match(event.obj):
                    told = last
                    yield json.dumps({"type": event.type, "object": event.obj}) + "\n"
            now = time.monotonic()
            if now >= deadline:
                if bookmarks and not self.quiet_bookmarks and last > since:
                    yield _bookmark(kind, last)  # the real one sends it about a second before the end
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + self.bookmark_interval
                if self.quiet_bookmarks:
                    last = max(last, current)  # every event up to `current` was in `pending`
                if self.quiet_bookmarks or last > told:  # else only when events were filtered out
                    told = last
                    yield _bookmark(kind, last)


def _bookmark(kind: str, rv: int) -> str:
    """The real apiserver's bookmark: an empty object of the kind, `creationTimestamp: null`."""
    return json.dumps({"type": "BOOKMARK", "object": {"kind": KINDS[kind], "apiVersion": "v1",
                                                       "metadata": {"resourceVersion": str(rv),
                                                                    "creationTimestamp": None}}}) + "\n"


def _get(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part, "") if isinstance(cur, dict) else ""
    return "" if cur is None else str(cur)


FIELDS = {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.serviceAccountName", "status.podIP",
          "status.phase"}


def _selector(fields: str, labels: str, namespace: str | None) -> Any:
    """A predicate for fieldSelector/labelSelector (basic equality forms); raises ValueError on bad syntax."""
    tests: list[Any] = []
    if namespace is not None:
        tests.append(lambda o: o["metadata"].get("namespace") == namespace)
    for term in filter(None, (t.strip() for t in fields.split(","))):
        neg = "!=" in term
        key, _, value = term.partition("!=" if neg else ("==" if "==" in term else "="))
        if key not in FIELDS:
            raise ValueError(f'field label not supported: {key}')
        tests.append(lambda o, k=key, v=value, n=neg: (_get(o, k) == v) != n)
    for term in filter(None, (t.strip() for t in labels.split(","))):
        if "!=" in term:
            k, _, v = term.partition("!=")
            tests.append(lambda o, k=k, v=v: (o["metadata"].get("labels") or {}).get(k) != v)
        elif "=" in term:
            k, _, v = term.replace("==", "=").partition("=")
            tests.append(lambda o, k=k, v=v: (o["metadata"].get("labels") or {}).get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda o, k=term[1:]: k not in (o["metadata"].get("labels") or {}))
        elif all(c.isalnum() or c in "-_./" for c in term):
            tests.append(lambda o, k=term: k in (o["metadata"].get("labels") or {}))
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return lambda o: all(t(o) for t in tests)
