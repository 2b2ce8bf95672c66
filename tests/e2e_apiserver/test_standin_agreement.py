"""The kube-apiserver stand-in (`tests/standins/kube_apiserver.py`) against the real apiserver, on what kagiya and
its stand-in tests rely on: the list envelope, watch events and bookmarks, the not-found `Status`, and the
TokenReview of a pod-bound ServiceAccount token. The same scenario runs against both; the summaries must agree.

Known and accepted differences (kagiya does not depend on them; asserted here so a change is noticed):
- a deletion: the real apiserver sends MODIFIED (deletionTimestamp set) before DELETED, the stand-in only DELETED;
- bookmarks: the real apiserver sends one shortly before `timeoutSeconds` ends a watch whose kind changed, and
  none at all on a watch of a kind that does not change (150 s measured, over etcd 3.4); the stand-in's default
  (`quiet_bookmarks=True`, which tests/iam relies on) sends the global resourceVersion every 0.25 s regardless.
  This file runs the stand-in with `quiet_bookmarks=False`, the real behaviour.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e_apiserver.cluster import Cluster
from tests.standins.kube_apiserver import KubeApiServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WATCH_SECONDS = 4


class Http:
    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None, token: str = "") -> None:
        self.port, self.tls, self.token = port, tls, token

    def connect(self, timeout: float = 20) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.token}"} if self.token else {})}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        conn = self.connect()
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers())
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


def scenario(api: Http, ns: str, create: Callable[[], None], run: Callable[[], None],
             delete: Callable[[], None], token: Callable[[], str]) -> dict[str, Any]:
    """List, watch through create / status patch / delete, then the bookmark and end; a not-found; a TokenReview."""
    listing = api.call("GET", f"/api/v1/namespaces/{ns}/pods?limit=500")[1]
    rv = listing["metadata"]["resourceVersion"]
    conn = api.connect()
    # the watch starts from the list's resourceVersion: whatever happens after the list is in the stream
    conn.request("GET", f"/api/v1/namespaces/{ns}/pods?watch=true&allowWatchBookmarks=true"
                 f"&timeoutSeconds={WATCH_SECONDS}&resourceVersion={rv}", headers=api.headers())
    started = time.monotonic()

    def act() -> None:
        create()
        run()
        time.sleep(0.3)
        review.update(api.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token(), "audiences": ["kagiya"]}})[1])
        delete()

    review: dict[str, Any] = {}
    actor = threading.Thread(target=act)
    actor.start()
    events: list[tuple[str, Any]] = []
    bookmarks: list[dict[str, Any]] = []
    try:
        lines = conn.getresponse().read().splitlines()  # the whole stream, until the server ends the watch
    finally:
        conn.close()
    ended = time.monotonic() - started
    for line in lines:
        event = json.loads(line)
        obj = event["object"]
        if event["type"] == "BOOKMARK":
            bookmarks.append(obj)
            continue
        deleting = "deletionTimestamp" in obj["metadata"]
        events.append((event["type"], obj["kind"], obj["apiVersion"], obj["status"].get("phase"),
                       obj["status"].get("podIP"), deleting))
    actor.join()
    not_found = api.call("GET", f"/api/v1/namespaces/{ns}/pods/nope")
    return {"list": {k: v for k, v in listing.items() if k != "items"}, "rv": rv, "events": events,
            "bookmarks": bookmarks, "ended": ended, "not_found": not_found, "review": review}


def real_run(cluster: Cluster) -> dict[str, Any]:
    ns = f"agree-{uuid.uuid4().hex[:6]}"
    cluster.admin("create", "namespace", ns)
    cluster.admin("create", "serviceaccount", "app", "-n", ns)
    api = Http(cluster.apiserver.port, tls=ssl.create_default_context(cafile=str(cluster.apiserver.ca_file)),
               token=cluster.apiserver.admin_token)

    def create() -> None:
        cluster.admin("create", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "example/app:1"}]}}))

    def run() -> None:
        cluster.admin("patch", "pod", "p", "-n", ns, "--subresource=status", "--type=merge", "-p",
                      json.dumps({"status": {"phase": "Running", "podIP": "10.9.0.7"}}))

    def token() -> str:
        return cluster.admin("create", "token", "app", "-n", ns, "--audience", "kagiya", "--bound-object-kind",
                             "Pod", "--bound-object-name", "p").strip()

    def delete() -> None:
        cluster.admin("delete", "pod", "p", "-n", ns, "--grace-period=0", "--force")

    result = scenario(api, ns, create, run, delete, token)
    result["namespace"] = ns
    return result


def standin_run() -> dict[str, Any]:
    ns = "agree"
    with KubeApiServer(quiet_bookmarks=False) as kube:
        kube.add_namespace(ns)
        kube.add_service_account(ns, "app")
        pod: dict[str, Any] = {}

        def create() -> None:
            pod.update(kube.add_pod(ns, "p", service_account="app", phase="Pending", node=""))

        def run() -> None:
            kube.update_pod(ns, "p", status__phase="Running", status__podIP="10.9.0.7")

        def token() -> str:
            return kube.issue_token(ns, "app", pod_name="p", pod_uid=pod["metadata"]["uid"], audiences=("kagiya",))

        def delete() -> None:
            kube.delete("pods", ns, "p")

        result = scenario(Http(kube.port), ns, create, run, delete, token)
    result["namespace"] = ns
    return result


@pytest.fixture(scope="module")
def runs(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {"real": real_run(cluster), "standin": standin_run()}


def test_list_envelope(runs: dict[str, dict[str, Any]]) -> None:
    for name, run in runs.items():
        assert run["list"]["kind"] == "PodList" and run["list"]["apiVersion"] == "v1", name
        assert isinstance(run["rv"], str) and run["rv"].isdigit(), name


def test_watch_events(runs: dict[str, dict[str, Any]]) -> None:
    real, standin = runs["real"]["events"], runs["standin"]["events"]
    expected_head = [("ADDED", "Pod", "v1", "Pending", None), ("MODIFIED", "Pod", "v1", "Running", "10.9.0.7")]
    assert [e[:5] for e in real[:2]] == expected_head
    assert [e[:5] for e in standin[:2]] == [e[:4] + ("",) if e[4] is None else e for e in expected_head]
    # deletion: the real server marks the pod (deletionTimestamp) and then deletes it; the stand-in only deletes
    assert [(e[0], e[5]) for e in real[2:]] == [("MODIFIED", True), ("DELETED", True)]
    assert [e[0] for e in standin[2:]] == ["DELETED"]


def test_bookmarks_and_the_end_of_a_watch(runs: dict[str, dict[str, Any]]) -> None:
    for name, run in runs.items():
        assert WATCH_SECONDS - 0.5 < run["ended"] < WATCH_SECONDS + 3, (name, run["ended"])
        assert run["bookmarks"], f"{name}: no bookmark before the watch ended"
        obj = run["bookmarks"][-1]
        assert obj["kind"] == "Pod" and obj["apiVersion"] == "v1", name
        assert obj["metadata"]["resourceVersion"].isdigit() and "creationTimestamp" in obj["metadata"], (name, obj)
        # the last bookmark carries the newest resourceVersion (that of the deletion)
        assert int(obj["metadata"]["resourceVersion"]) > int(run["rv"]), name
    # neither sends one every fraction of a second once nothing changes (the quiet_bookmarks stand-in sends ~16)
    for name, run in runs.items():
        assert len(run["bookmarks"]) <= 3, (name, run["bookmarks"])


def test_not_found_status(runs: dict[str, dict[str, Any]]) -> None:
    for name, run in runs.items():
        status, body = run["not_found"]
        assert status == 404, name
        assert {k: body[k] for k in ("kind", "apiVersion", "status", "reason", "code", "message")} == {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": 'pods "nope" not found'}, (name, body)
        assert body["details"] == {"name": "nope", "kind": "pods"}, (name, body)


def test_token_review_of_a_pod_bound_token(runs: dict[str, dict[str, Any]]) -> None:
    for name, run in runs.items():
        status = run["review"]["status"]
        ns = run["namespace"]
        assert status["authenticated"] is True, (name, status)
        assert status["audiences"] == ["kagiya"], name
        user = status["user"]
        assert user["username"] == f"system:serviceaccount:{ns}:app", name
        assert user["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
        extra = user["extra"]
        assert extra["authentication.kubernetes.io/pod-name"] == ["p"], name
        assert len(extra["authentication.kubernetes.io/pod-uid"]) == 1, name
        # the real server also names the token (credential-id); kagiya does not rely on it
        assert "authentication.kubernetes.io/credential-id" in extra or name == "standin", (name, extra)
