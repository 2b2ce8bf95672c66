"""The list+watch reflector threads that feed a `KubeIndex`, and how fresh each watch is.

- Each kind is a reflector: list, replace the index, then watch from the list's resourceVersion with bookmarks.
  A watch that ends (server timeout, dropped connection) resumes from the last resourceVersion seen; a `410 Gone`
  (an ERROR event carrying a Status with code 410, or an HTTP 410) means that version is compacted: relist.
- Freshness (kagiya/kube/freshness.py): every list, event, BOOKMARK, stream the server ends on time and watch
  request it accepts again is a sign of life. A real API server sends no bookmark on a kind that does not change, so
  each watch request asks the server to end it within half of `kube.watch_stale_after_seconds` (whole seconds) and
  reads with a timeout of twice that: a quiet healthy watch shows life at every reopen, a silent connection is
  abandoned and re-opened; past the bound without life the index refuses IP lookups and readiness names the watch.
- The `kubernetes` package is imported only when a watcher starts (it costs ~0.8 s).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from kagiya.errors import UpstreamUnavailable
from kagiya.kube.client import api_client
from kagiya.kube.freshness import WatchFreshness
from kagiya.kube.index import KubeIndex

log = logging.getLogger("kagiya.kube")


class KubeWatcher:
    """Runs one list+watch reflector thread per kind, feeding a `KubeIndex`. Safe across fork (restarts lazily)."""

    def __init__(self, settings: Any, index: KubeIndex | None = None) -> None:
        self.settings = settings
        self.index = index or KubeIndex()
        self._pid = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.resource_versions: dict[str, str] = {}
        self.relists: dict[str, int] = dict.fromkeys(KubeIndex.KINDS, 0)
        self.last_error = ""
        self.freshness = WatchFreshness(settings.watch_stale_after_seconds)
        self.index.freshness = self.freshness

    def ensure_running(self) -> None:
        """Start the reflector threads in this process (again after a fork: threads do not survive one)."""
        if self._pid == os.getpid() and not self._stop.is_set():
            return
        with self._lock:
            if self._pid == os.getpid() and not self._stop.is_set():
                return
            core = _core_api(api_client(self.settings))  # may raise ConfigError: then try again next time
            self._pid = os.getpid()
            self._stop.clear()
            self._threads = []
            for kind in KubeIndex.KINDS:
                t = threading.Thread(target=self._run, args=(core, kind), name=f"kagiya-kube-{kind}", daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._pid = 0

    def check_ready(self) -> None:
        """Readiness check: raises UpstreamUnavailable until every kind has been listed once, and StaleWatch (naming
        the watch) while a watch has shown no sign of life for longer than `kube.watch_stale_after_seconds`."""
        self.ensure_running()
        if not self.index.synced:
            detail = f": {self.last_error}" if self.last_error else ""
            raise UpstreamUnavailable(f"kubernetes index not synced yet{detail}")
        self.freshness.check(KubeIndex.KINDS)

    def _run(self, core: Any, kind: str) -> None:
        from kubernetes.client.rest import ApiException

        delay = self.settings.retry_seconds
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    rv = self._list(core, kind)
                    self.relists[kind] += 1
                started = time.monotonic()
                rv = self._watch(core, kind, rv)
                delay = self.settings.retry_seconds
                if time.monotonic() - started < 0.05:
                    # A server that ends watches at once must not turn this loop into a busy spin.
                    self._stop.wait(delay)
                continue
            except ApiException as exc:
                if exc.status == 410:
                    log.info("kube %s watch expired (410 Gone): relisting", kind)
                    rv = ""
                    continue
                self.last_error = f"{kind}: HTTP {exc.status} {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - any transport failure: back off and resume
                self.last_error = f"{kind}: {type(exc).__name__}"
            log.warning("kube %s watch interrupted (%s); retrying in %.1fs", kind, self.last_error, delay)
            self._stop.wait(delay)
            # Back off, but never past the watch period: once the API server is back the index must catch up
            # (and IP identification reopen) well inside the stale bound.
            delay = min(delay * 2, self.settings.max_retry_seconds,
                        max(self.settings.retry_seconds, self.settings.watch_period_seconds))

    def _list(self, core: Any, kind: str) -> str:
        import json

        func = _list_func(core, kind)
        items: list[Any] = []
        token = ""
        while True:  # pages of `list_page_size`, as informers list; an expired continue token is a 410: relist
            kwargs = {"_continue": token} if token else {}
            resp = func(limit=self.settings.list_page_size, _preload_content=False,
                        _request_timeout=(self.settings.timeout_seconds, max(60.0, self.settings.timeout_seconds * 12)),
                        **kwargs)
            body = json.loads(resp.data)
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                break
        self.index.replace(kind, items)
        self.freshness.alive(kind)
        rv = str(meta.get("resourceVersion") or "")
        self.resource_versions[kind] = rv
        self.last_error = ""
        return rv

    def _watch(self, core: Any, kind: str, rv: str) -> str:
        """Stream events from `rv` until the server ends the watch; returns the last resourceVersion seen.

        The client's `Watch` helper is not used: it deserialises every event into pydantic models (slow, and one odd
        object would wedge the loop), and with `deserialize=False` it fails on ERROR events. The request, auth and
        line splitting are still the client's own.
        """
        import json

        from kubernetes.client.rest import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        period = self.settings.watch_period_seconds
        resp = _list_func(core, kind)(
            watch=True, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=period,
            _preload_content=False,
            # Connect bound, then a per-read bound: a connection that goes silent (no RST) raises ReadTimeoutError
            # after twice the period in which a healthy server sends a bookmark or ends the stream.
            _request_timeout=(self.settings.timeout_seconds, self.settings.watch_read_timeout_seconds),
        )
        try:
            if not 200 <= resp.status <= 299:
                raise ApiException(status=resp.status, reason=str(getattr(resp, "reason", "") or ""))
            self.freshness.alive(kind)
            for line in iter_resp_lines(resp):
                self.freshness.alive(kind)
                if self._stop.is_set():
                    break
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("kube %s watch: skipped a line that is not JSON", kind)
                    continue
                kind_of_event = event.get("type", "")
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    raise ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("reason") or "Error"))
                if kind_of_event in ("ADDED", "MODIFIED", "DELETED"):
                    self.index.apply(kind, kind_of_event, obj)
                new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if new_rv:
                    rv = new_rv
                    self.resource_versions[kind] = rv
            else:
                self.freshness.alive(kind)  # the server ended the stream on time: alive
        finally:
            resp.close()
            resp.release_conn()
        return rv


def _core_api(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


def _list_func(core: Any, kind: str) -> Callable[..., Any]:
    return {
        "namespaces": core.list_namespace,
        "serviceaccounts": core.list_service_account_for_all_namespaces,
        "pods": core.list_pod_for_all_namespaces,
    }[kind]
