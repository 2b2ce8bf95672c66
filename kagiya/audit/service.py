"""Wiring of the audit pipeline into an app: one background writer per store per process, its metrics, its
retention pruning, and its drain on a clean shutdown (atexit, or when the app's store is disposed).

Metrics (/metrics):
- `kagiya_audit_events_total{result}`: submitted, written, spilled, replayed, dropped (the spill file failed
  too), rejected (the store refused the row for good), pruned (retention);
- `kagiya_audit_queue_depth`, `kagiya_audit_spill_bytes` (events waiting for replay), and
  `kagiya_audit_store_failing` (1 while writes to the store fail).
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kagiya.audit import WRITERS, audit_events, write_rows
from kagiya.audit.retention import prune
from kagiya.audit.writer import AuditWriter
from kagiya.audit_settings import AuditSettings
from kagiya.errors import ConfigError
from kagiya.private_files import ensure_private_dir
from kagiya.store import Store, is_unavailable

EXTENSION = "kagiya.audit_writer"
_LIVE: weakref.WeakSet[AuditWriter] = weakref.WeakSet()


def start_writer(store: Store, spill_dir: Path, settings: AuditSettings) -> AuditWriter:
    """Start the writer for `store` (replaying any spill file left by a previous run) and register it."""
    def insert(rows: Any) -> None:
        write_rows(store, rows)

    def prune_now() -> int:
        return prune(store, audit_events, retention_days=settings.retention_days, max_rows=settings.max_rows)

    try:
        ensure_private_dir(spill_dir)
        writer = AuditWriter(insert, spill_dir, settings, is_transient=is_unavailable, prune=prune_now)
    except OSError as exc:
        raise ConfigError(f"data_dir {spill_dir}: cannot create the audit spill file there ({exc.strerror}); "
                          "make data_dir a writable directory") from None
    WRITERS[store] = writer
    _LIVE.add(writer)
    store.on_dispose(writer.close)
    return writer


def init_app(app: Any, settings: Any, store: Store) -> AuditWriter:
    section: AuditSettings = settings.section("audit")
    writer = start_writer(store, Path(settings.data_dir), section)
    app.extensions[EXTENSION] = writer
    from kagiya.metrics import metrics_of

    metrics_of(app).registry.register(_Collector(writer))
    return writer


class _Collector:
    """Reads the writer's counters at scrape time (no locking on the request path)."""

    def __init__(self, writer: AuditWriter) -> None:
        self._writer = weakref.ref(writer)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        writer = self._writer()
        if writer is None:
            return
        events = CounterMetricFamily("kagiya_audit_events", "Audit events by what happened to them.",
                                     labels=["result"])
        for result, count in sorted(writer.stats.items()):
            events.add_metric([result], count)
        yield events
        yield GaugeMetricFamily("kagiya_audit_queue_depth", "Audit events waiting in memory.",
                                value=writer.queue_depth())
        yield GaugeMetricFamily("kagiya_audit_spill_bytes", "Bytes of audit events in the spill file.",
                                value=writer.spill_bytes())
        yield GaugeMetricFamily("kagiya_audit_store_failing", "1 while audit writes to the store fail.",
                                value=1 if writer.failing else 0)


def _after_fork_in_child() -> None:
    for writer in list(_LIVE):
        if not writer.closed:
            writer.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _drain_all() -> None:
    """Clean shutdown: every live writer drains its queue (to the store, else its spill file)."""
    for writer in list(_LIVE):
        writer.close()
