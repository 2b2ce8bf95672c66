"""`IamContext`: what iam code needs from the app (store, settings, the Kubernetes index, a clock), built once.

`iam_context(app)` returns the context that `kagiya.iam.api.init_app` installed (building it on first use, so the
metadata endpoints and the admission webhook can call it from their own `init_app`). Plain code (CLI, benchmarks,
tests) builds one with `IamContext.build(settings, store, kube_index=...)`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kagiya.config import Settings
from kagiya.errors import UpstreamUnavailable
from kagiya.iam.settings import IamSettings
from kagiya.kube import KubeIndex, KubeWatcher
from kagiya.store import Store

EXTENSION = "kagiya.iam"
log = logging.getLogger("kagiya.iam")
#: Called after a binding-request change commits: (event name, the request as the API shows it).
Listener = Callable[[str, Mapping[str, Any]], None]


def _call_each(listeners: list[Callable[..., None]], what: str, *args: Any) -> None:
    """Call every listener after a committed change; one that fails is logged and never fails the caller (a
    notification or a prefetch must not undo a decision that is already stored)."""
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:  # noqa: BLE001 - see the docstring
            log.warning("iam listener failed for %s", what, exc_info=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class IamContext:
    settings: Settings
    store: Store
    #: The watch-fed index, or None when `kube.mode` is off (then only stored bindings and policies apply).
    kube: KubeIndex | None = None
    watcher: KubeWatcher | None = None
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    #: Notified of `request.filed` and `request.decided` (kagiya.notify); must return quickly and not raise.
    listeners: list[Listener] = field(default_factory=list)
    #: Called as `listener(namespace, service_account or None)` after a change that may grant identities to running
    #: pods (a binding approved or auto-approved, a policy stored); the metadata service prefetches for them.
    grant_listeners: list[Callable[[str, str | None], None]] = field(default_factory=list)

    def grants_changed(self, namespace: str, service_account: str | None = None) -> None:
        """Tell listeners (after the change committed) that pods of `namespace` (`service_account`) may have gained
        an identity; a listener's failure is logged, never the caller's."""
        _call_each(self.grant_listeners, f"grants changed in {namespace}", namespace, service_account)

    @property
    def iam(self) -> IamSettings:
        return self.settings.section("iam")

    @classmethod
    def build(cls, settings: Settings, store: Store, *, kube_index: KubeIndex | None = None,
              start_watcher: bool = True) -> IamContext:
        """A context; with `kube.mode` set (and no index given) a watcher feeds a fresh index."""
        kube_settings = settings.section("kube")
        watcher = None
        if kube_index is None and kube_settings.mode != "off" and start_watcher:
            from kagiya.kube import api_client

            api_client(kube_settings)  # fail at start-up on a bad kube config, not on the first request
            watcher = KubeWatcher(kube_settings)
            kube_index = watcher.index
        return cls(settings=settings, store=store, kube=kube_index, watcher=watcher)

    def emit(self, event: str, request: Mapping[str, Any]) -> None:
        """Tell the listeners; a failing listener is logged, never the caller's problem (the change is made)."""
        _call_each(self.listeners, event, event, request)

    def kube_index(self) -> KubeIndex:
        """The index (its watch threads started in this process); raises UpstreamUnavailable when kube is off."""
        if self.watcher is not None:
            self.watcher.ensure_running()
        if self.kube is None:
            raise UpstreamUnavailable("pod lookups need the Kubernetes API: set kube.mode (incluster, kubeconfig, url)")
        return self.kube


def iam_context(app: Any) -> IamContext:
    """The app's IamContext (created on first use from the app's settings and store)."""
    ctx = app.extensions.get(EXTENSION)
    if ctx is None:
        ctx = IamContext.build(app.extensions["kagiya.settings"], app.extensions["kagiya.store"])
        app.extensions[EXTENSION] = ctx
    return ctx
