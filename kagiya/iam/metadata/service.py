"""What every metadata endpoint does before shaping its reply: who is calling, which grant applies, credentials.

Spec: ../shared/specs/cloud-identity.md. The endpoint modules (aws_imds.py, container.py, gce.py) stay thin: they
check their SDK's header rules, call `MetadataService`, and shape JSON. Refusals are logged with the reason for
this caller only and counted in `kagiya_iam_metadata_refusals_total`; nothing about other pods leaks into replies.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from kagiya.errors import KagiyaError, NotFound
from kagiya.iam.credential_settings import CredentialSettings
from kagiya.iam.credentials import CredentialCache
from kagiya.iam.identity import Caller, CallerIdentifier, CallerRefused, SessionTokens
from kagiya.iam.issuers.base import Credentials, Grant
from kagiya.kube.freshness import StaleWatch

log = logging.getLogger("kagiya.iam.metadata")
EXTENSION = "kagiya.iam.metadata"
#: WSGI environ key the agent-forwarding view sets to the pod's address (never settable over HTTP).
AGENT_SOURCE_IP = "kagiya.agent.source_ip"
#: WSGI environ keys naming the forwarding agent's node and username (set only by the forwarding view).
AGENT_NODE = "kagiya.agent.node"
AGENT_ACTOR = "kagiya.agent.actor"
#: WSGI environ key set (only by the forwarding view) when the agent checked the pod's IMDSv2 session token itself.
AGENT_IMDS_SESSION = "kagiya.agent.imds_session"


class MetadataService:
    def __init__(
        self,
        settings: CredentialSettings,
        identifier: CallerIdentifier,
        cache: CredentialCache,
        grant_lookup: Callable[[Caller, str], Grant | None],
        *,
        metrics: Any = None,
        sessions: SessionTokens | None = None,
        starters: tuple[Callable[[], None], ...] = (),
    ) -> None:
        self.settings = settings
        self.identifier = identifier
        self.cache = cache
        self.grant_lookup = grant_lookup
        self.sessions = sessions or SessionTokens()
        self._starters = starters
        #: Background pollers started with the pod-watch hooks (stopped with the service).
        self.pollers: list[Any] = []
        self._pid = 0
        self._started: set[int] = set()
        self._start_lock = threading.Lock()
        self._id_tokens: dict[tuple[str, str, str, bool], tuple[str, dt.datetime]] = {}
        self._id_lock = threading.Lock()
        self._refusals = None
        if metrics is not None:
            from prometheus_client import Counter

            self._refusals = metrics.get(
                Counter, "kagiya_iam_metadata_refusals_total",
                "Metadata requests refused, by endpoint and reason.", ("endpoint", "reason"),
            )

    def ensure_started(self) -> None:
        """Start the refresher and the pod-watch hooks in this process (once per process: a replica is one process).

        A step that fails (the Kubernetes index is not configured yet) is retried on the next request.
        """
        if self._pid == os.getpid() and len(self._started) == len(self._starters):
            return
        with self._start_lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._started = set()
                self.cache.start()
            for i, start in enumerate(self._starters):
                if i in self._started:
                    continue
                try:
                    start()
                    self._started.add(i)
                except KagiyaError as exc:
                    log.debug("metadata service start-up step deferred: %s", exc.message)

    def stop(self) -> None:
        self.cache.stop()
        for poller in self.pollers:
            poller.stop()

    # --- request helpers -----------------------------------------------------------------------------------------
    @staticmethod
    def source_ip() -> str:
        return str(request.environ.get(AGENT_SOURCE_IP) or request.remote_addr or "")

    def caller(self, endpoint: str, token: str = "", *, token_only: bool = False) -> Caller:
        """The calling pod; refusals are counted and logged, then re-raised for the error handler."""
        try:
            if token_only:
                return self.identifier.from_token(token)
            caller = self.identifier.identify(self.source_ip(), token)
            self._check_agent_node(caller)
            return caller
        except CallerRefused as exc:
            self.refused(endpoint, exc.why, exc.message)
            raise
        except StaleWatch as exc:
            self.refused(endpoint, "stale-index", exc.message)
            self._audit_stale(exc)
            raise
        except KagiyaError as exc:
            self.refused(endpoint, exc.reason.lower(), exc.message)
            raise

    def _audit_stale(self, exc: StaleWatch) -> None:
        """Every IP identification refused for a stale watch is audited (who asked, how stale, the bound)."""
        if self.cache.store is None:
            return
        from kagiya import audit

        try:
            audit.record(self.cache.store, actor=f"ip:{self.source_ip()}", action="iam.identify",
                         target="pods/by-ip", outcome="denied",
                         details={"reason": "stale-index", "sourceIp": self.source_ip(),
                                  "via": "agent" if request.environ.get(AGENT_NODE) is not None else "direct",
                                  **exc.details})
        except Exception:  # noqa: BLE001 - the refusal stands even if the audit write fails
            log.exception("could not write the stale-index audit event")

    def _check_agent_node(self, caller: Caller) -> None:
        """A relayed request identified by source IP must come from the agent on that pod's node.

        Otherwise one node's agent could claim any pod IP in the cluster. Token-identified callers are not
        checked: the projected token, not the relayed address, names the pod.
        """
        node = request.environ.get(AGENT_NODE)
        if node is None or caller.method != "ip" or caller.node_name == node:
            return
        actor = str(request.environ.get(AGENT_ACTOR) or "agent")
        message = f"the agent of node {node!r} may only relay requests of pods on that node"
        if self.cache.store is not None:
            from kagiya import audit

            try:
                audit.record(self.cache.store, actor=actor, action="iam.agent.forward", target=f"nodes/{node}",
                             outcome="denied", details={"sourceIp": caller.pod_ip, "pod": caller.ref,
                                                        "podNode": caller.node_name, "reason": message})
            except Exception:  # noqa: BLE001 - the refusal stands even if the audit write fails
                log.exception("could not write the agent refusal audit event")
        raise CallerRefused(message, "other-node")

    def grant(self, endpoint: str, caller: Caller, cloud: str) -> Grant:
        """The grant for `caller` in `cloud`; NotFound (404) when there is none."""
        grant = self.grant_lookup(caller, cloud)
        if grant is None or grant.cloud != cloud:
            if self.cache.drop_cloud(caller.pod_uid, cloud):
                log.info("binding of %s in %s no longer applies; cached credentials dropped", caller.ref, cloud)
            self.refused(endpoint, "no-binding", f"no {cloud} identity is bound to {caller.ref}")
            raise NotFound(f"no {cloud} identity is bound to this pod")
        return grant

    def credentials(self, endpoint: str, caller: Caller, grant: Grant, scopes: tuple[str, ...] = ()) -> Credentials:
        try:
            return self.cache.get(caller, grant, scopes)
        except KagiyaError as exc:
            self.refused(endpoint, "issuer-" + exc.reason.lower(), exc.message)
            raise

    def id_token(self, caller: Caller, grant: Grant, audience: str, include_email: bool) -> str:
        """An OIDC ID token, reused while fresh; every one minted is audited and counted like access tokens."""
        key = (caller.pod_uid, grant.identity, audience, include_email)
        with self._id_lock:
            cached = self._id_tokens.get(key)
        now = dt.datetime.now(dt.UTC)
        if cached and (cached[1] - now).total_seconds() > self.settings.min_remaining_seconds:
            return cached[0]
        issuer: Any = self.cache.issuer("gcp")
        try:
            token, expiry = issuer.id_token(grant, audience, include_email)
        except KagiyaError as exc:
            self.cache.record(caller, grant, "id-token", "error", {"audience": audience, "error": exc.message})
            self.refused("gce", "issuer-" + exc.reason.lower(), exc.message)
            raise
        self.cache.record(caller, grant, "id-token", "success", {
            "audience": audience, "expiry": rfc3339(expiry), "kind": "id-token"})
        with self._id_lock:
            if len(self._id_tokens) > 10000:
                self._id_tokens.clear()
            self._id_tokens[key] = (token, expiry)
        return str(token)

    def refused(self, endpoint: str, why: str, message: str) -> None:
        log.info("metadata request refused: %s", message,
                 extra={"outcome": why, "path": request.path, "remote": self.source_ip()})
        if self._refusals is not None:
            self._refusals.labels(endpoint, why).inc()

    def drop_pod(self, uid: str) -> None:
        self.cache.drop_pod(uid)
        self.identifier.forget_pod(uid)
        with self._id_lock:
            self._id_tokens = {k: v for k, v in self._id_tokens.items() if k[0] != uid}


def service_of(app: Any = None) -> MetadataService:
    app = app or current_app
    svc: MetadataService = app.extensions[EXTENSION]
    svc.ensure_started()
    return svc


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return rfc3339(dt.datetime.fromtimestamp(time.time(), dt.UTC))
