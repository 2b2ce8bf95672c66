"""The watch-fed index through the real kubernetes client against the stand-in: resync after dropped watches and
410 Gone, bookmarks, readiness until the first sync, pod subscriptions, and IP lookups that refuse to guess."""

from __future__ import annotations

from typing import Any

import pytest

from kagiya.errors import UpstreamUnavailable
from kagiya.kube import KubeIndex, KubeWatcher
from tests.conftest import bearer
from tests.iam.conftest import arn, wait_until
from tests.standins.kube_apiserver import KubeApiServer

DEV, ADMIN = bearer("dev-token-0002"), bearer("admin-token-0001")


@pytest.mark.parametrize("gone_as_http", [False, True], ids=["error-event", "http-410"])
def test_index_recovers_after_dropped_watch_and_410(kube: KubeApiServer, iam_client: Any, iam_app: Any,
                                                     gone_as_http: bool) -> None:
    from kagiya.iam.context import iam_context

    ctx = iam_context(iam_app)
    watcher = ctx.watcher
    assert watcher is not None
    kube.gone_as_http = gone_as_http
    iam_client.put("/v1/iam/policies/team-a", json={"allow": [{"cloud": "aws", "glob": arn("app-*")}]},
                   headers=ADMIN)
    relists_before = watcher.relists["pods"]

    kube.block_watches()  # the watch drops and cannot come back: the gap
    kube.add_pod("team-a", "born-in-gap", ip="10.1.0.50", service_account="web",
                 annotations={"iam.amazonaws.com/role": "app-gap"})
    kube.delete("pods", "team-a", "web-1")
    kube.compact()  # the history of the gap is gone: resuming from the old resourceVersion answers 410
    assert ctx.kube_index().pod("team-a", "born-in-gap") is None
    kube.unblock_watches()

    assert wait_until(lambda: ctx.kube_index().pod("team-a", "born-in-gap") is not None)
    assert kube.gone_answers >= 1 and watcher.relists["pods"] > relists_before
    assert ctx.kube_index().pod("team-a", "web-1") is None  # deleted during the gap: gone after the relist
    result = iam_client.get("/v1/iam/explain?namespace=team-a&pod=born-in-gap&cloud=aws", headers=DEV).json
    assert result["results"][0]["allowed"] and result["results"][0]["identity"]["identity"] == arn("app-gap")
    assert ctx.kube_index().pod_by_ip("10.1.0.50").name == "born-in-gap"  # type: ignore[union-attr]
    # Still watching after the recovery.
    kube.add_pod("team-a", "after", ip="10.1.0.51")
    assert wait_until(lambda: ctx.kube_index().pod("team-a", "after") is not None)


def test_plain_disconnect_resumes_without_relisting(kube: KubeApiServer, iam_app: Any) -> None:
    from kagiya.iam.context import iam_context

    ctx = iam_context(iam_app)
    relists = dict(ctx.watcher.relists)  # type: ignore[union-attr]
    kube.drop_watches()
    kube.add_pod("team-a", "after-drop", ip="10.1.0.60")
    assert wait_until(lambda: ctx.kube_index().pod("team-a", "after-drop") is not None)
    assert ctx.watcher.relists == relists  # type: ignore[union-attr]


def test_bookmarks_advance_the_resource_version(kube: KubeApiServer, iam_app: Any) -> None:
    from kagiya.iam.context import iam_context

    watcher = iam_context(iam_app).watcher
    kube.add_namespace("elsewhere")  # bumps the global resourceVersion; the pod watch learns it by bookmark
    target = str(kube.rv)
    assert wait_until(lambda: watcher.resource_versions["pods"] == target)  # type: ignore[union-attr]


def test_readiness_waits_for_first_sync(make_settings: Any, token_file: Any) -> None:
    from kagiya.web import create_app
    from tests.support.servers import free_port

    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "kube": {"mode": "url", "host": f"http://127.0.0.1:{free_port()}", "retry_seconds": 0.05,
                                       "timeout_seconds": 0.5}})
    app = create_app(settings)
    try:
        resp = app.test_client().get("/readyz")
        assert resp.status_code == 503
        assert resp.json["details"]["checks"]["kube"].startswith("kubernetes index not synced yet")
    finally:
        app.extensions["kagiya.iam"].watcher.stop(2)
        app.extensions["kagiya.store"].dispose()


def test_ready_after_sync(iam_client: Any) -> None:
    resp = iam_client.get("/readyz")
    assert resp.status_code == 200 and resp.json["checks"]["kube"] == "ok"


def test_bad_kube_config_fails_at_start(make_settings: Any) -> None:
    from kagiya.errors import ConfigError
    from kagiya.web import create_app

    with pytest.raises(ConfigError, match="kube.host is required"):
        create_app(make_settings({"kube": {"mode": "url"}}))


