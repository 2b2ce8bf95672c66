"""A kube-apiserver stand-in for the authentication/authorization path (specs/kubernetes-webhooks.md).

Like the real apiserver started with `--authentication-token-webhook-config-file`,
`--authorization-webhook-config-file` and `--authorization-mode=Webhook,RBAC`, it:
- serves HTTPS;
- takes the bearer token and POSTs a TokenReview to the webhook named in the authn kubeconfig
  (`clusters[0].cluster.server`, verified with `certificate-authority(-data)`, presenting
  `users[0].user.client-certificate(-data)/client-key(-data)`: mutual TLS), in `webhook_version` (v1beta1 by
  default, as on many clusters); no token, a rejection or a failed review is 401 with a `Status` body;
- adds `system:authenticated`, then POSTs a SubjectAccessReview (same version; v1beta1 spells groups `group`) to
  the authz webhook; `denied` is 403 at once, `allowed` serves; "no opinion" falls to a tiny built-in RBAC that,
  like the default `system:discovery` and `system:public-info-viewer` roles, lets authenticated users read
  discovery paths and nothing else; otherwise 403 Forbidden with the apiserver's message shape;
- serves `/version`, `/api`, `/apis`, `/api/v1` discovery (enough for kubectl) and
  `GET /api/v1/namespaces/{ns}/pods` (as a `Table` when kubectl asks for one, else a `PodList`).

    with KubeApiserverAuthn(authn_kubeconfig=..., authz_kubeconfig=..., tls_cert=..., tls_key=...,
                            pods={"dev": ["web-1"]}) as api:
        api.url; api.requests   # [(method, path, status)]
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

import yaml
from flask import Flask, Response, request

from tests.support.threaded import Serving, ThreadedServer

DISCOVERY_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/version", "/version/", "/healthz", "/livez", "/readyz",
                   "/openapi/*")
POD_LIST_RE = re.compile(r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/pods$")
TABLE_ACCEPT = "as=Table"


class WebhookClient:
    """POSTs a review to a webhook described by a kubeconfig file, as kube-apiserver's webhook client does."""

    def __init__(self, kubeconfig: Path, workdir: Path, timeout: float = 10.0) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = cluster["server"]
        self.context = ssl.create_default_context(cafile=self._file(cluster, "certificate-authority", workdir))
        self.context.load_cert_chain(self._file(user, "client-certificate", workdir),
                                     self._file(user, "client-key", workdir))
        self.timeout = timeout

    @staticmethod
    def _file(section: dict[str, Any], field: str, workdir: Path) -> str:
        if section.get(field):
            return str(section[field])
        data = base64.b64decode(section[f"{field}-data"])
        path = Path(tempfile.mkstemp(dir=workdir, prefix=field)[1])
        path.write_bytes(data)
        return str(path)

    def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(self.server, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:  # noqa: S310
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code), {}
        except OSError:
            return 0, {}


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return Response(json.dumps(body), status=code, content_type="application/json")


def _path_matches(patterns: tuple[str, ...], path: str) -> bool:
    return any(path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in patterns)


