"""Watch-fed indexes of namespaces, service accounts and pods (by namespace/name, by pod IP, by UID), exposed as
plain lookups. The watch that feeds them lives in kagiya/kube/watch.py.

Facts: ../shared/specs/cloud-identity.md ("how peers identify the calling pod, and why that is weak").
- IP lookups refuse to guess: host-network pods and finished pods are not indexed by IP, and an IP held by two
  live pods answers all of them so the caller can refuse the ambiguity (`pods_by_ip`).
- `subscribe(callback)` tells listeners about pod changes (`added`, `modified`, `deleted`), e.g. to prefetch
  credentials when a pod appears and drop them when it goes. Callbacks run on the watch thread: keep them short.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kagiya.kube.freshness import WatchFreshness

log = logging.getLogger("kagiya.kube")

EMPTY: Mapping[str, str] = MappingProxyType({})
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
PodListener = Callable[[str, "PodInfo"], None]
#: How many deleted pod uids the index remembers (`was_deleted`): ~100 bytes each, far more than the pods a
#: token-review cache lifetime (60 s) can see deleted.
MAX_TOMBSTONES = 65536


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    service_account: str = "default"
    ip: str = ""
    ips: tuple[str, ...] = ()
    node_name: str = ""
    host_network: bool = False
    phase: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    resource_version: str = ""
    #: `metadata.deletionTimestamp` is set: the pod is shutting down and must not be identified by its IP.
    terminating: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PodInfo:
        """From a Pod's JSON (as the API server sends it)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ips = tuple(p.get("ip", "") for p in status.get("podIPs") or () if p.get("ip"))
        ip = status.get("podIP") or (ips[0] if ips else "")
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            service_account=spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
            ip=ip,
            ips=ips or ((ip,) if ip else ()),
            node_name=spec.get("nodeName", ""),
            host_network=bool(spec.get("hostNetwork", False)),
            phase=status.get("phase", ""),
            labels=_frozen(meta.get("labels")),
            annotations=_frozen(meta.get("annotations")),
            resource_version=meta.get("resourceVersion", ""),
            terminating=bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> NamespaceInfo:
        meta = obj.get("metadata") or {}
        return cls(meta.get("name", ""), _frozen(meta.get("labels")), _frozen(meta.get("annotations")))


@dataclass(frozen=True, slots=True)
class ServiceAccountInfo:
    namespace: str
    name: str
    uid: str = ""
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ServiceAccountInfo:
        meta = obj.get("metadata") or {}
        annotations = _frozen(meta.get("annotations"))
        return cls(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), annotations)


def _frozen(value: Any) -> Mapping[str, str]:
    if not value:
        return EMPTY
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