def test_pod_subscriptions_see_adds_changes_and_deletes(kube: KubeApiServer, make_settings: Any) -> None:
    settings = make_settings({"kube": {"mode": "url", "host": kube.url, "retry_seconds": 0.05}}).section("kube")
    watcher = KubeWatcher(settings)
    events: list[tuple[str, str, str]] = []
    watcher.index.subscribe(lambda event, pod: events.append((event, pod.name, pod.phase)))
    watcher.ensure_running()
    try:
        assert watcher.index.wait_synced(10)
        assert events == [("added", "web-1", "Running")]
        kube.add_pod("team-a", "job", ip="10.1.0.70")
        kube.update_pod("team-a", "job", status__phase="Succeeded")
        kube.delete("pods", "team-a", "job")
        assert wait_until(lambda: len(events) == 4)
        assert events[1:] == [("added", "job", "Running"), ("modified", "job", "Succeeded"),
                              ("deleted", "job", "Succeeded")]
    finally:
        watcher.stop(2)


def test_a_broken_listener_does_not_stop_the_index() -> None:
    index = KubeIndex()
    index.subscribe(lambda event, pod: 1 / 0)
    index.apply("pods", "ADDED", pod("a", "10.0.0.1"))
    assert index.pod("ns", "a") is not None


def pod(name: str, ip: str, *, host_network: bool = False, phase: str = "Running", uid: str = "") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": uid or f"uid-{name}", "resourceVersion": "1"},
            "spec": {"serviceAccountName": "sa", "hostNetwork": host_network},
            "status": {"podIP": ip, "phase": phase}}


def test_ip_lookups_refuse_to_guess() -> None:
    index = KubeIndex()
    index.apply("pods", "ADDED", pod("a", "10.0.0.1"))
    assert index.pod_by_ip("10.0.0.1").name == "a"  # type: ignore[union-attr]
    index.apply("pods", "ADDED", pod("b", "10.0.0.1"))  # IP reused before the old pod's delete arrived
    assert index.pod_by_ip("10.0.0.1") is None and len(index.pods_by_ip("10.0.0.1")) == 2
    index.apply("pods", "DELETED", pod("a", "10.0.0.1"))
    assert index.pod_by_ip("10.0.0.1").name == "b"  # type: ignore[union-attr]
    index.apply("pods", "ADDED", pod("node-agent", "192.0.2.10", host_network=True))
    assert index.pod_by_ip("192.0.2.10") is None and index.pod_by_uid("uid-node-agent") is not None
    index.apply("pods", "MODIFIED", pod("b", "10.0.0.1", phase="Succeeded"))
    assert index.pods_by_ip("10.0.0.1") == []  # a finished pod's IP may already belong to someone else
    index.replace("pods", [pod("c", "10.0.0.3")])
    assert [p.name for p in index.pods()] == ["c"] and index.pod_by_uid("uid-b") is None


def test_kubeconfig_and_bearer_token_modes(kube: KubeApiServer, make_settings: Any, tmp_path: Any) -> None:
    kube.require_token = "standin-secret-token"
    token_file = tmp_path / "token"
    token_file.write_text("standin-secret-token\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters: [{{name: standin, cluster: {{server: '{kube.url}'}}}}]\n"
        "users: [{name: u, user: {token: standin-secret-token}}]\n"
        "contexts: [{name: test, context: {cluster: standin, user: u}}]\n")
    for kube_settings in ({"mode": "url", "host": kube.url, "token_file": str(token_file)},
                          {"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "context": "test"}):
        watcher = KubeWatcher(make_settings({"kube": kube_settings}).section("kube"))
        watcher.ensure_running()
        try:
            assert watcher.index.wait_synced(10), watcher.last_error
            assert watcher.index.pod("team-a", "web-1") is not None
        finally:
            watcher.stop(2)
    unauthenticated = KubeWatcher(make_settings({"kube": {"mode": "url", "host": kube.url,
                                                          "retry_seconds": 0.05}}).section("kube"))
    unauthenticated.ensure_running()
    try:
        assert not unauthenticated.index.wait_synced(0.5)
        assert "HTTP 401" in unauthenticated.last_error
        with pytest.raises(UpstreamUnavailable, match="not synced yet.*HTTP 401"):
            unauthenticated.check_ready()
    finally:
        unauthenticated.stop(2)


def test_lists_in_pages(kube: KubeApiServer, make_settings: Any) -> None:
    for i in range(7):
        kube.add_pod("team-a", f"many-{i}", ip=f"10.1.1.{i}")
    watcher = KubeWatcher(make_settings({"kube": {"mode": "url", "host": kube.url, "list_page_size": 3}})
                          .section("kube"))
    watcher.ensure_running()
    try:
        assert watcher.index.wait_synced(10)
        assert len(watcher.index.pods()) == 8 and kube.list_calls["pods"] == 3
    finally:
        watcher.stop(2)
