"""Grants made on another replica: poll the store for new bindings and changed policies, then prefetch.

`IamContext.grants_changed` tells *this* process about an approval, an auto-approval or a policy change it made
itself. Behind a Service the next pod request may reach another replica, whose credential cache would then mint on
the spot; so each replica also looks every `credentials.grant_poll_seconds` at the store's bindings with an id
above the highest it has seen and at the policies whose version changed, and calls the same listeners. Two cheap
indexed queries per interval; the cache mints at most once per pod and grant, however often it is told.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa

from kagiya.iam.schema import bindings, policies

log = logging.getLogger("kagiya.iam.grants")


class GrantPoller:
    def __init__(self, ctx: Any, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self._last_binding = -1
        self._versions: dict[str, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[tuple[str, str | None]]:
        """Changes since the last poll as (namespace, service account or None); the first poll only takes stock."""
        with self.ctx.store.connect() as conn:
            if self._last_binding < 0:
                self._last_binding = int(conn.execute(sa.select(sa.func.max(bindings.c.id))).scalar() or 0)
                rows = []
            else:
                rows = conn.execute(sa.select(bindings.c.id, bindings.c.namespace, bindings.c.service_account)
                                    .where(bindings.c.id > self._last_binding, bindings.c.state == "active")
                                    .order_by(bindings.c.id).limit(10000)).all()
            versions = {ns: int(v) for ns, v in conn.execute(sa.select(policies.c.namespace, policies.c.version))}
        changes: list[tuple[str, str | None]] = [(r.namespace, r.service_account) for r in rows]
        if rows:
            self._last_binding = max(int(r.id) for r in rows)
        if self._versions is not None:
            changes += [(ns, None) for ns, v in versions.items() if self._versions.get(ns) != v]
        self._versions = versions
        return list(dict.fromkeys(changes))

    def run_once(self) -> int:
        changes = self.poll_once()
        for namespace, service_account in changes:
            self.ctx.grants_changed(namespace, service_account)
        return len(changes)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kagiya-grant-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a store hiccup: try again next interval
                log.warning("polling the store for new grants failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