class KubeApiserverAuthn(Serving):
    def __init__(self, *, authn_kubeconfig: Path, authz_kubeconfig: Path, tls_cert: Path, tls_key: Path,
                 pods: dict[str, list[str]] | None = None, webhook_version: str = "v1beta1") -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="apiserver-standin-"))
        self.authn = WebhookClient(authn_kubeconfig, self._workdir)
        self.authz = WebhookClient(authz_kubeconfig, self._workdir)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.pods = pods or {}
        self.version = webhook_version
        self.requests: list[tuple[str, str, int]] = []
        self.reviews: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = self._make_app()
        self._server = ThreadedServer(self.app, "kube-apiserver-standin")

    # ---- lifecycle ----
    def start(self, port: int | None = None) -> Self:
        """Serve HTTPS with the configured certificate (read now, so a test may write it after construction)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        self._server.ssl_context = context
        return super().start(port)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._workdir, ignore_errors=True)  # it holds the webhook client key

    # ---- authentication and authorization ----
    def authenticate(self, token: str) -> dict[str, Any] | None:
        status, body = self.authn.post({"apiVersion": f"authentication.k8s.io/{self.version}",
                                        "kind": "TokenReview", "spec": {"token": token}})
        with self._lock:
            self.reviews.append({"kind": "TokenReview", "http": status, "body": body})
        if status != 200 or body.get("apiVersion") != f"authentication.k8s.io/{self.version}":
            return None
        st = body.get("status") or {}
        return st.get("user") if st.get("authenticated") is True else None

    def authorize(self, user: dict[str, Any], attributes: dict[str, Any], resource: bool) -> tuple[str, str]:
        """('allowed'|'denied'|'no_opinion', reason)."""
        groups = [*(user.get("groups") or []), "system:authenticated"]
        spec: dict[str, Any] = {"user": user.get("username", ""), "uid": user.get("uid", ""),
                                "extra": user.get("extra") or {},
                                ("group" if self.version == "v1beta1" else "groups"): groups,
                                ("resourceAttributes" if resource else "nonResourceAttributes"): attributes}
        status, body = self.authz.post({"apiVersion": f"authorization.k8s.io/{self.version}",
                                        "kind": "SubjectAccessReview", "spec": spec})
        with self._lock:
            self.reviews.append({"kind": "SubjectAccessReview", "http": status, "body": body, "spec": spec})
        if status != 200 or body.get("apiVersion") != f"authorization.k8s.io/{self.version}":
            return "no_opinion", ""  # the apiserver treats webhook errors as no opinion
        st = body.get("status") or {}
        if st.get("allowed") is True:
            return "allowed", str(st.get("reason", ""))
        if st.get("denied") is True:
            return "denied", str(st.get("reason", ""))
        if resource:
            return "no_opinion", ""
        # built-in RBAC: discovery and version for every authenticated user
        if _path_matches(DISCOVERY_PATHS, attributes["path"]):
            return "allowed", "RBAC: system:discovery"
        return "no_opinion", ""

    # ---- the app ----
    def _make_app(self) -> Flask:
        app = Flask("kube-apiserver-standin")
        api = self

        @app.after_request
        def _record(response: Response) -> Response:
            with api._lock:
                api.requests.append((request.method, request.path, response.status_code))
            return response

        @app.before_request
        def _authn_authz() -> Response | None:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            user = api.authenticate(token) if token else None
            if user is None:
                return _status(401, "Unauthorized", "Unauthorized")
            match = POD_LIST_RE.match(request.path)
            if match:
                verb = "watch" if request.args.get("watch") in ("1", "true") else "list"
                attrs = {"namespace": match["ns"], "verb": verb, "group": "", "version": "v1", "resource": "pods"}
                decision, reason = api.authorize(user, attrs, resource=True)
                if decision != "allowed":
                    message = (f'pods is forbidden: User "{user.get("username")}" cannot {verb} resource "pods" '
                               f'in API group "" in the namespace "{match["ns"]}"' + (f": {reason}" if reason else ""))
                    return _status(403, "Forbidden", message, {"kind": "pods"})
                return None
            decision, reason = api.authorize(user, {"path": request.path, "verb": request.method.lower()},
                                             resource=False)
            if decision != "allowed":
                message = (f'forbidden: User "{user.get("username")}" cannot {request.method.lower()} path '
                           f'"{request.path}"' + (f": {reason}" if reason else ""))
                return _status(403, "Forbidden", message)
            return None

        @app.get("/version")
        def version() -> Response:
            return _json({"major": "1", "minor": "32", "gitVersion": "v1.32.0-kagiya-standin",
                          "platform": "linux/amd64"})

        @app.get("/api")
        def api_versions() -> Response:
            return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})

        @app.get("/apis")
        def api_groups() -> Response:
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

        @app.get("/api/v1")
        def core_resources() -> Response:
            return _json({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                 "verbs": ["get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
                 "verbs": ["get", "list"], "shortNames": ["ns"]},
            ]})

        @app.get("/api/v1/namespaces/<ns>/pods")
        def pods(ns: str) -> Response:
            names = api.pods.get(ns, [])
            created = "2026-11-26T00:00:00Z"
            metas = [{"name": n, "namespace": ns, "uid": f"uid-{n}", "resourceVersion": "1",
                      "creationTimestamp": created} for n in names]
            if TABLE_ACCEPT in request.headers.get("Accept", ""):
                return _json({
                    "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
                    "columnDefinitions": [
                        {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                        {"name": "Ready", "type": "string", "format": "", "description": "Ready", "priority": 0},
                        {"name": "Status", "type": "string", "format": "", "description": "Phase", "priority": 0},
                    ],
                    "rows": [{"cells": [m["name"], "1/1", "Running"],
                              "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                         "metadata": m}} for m in metas],
                })
            return _json({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                          "items": [{"kind": "Pod", "apiVersion": "v1", "metadata": m,
                                     "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                                     "status": {"phase": "Running"}} for m in metas]})

        @app.errorhandler(404)
        def not_found(_exc: Exception) -> Response:
            return _status(404, "NotFound", "the server could not find the requested resource")

        return app


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), content_type="application/json")
