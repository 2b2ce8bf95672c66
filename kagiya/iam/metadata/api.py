"""HTTP surface of the metadata endpoints (AWS IMDS, container credentials, GCE), the admission webhook, and the
agent-forwarding route; and the wiring between them and the bindings capability.

Spec: ../shared/specs/cloud-identity.md. The iam capability (kagiya/iam/api.py) owns the `IamContext` (store,
settings, the watch-fed pod index); this module only reads it: `resolve_workload` decides which identity a pod
gets, the pod index identifies callers, and the index's pod events drive prefetch and eviction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from kagiya.config import Settings
from kagiya.errors import KagiyaError, UpstreamUnavailable
from kagiya.iam.credential_settings import CredentialSettings
from kagiya.iam.credentials import CredentialCache
from kagiya.iam.identity import (
    Caller,
    CallerIdentifier,
    SessionTokens,
    TokenReviewer,
    kube_token_reviewer,
    session_keys,
)
from kagiya.iam.issuers.base import Grant
from kagiya.iam.metadata.service import EXTENSION, MetadataService
from kagiya.kube.index import KubeIndex
from kagiya.metrics import metrics_of

log = logging.getLogger("kagiya.iam.metadata")
MINTED_CLOUDS = ("aws", "gcp")


#: How long a request waits for a freshly started pod index (a process just started) before answering 503.
SYNC_WAIT_SECONDS = 0.5


class IndexPods:
    """The pod index of the app's IamContext, looked up at call time (it may be attached after start-up).

    Until the index has listed every kind once, "no pod has this IP" would be a lie: wait briefly, then 503.
    Lookups by IP also refuse (StaleWatch, 503) while *any* watch feeding the index (pods, service accounts,
    namespaces) has shown no sign of life for longer than `kube.watch_stale_after_seconds`: a pod deleted during a
    silent partition could otherwise lend its identity to the next pod given its IP, and the answer also rests on
    the service account's annotations and the namespace's labels. It is the same rule /readyz applies, so the two
    never disagree (a 503 readiness naming the namespaces watch while IMDS still answered was the bug). Lookups by
    uid (the token path, vouched for by a TokenReview) keep working for pods the index lists.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app

    def _index(self) -> Any:
        from kagiya.iam.context import iam_context

        index = iam_context(self.app).kube_index()
        if not index.synced and not index.wait_synced(SYNC_WAIT_SECONDS):
            raise UpstreamUnavailable("the pod index is not synced yet; retry shortly")
        return index

    def pods_by_ip(self, ip: str) -> Sequence[Any]:
        index = self._index()
        index.check_fresh(KubeIndex.KINDS)
        return index.pods_by_ip(ip)

    def pod_by_uid(self, uid: str) -> Any | None:
        return self._index().pod_by_uid(uid)

    def was_deleted(self, uid: str) -> bool:
        return bool(self._index().was_deleted(uid))

    def is_fresh(self) -> bool:
        return bool(self._index().is_fresh(KubeIndex.KINDS))

    def pods(self) -> Sequence[Any]:
        index = self._index()
        index.check_fresh(KubeIndex.KINDS)
        return index.pods()


def lazy_reviewer(settings: Settings) -> TokenReviewer:
    """TokenReviews through the `kube:` API client, built on first use (kubernetes imports cost ~0.8 s)."""
    state: dict[str, TokenReviewer] = {}

    def review(token: str, audiences: Sequence[str]) -> dict[str, Any]:
        if "fn" not in state:
            kube = settings.section("kube")
            if kube.mode == "off":
                raise UpstreamUnavailable("token identification needs the Kubernetes API: set kube.mode")
            from kagiya.kube import api_client

            state["fn"] = kube_token_reviewer(api_client(kube), kube.timeout_seconds)
        return state["fn"](token, audiences)

    return review


def grant_lookup(app: Flask) -> Any:
    """(caller, cloud) -> Grant | None, by `resolve_workload` on the caller's pod as the index knows it."""

    def lookup(caller: Caller, cloud: str) -> Grant | None:
        from kagiya.iam.context import iam_context
        from kagiya.iam.resolve import resolve_workload

        if cloud not in MINTED_CLOUDS:
            return None
        ctx = iam_context(app)
        pod = None
        if ctx.kube is not None:
            pod = ctx.kube.pod_by_uid(caller.pod_uid)
        res = resolve_workload(ctx, caller.namespace, caller.service_account, pod, cloud=cloud)
        if not res.allowed or res.identity is None:
            log.debug("no %s identity for %s: %s", cloud, caller.ref, res.reason)
            return None
        ident = res.identity
        return Grant(cloud, ident.identity, binding=res.source, external_id=ident.external_id,
                     session_name=ident.requested_session_name, max_session_seconds=ident.max_session_seconds or None)

    return lookup


def pod_alive(app: Flask) -> Any:
    """uid -> whether the pod index still lists that pod (True when there is no index to ask)."""

    def alive(uid: str) -> bool:
        from kagiya.iam.context import iam_context

        index = iam_context(app).kube
        if index is None or not index.synced:
            return True
        return index.pod_by_uid(uid) is not None

    return alive


