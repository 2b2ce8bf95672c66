"""Per binding + caller credential cache: prefetch, refresh before expiry, ride out short issuer outages.

Spec: ../shared/specs/cloud-identity.md ("Timings peers use"). botocore gives IMDS one attempt with a 1 s timeout,
so a pod's first request must be answered from memory: when a pod with a binding appears in the pod watch its
credentials are minted in the background (kiam's prefetch). Entries are refreshed at the earlier of 2/3 of their
lifetime or `refresh_before_seconds` before expiry; while the issuer is down the cached credentials keep being
served until fewer than `min_remaining_seconds` are left, then the caller gets a clear 503. Entries are dropped
when the pod goes away, and before every refresh the grant is re-resolved, so a revoked binding stops being
refreshed (and the request path re-resolves on every call, so it stops being served at once).
Every credential minted is audited (who, which identity, expiry; never the secret parts) and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kagiya import audit
from kagiya.errors import KagiyaError, TooManyRequests, UpstreamUnavailable
from kagiya.iam.credential_settings import CredentialSettings
from kagiya.iam.identity import Caller
from kagiya.iam.issuers import issuer_for
from kagiya.iam.issuers.base import Credentials, Grant, Issuer

log = logging.getLogger("kagiya.iam.credentials")

CacheKey = tuple[str, tuple[str, str, str, str], tuple[str, ...]]
#: (caller, cloud) -> the grant that applies now, or None (no binding, or revoked).
GrantLookup = Callable[[Caller, str], "Grant | None"]
RETRY_AFTER_FAILURE = 5.0


@dataclass
class Entry:
    caller: Caller
    grant: Grant
    scopes: tuple[str, ...]
    creds: Credentials | None = None
    refresh_at: float = 0.0  # wall-clock seconds
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class CredentialCache:
    """Credentials per (pod uid, grant, scopes). Thread-safe; the clock is injectable (wall-clock seconds)."""

    def __init__(
        self,
        settings: CredentialSettings,
        *,
        store: Any = None,
        metrics: Any = None,
        issuers: dict[str, Issuer] | None = None,
        grant_lookup: GrantLookup | None = None,
        pod_alive: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.grant_lookup = grant_lookup
        self.pod_alive = pod_alive
        self._issuers: dict[str, Issuer] = dict(issuers or {})
        self._entries: dict[CacheKey, Entry] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"hit": 0, "miss": 0, "stale": 0, "prefetch": 0, "refresh": 0}
        self._issued = self._cache_events = None
        if metrics is not None:
            from prometheus_client import Counter

            self._issued = metrics.get(
                Counter, "kagiya_iam_credentials_issued_total",
                "Cloud credentials minted for pods, by cloud, reason and outcome.", ("cloud", "reason", "outcome"),
            )
            self._cache_events = metrics.get(
                Counter, "kagiya_iam_credential_cache_total",
                "Credential cache lookups on the request path: hit, miss (minted inline) or stale (served "
                "while the issuer is failing).", ("result",),
            )

    # --- issuers -------------------------------------------------------------------------------------------------
    def issuer(self, cloud: str) -> Issuer:
        with self._lock:
            if cloud not in self._issuers:
                self._issuers[cloud] = issuer_for(cloud, self.settings)
            return self._issuers[cloud]

    # --- request path --------------------------------------------------------------------------------------------
    def get(self, caller: Caller, grant: Grant, scopes: tuple[str, ...] = ()) -> Credentials:
        """Credentials for `caller` under `grant`: cached when fresh enough, else minted now.

        Raises UpstreamUnavailable (issuer down and nothing usable cached), Forbidden (the cloud refused).
        """
        key = self._key(caller, grant, scopes)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._check_scope_sets(key)
                entry = self._entries[key] = self._new_entry(caller, grant, scopes)
        creds = entry.creds
        if creds is not None and self._usable(creds):
            self._count("stale" if entry.failures else "hit")
            return creds
        with entry.lock:
            creds = entry.creds
            if creds is not None and self._usable(creds):
                self._count("hit")
                return creds
            self._count("miss")
            try:
                return self._mint(entry, "request")
            except UpstreamUnavailable as exc:
                if creds is not None:
                    left = int(self._remaining(creds))
                    raise UpstreamUnavailable(
                        f"the credential issuer is unavailable and the cached credentials expire in {max(left, 0)} s; "
                        "retry shortly"
                    ) from exc
                raise

    def _check_scope_sets(self, key: CacheKey) -> None:
        """Bound the entries one pod can create by asking for ever new scope lists (its lock held).

        Each distinct scope set is a cache entry refreshed for the pod's lifetime; without a cap a pod could grow
        the cache (and the issuer calls) without limit.
        """
        cap = self.settings.gcp_max_scope_sets_per_pod
        if not key[2] or cap <= 0:
            return
        held = {k[2] for k in self._entries if k[0] == key[0] and k[1] == key[1]}
        if len(held) >= cap:
            raise TooManyRequests(
                f"this pod already holds tokens for {cap} distinct scope sets "
                "(credentials.gcp_max_scope_sets_per_pod); reuse one of them"
            )

    def _new_entry(self, caller: Caller, grant: Grant, scopes: tuple[str, ...]) -> Entry:
        # Not due for the refresher until whoever created it had a chance to mint (no double issuance).
        return Entry(caller, grant, scopes, refresh_at=self.clock() + RETRY_AFTER_FAILURE)

    def _usable(self, creds: Credentials) -> bool:
        return self._remaining(creds) > self.settings.min_remaining_seconds

    def remaining(self, creds: Credentials) -> float:
        """Seconds until `creds` expire, by the cache's clock."""
        return self._remaining(creds)

    def _remaining(self, creds: Credentials) -> float:
        return creds.expiry.timestamp() - self.clock()

    def _mint(self, entry: Entry, reason: str) -> Credentials:
        """Call the issuer for `entry` (its lock held), store and audit the result."""
        grant, caller = entry.grant, entry.caller
        duration = self.settings.session_seconds
        if grant.max_session_seconds:
            duration = min(duration, grant.max_session_seconds)
        try:
            creds = self.issuer(grant.cloud).issue(grant, caller, duration_seconds=duration, scopes=entry.scopes)
        except KagiyaError as exc:
            entry.failures += 1
            entry.refresh_at = self.clock() + min(RETRY_AFTER_FAILURE * entry.failures, 60.0)
            self._audit(caller, grant, reason, "error", {"error": exc.message})
            if self._issued is not None:
                self._issued.labels(grant.cloud, reason, "error").inc()
            raise
        now = self.clock()
        lifetime = max(creds.expiry.timestamp() - now, 0.0)
        if reason in self.stats:  # counted before the credentials become visible to readers of the cache
            self.stats[reason] += 1
        entry.failures = 0
        entry.refresh_at = min(now + lifetime * 2 / 3, creds.expiry.timestamp() - self.settings.refresh_before_seconds)
        entry.creds = creds
        self._audit(caller, grant, reason, "success", {
            "expiry": creds.expiry.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **creds.public,
        })
        if self._issued is not None:
            self._issued.labels(grant.cloud, reason, "success").inc()
        return creds

    def record(self, caller: Caller, grant: Grant, reason: str, outcome: str, details: dict[str, Any]) -> None:
        """Audit and count one credential minted (or failed) outside the cache, e.g. a GCE identity token."""
        self._audit(caller, grant, reason, outcome, details)
        if self._issued is not None:
            self._issued.labels(grant.cloud, reason, outcome).inc()

    def _audit(self, caller: Caller, grant: Grant, reason: str, outcome: str, details: dict[str, Any]) -> None:
        if self.store is None:
            return
        try:
            audit.record(
                self.store, actor=caller.subject, action="iam.credentials.issue", target=grant.identity,
                outcome=outcome, details={
                    "namespace": caller.namespace, "pod": caller.pod_name, "podUid": caller.pod_uid,
                    "cloud": grant.cloud, "binding": grant.binding, "identifiedBy": caller.method,
                    "reason": reason, **details,
                },
            )
        except Exception:  # noqa: BLE001 - a failing audit write must not take the metadata path down
            log.exception("could not write the credential audit event")

    def _count(self, result: str) -> None:
        self.stats[result] = self.stats.get(result, 0) + 1
        if self._cache_events is not None:
            self._cache_events.labels(result).inc()

    @staticmethod
    def _key(caller: Caller, grant: Grant, scopes: tuple[str, ...]) -> CacheKey:
        return (caller.pod_uid, grant.key, tuple(scopes))

    # --- prefetch and eviction -----------------------------------------------------------------------------------
    def prefetch(self, caller: Caller, grant: Grant, scopes: tuple[str, ...] = ()) -> None:
        """Mint in the background (pod watch callback); errors are logged and retried by the refresher."""
        key = self._key(caller, grant, scopes)
        with self._lock:
            if key in self._entries:
                return
            entry = self._entries[key] = self._new_entry(caller, grant, scopes)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kagiya-prefetch")
            pool = self._pool
        pool.submit(self._prefetch_one, entry)

    def _prefetch_one(self, entry: Entry) -> None:
        with entry.lock:
            if entry.creds is not None:
                return
            try:
                self._mint(entry, "prefetch")
            except KagiyaError as exc:
                log.warning("prefetch for %s failed: %s", entry.caller.ref, exc.message)
            except Exception:  # noqa: BLE001 - a pool swallows exceptions silently; the refresher retries
                log.exception("prefetch for %s failed", entry.caller.ref)
                entry.refresh_at = self.clock() + RETRY_AFTER_FAILURE

    def has(self, pod_uid: str) -> bool:
        with self._lock:
            return any(k[0] == pod_uid and e.creds is not None for k, e in self._entries.items())

    def drop_pod(self, pod_uid: str) -> int:
        """Forget every entry of a pod (deleted, or its IP changed owner). Returns how many were dropped."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == pod_uid]
            for k in keys:
                del self._entries[k]
        return len(keys)

    def drop_cloud(self, pod_uid: str, cloud: str) -> int:
        """Forget a pod's entries for one cloud (its binding there was revoked or no longer applies)."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == pod_uid and k[1][0] == cloud]
            for k in keys:
                del self._entries[k]
        return len(keys)

    def __len__(self) -> int:
        return len(self._entries)

    # --- refresh -------------------------------------------------------------------------------------------------
    def refresh_due(self) -> int:
        """Refresh every entry whose refresh time has come; drop those whose grant no longer applies.

        Returns the number of entries refreshed successfully. The background thread calls this periodically;
        tests call it directly with a moved clock.
        """
        now = self.clock()
        with self._lock:
            due = [(k, e) for k, e in self._entries.items() if e.refresh_at <= now]
        refreshed = 0
        for key, entry in due:
            if self.pod_alive is not None and not self.pod_alive(entry.caller.pod_uid):
                # A delete event we never saw (or a token caller whose pod is gone): stop refreshing it.
                with self._lock:
                    self._entries.pop(key, None)
                continue
            if self.grant_lookup is not None:
                try:
                    current = self.grant_lookup(entry.caller, entry.grant.cloud)
                except KagiyaError:
                    current = entry.grant  # cannot tell now (e.g. store hiccup): keep, retry later
                if current is None or current.key != entry.grant.key:
                    with self._lock:
                        self._entries.pop(key, None)
                    log.info("binding no longer applies to %s; cached credentials dropped", entry.caller.ref)
                    continue
            if not entry.lock.acquire(blocking=False):
                continue
            try:
                self._mint(entry, "refresh")
                refreshed += 1
            except KagiyaError as exc:
                log.warning("refresh for %s failed: %s", entry.caller.ref, exc.message)
                if entry.creds is not None and self._remaining(entry.creds) <= 0:
                    with self._lock:
                        self._entries.pop(key, None)
            finally:
                entry.lock.release()
        return refreshed

    def start(self) -> None:
        """Run `refresh_due` every `refresh_interval_seconds` in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            self._pool = None  # threads do not survive a fork: a copied pool would never run its tasks
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kagiya-credential-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.refresh_interval_seconds):
            try:
                self.refresh_due()
            except Exception:  # noqa: BLE001 - the refresher must survive any single bad entry
                log.exception("credential refresh pass failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