class KubeIndex:
    """In-memory indexes fed by watches (or by `apply`/`replace` directly). Lookups take a lock only briefly."""

    KINDS = ("namespaces", "serviceaccounts", "pods")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._service_accounts: dict[tuple[str, str], ServiceAccountInfo] = {}
        self._pods: dict[tuple[str, str], PodInfo] = {}
        self._by_uid: dict[str, PodInfo] = {}
        self._by_ip: dict[str, dict[str, PodInfo]] = {}
        self._listeners: list[PodListener] = []
        self._synced: set[str] = set()
        self._synced_event = threading.Event()
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        #: Set by the watch that feeds this index; None for an index filled by hand (never stale).
        self.freshness: WatchFreshness | None = None

    # ---- lookups -------------------------------------------------------------------------------------------
    def namespace(self, name: str) -> NamespaceInfo | None:
        return self._namespaces.get(name)

    def service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        return self._service_accounts.get((namespace, name))

    def pod(self, namespace: str, name: str) -> PodInfo | None:
        return self._pods.get((namespace, name))

    def pod_by_uid(self, uid: str) -> PodInfo | None:
        return self._by_uid.get(uid)

    def was_deleted(self, uid: str) -> bool:
        """Whether this index saw the pod with `uid` go (a DELETED event, a relist without it, or its name taken by
        a new uid). Tells "deleted" apart from "not seen yet" for a pod-bound token the index does not list."""
        with self._lock:
            return uid in self._tombstones

    def pods_by_ip(self, ip: str) -> list[PodInfo]:
        """Every live, non-host-network pod holding `ip` (more than one means: refuse, do not guess)."""
        with self._lock:
            return list(self._by_ip.get(ip, {}).values())

    def pod_by_ip(self, ip: str) -> PodInfo | None:
        """The one pod holding `ip`, or None when no pod or several pods hold it."""
        pods = self.pods_by_ip(ip)
        return pods[0] if len(pods) == 1 else None

    def pods(self) -> list[PodInfo]:
        with self._lock:
            return list(self._pods.values())

    def counts(self) -> dict[str, int]:
        return {"namespaces": len(self._namespaces), "serviceaccounts": len(self._service_accounts),
                "pods": len(self._pods)}

    # ---- readiness -----------------------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._synced_event.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced_event.wait(timeout)

    def mark_synced(self, kind: str) -> None:
        self._synced.add(kind)
        if self._synced >= set(self.KINDS):
            self._synced_event.set()

    def is_fresh(self, kinds: Iterable[str] = KINDS) -> bool:
        """No watch feeding `kinds` is past its stale bound (always True for an index filled by hand)."""
        return self.freshness is None or not self.freshness.stale(kinds)

    def check_fresh(self, kinds: Iterable[str] = ("pods",)) -> None:
        """Raise StaleWatch (503) when a watch feeding `kinds` has shown no life for longer than its bound."""
        if self.freshness is not None:
            self.freshness.check(kinds)

    # ---- listeners -----------------------------------------------------------------------------------------
    def subscribe(self, listener: PodListener) -> Callable[[], None]:
        """Call `listener(event, pod)` for every pod `added`/`modified`/`deleted`; returns an unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, event: str, pod: PodInfo) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, pod)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the watch
                log.exception("pod listener failed on %s %s/%s", event, pod.namespace, pod.name)

    # ---- updates -------------------------------------------------------------------------------------------
    def apply(self, kind: str, event: str, obj: Mapping[str, Any]) -> None:
        """Apply one watch event (`ADDED`, `MODIFIED`, `DELETED`) for `kind` to the index."""
        deleted = event.upper() == "DELETED"
        if kind == "pods":
            self._apply_pod(PodInfo.from_object(obj), deleted)
        elif kind == "namespaces":
            ns = NamespaceInfo.from_object(obj)
            with self._lock:
                if deleted:
                    self._namespaces.pop(ns.name, None)
                else:
                    self._namespaces[ns.name] = ns
        elif kind == "serviceaccounts":
            sa = ServiceAccountInfo.from_object(obj)
            with self._lock:
                if deleted:
                    self._service_accounts.pop((sa.namespace, sa.name), None)
                else:
                    self._service_accounts[(sa.namespace, sa.name)] = sa
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def replace(self, kind: str, objects: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything of `kind` with a fresh list (after a relist); listeners see the difference."""
        if kind != "pods":
            with self._lock:
                if kind == "namespaces":
                    self._namespaces = {n.name: n for n in map(NamespaceInfo.from_object, objects)}
                else:
                    sas = map(ServiceAccountInfo.from_object, objects)
                    self._service_accounts = {(s.namespace, s.name): s for s in sas}
            self.mark_synced(kind)
            return
        fresh = {(p.namespace, p.name): p for p in map(PodInfo.from_object, objects)}
        with self._lock:
            gone = [p for key, p in self._pods.items() if key not in fresh]
        for pod in gone:
            self._apply_pod(pod, deleted=True)
        for pod in fresh.values():
            self._apply_pod(pod, deleted=False)
        self.mark_synced(kind)

    def _apply_pod(self, pod: PodInfo, deleted: bool) -> None:
        key = (pod.namespace, pod.name)
        with self._lock:
            old = self._pods.pop(key, None)
            if old is not None:
                self._unindex(old)
                if deleted or old.uid != pod.uid:
                    self._tombstones[old.uid] = None
                    if len(self._tombstones) > MAX_TOMBSTONES:
                        self._tombstones.popitem(last=False)
            if not deleted:
                self._tombstones.pop(pod.uid, None)
                self._pods[key] = pod
                self._by_uid[pod.uid] = pod
                if not pod.host_network and not pod.finished:
                    for ip in pod.ips:
                        self._by_ip.setdefault(ip, {})[pod.uid] = pod
        if deleted:
            if old is not None:
                self._notify("deleted", old)
        elif old is None:
            self._notify("added", pod)
        elif old.uid != pod.uid:
            # Same name, new pod (a relist after a missed delete): listeners must forget the old one's state.
            self._notify("deleted", old)
            self._notify("added", pod)
        elif old.resource_version != pod.resource_version or old != pod:
            self._notify("modified", pod)

    def _unindex(self, pod: PodInfo) -> None:
        if self._by_uid.get(pod.uid) is pod:
            del self._by_uid[pod.uid]
        for ip in pod.ips:
            holders = self._by_ip.get(ip)
            if holders is not None:
                holders.pop(pod.uid, None)
                if not holders:
                    del self._by_ip[ip]