def build_service(app: Flask, settings: Settings) -> MetadataService:
    creds: CredentialSettings = settings.section("credentials")
    metrics = metrics_of(app)
    lookup = grant_lookup(app)
    cache = CredentialCache(creds, store=app.extensions["kagiya.store"], metrics=metrics, grant_lookup=lookup,
                            pod_alive=pod_alive(app))
    identifier = CallerIdentifier(
        IndexPods(app), lazy_reviewer(settings), audiences=creds.token_audiences,
        allow_source_ip=creds.allow_source_ip, review_cache_seconds=creds.token_review_cache_seconds,
        on_owner_change=lambda ip, old_uid: _drop(cache, old_uid),
    )
    svc: MetadataService
    subscribed: list[Any] = []

    def subscribe_pod_events() -> None:
        from kagiya.iam.context import iam_context

        ctx = iam_context(app)
        index = ctx.kube_index()
        if any(seen is index for seen in subscribed):
            return
        events = PodEvents(svc, app, creds)
        index.subscribe(events)
        ctx.grant_listeners.append(events.grants_changed)
        subscribed.append(index)
        if creds.prefetch and creds.grant_poll_seconds > 0:
            from kagiya.iam.grant_changes import GrantPoller

            poller = GrantPoller(ctx, creds.grant_poll_seconds)
            poller.poll_once()  # take stock now: only later changes prefetch
            poller.start()
            svc.pollers.append(poller)

    sessions = SessionTokens(keys=session_keys(creds.session_key_file, app.extensions["kagiya.store"]))
    svc = MetadataService(creds, identifier, cache, lookup, metrics=metrics, sessions=sessions,
                          starters=(subscribe_pod_events,))
    return svc


def _drop(cache: CredentialCache, uid: str) -> None:
    cache.drop_pod(uid)


class PodEvents:
    """Pod watch listener: prefetch credentials when a pod with a binding appears, drop them when it goes; and
    prefetch for every running pod of a namespace (service account) when a binding is approved or auto-approved
    or a policy changes, so the first request after an approval is a cache hit.

    Runs on the watch thread (or the approving request's thread), so the work (a store read per pod) is handed to a
    small pool; the cache mints at most once per pod and grant however often it is asked.
    """

    def __init__(self, svc: MetadataService, app: Flask, settings: CredentialSettings) -> None:
        self.svc = svc
        self.app = app
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kagiya-pod-events")
        self._seen: set[str] = set()

    def __call__(self, event: str, pod: Any) -> None:
        if event == "deleted":
            self._seen.discard(pod.uid)
            self.svc.drop_pod(pod.uid)
            return
        if not self.settings.prefetch or pod.finished or pod.uid in self._seen:
            return
        self._seen.add(pod.uid)
        self._pool.submit(self._prefetch_logged, pod)

    def grants_changed(self, namespace: str, service_account: str | None) -> None:
        if not self.settings.prefetch:
            return
        from kagiya.iam.context import iam_context

        index = iam_context(self.app).kube
        if index is None:
            return
        for pod in index.pods():
            if pod.namespace != namespace or (service_account is not None and pod.service_account != service_account):
                continue
            if pod.finished or pod.terminating:
                continue
            self._pool.submit(self._prefetch_logged, pod)

    def _prefetch_logged(self, pod: Any) -> None:
        try:
            self._prefetch(pod)
        except Exception:  # noqa: BLE001 - a pool swallows exceptions silently; say what went wrong
            log.exception("prefetch for %s/%s failed", pod.namespace, pod.name)

    def _prefetch(self, pod: Any) -> None:
        from kagiya.iam.context import iam_context
        from kagiya.iam.resolve import resolve_all

        caller = Caller(pod.namespace, pod.name, pod.uid, pod.service_account, pod_ip=pod.ip, method="watch")
        try:
            resolutions = resolve_all(iam_context(self.app), pod.namespace, pod.service_account, pod)
        except KagiyaError as exc:
            log.warning("prefetch: cannot resolve %s/%s: %s", pod.namespace, pod.name, exc.message)
            return
        for cloud in MINTED_CLOUDS:
            res = resolutions.get(cloud)
            if res is None or not res.allowed or res.identity is None:
                continue
            ident = res.identity
            grant = Grant(cloud, ident.identity, binding=res.source, external_id=ident.external_id,
                          session_name=ident.requested_session_name,
                          max_session_seconds=ident.max_session_seconds or None)
            scopes = tuple(self.settings.gcp_scopes) if cloud == "gcp" else ()
            self.svc.cache.prefetch(caller, grant, scopes)


def init_app(app: Flask, settings: Settings) -> None:
    from kagiya.core_api import add_after_fork, add_readiness_check
    from kagiya.iam import admission
    from kagiya.iam.metadata import aws_imds, container, forward, gce

    svc = build_service(app, settings)
    app.extensions[EXTENSION] = svc
    # Once per process, when the server starts serving (a replica is one process): the refresher and the pod-watch
    # hook that prefetches; readiness probes and requests retry a step that could not start yet.
    add_after_fork(app, "credentials", svc.ensure_started)
    add_readiness_check(app, "credentials", svc.ensure_started)
    for bp in (aws_imds.bp, container.bp, gce.bp, admission.bp, forward.bp):
        app.register_blueprint(bp)
