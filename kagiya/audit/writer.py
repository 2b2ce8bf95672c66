"""The background audit writer: one thread per process that moves queued events into the store in batches.

Why: a request must never wait on an audit write (an fsync, a locked SQLite file, a PostgreSQL outage). The
request thread only appends the event to a bounded in-memory queue; this thread writes batches of it.

Where an event can be, in order of age (the invariant that keeps replay in order):
    store  <-  spill file (older)  <-  in-flight batch  <-  queue (newest)
- Store up, spill empty: the writer takes up to `batch_size` events and inserts them in one transaction.
- That insert fails with a store error (down, locked, full, read-only): the batch is appended to the spill file
  and fsync'd; from then on the spill file is replayed first, with capped exponential backoff, and queued
  events are moved into the spill file (fsync'd per batch) while the store keeps failing.
- The queue is full: the request thread appends the in-flight batch (if any; the store ignores it if that insert
  commits after all), the whole queue and its event to the spill file, so nothing is reordered.
- The spill file cannot be written either: only then are events dropped, counted and logged once per interval.
Every event carries a unique `event_uid`; the store ignores one it already holds, so replay is exactly once
even when a batch was both spilled and committed, or a crash repeats part of the spill file.

`close()` drains on a clean shutdown: the queue goes to the store, or to the spill file when the store fails or
the drain deadline passes; the next start replays the spill file.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kagiya.audit.spill import SpillFile
from kagiya.audit_settings import AuditSettings

log = logging.getLogger("kagiya.audit")

#: Drops are logged at most once per this many seconds (with the count since the last line).
DROP_LOG_INTERVAL = 60.0

Insert = Callable[[Sequence[dict[str, Any]]], None]
Prune = Callable[[], int]


class AuditWriter:
    """The queue, the spill file and the thread that moves events between them and the store."""

    def __init__(self, insert: Insert, spill_dir: Path, settings: AuditSettings, *,
                 is_transient: Callable[[BaseException], bool], prune: Prune | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._insert = insert
        self._is_transient = is_transient
        self._prune = prune
        self._clock = clock
        self.settings = settings
        self.spill = SpillFile(spill_dir)
        self._cond = threading.Condition()
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._inflight: list[dict[str, Any]] | None = None
        self._inflight_spilled = False
        self._backlog = self.spill.pending
        self._failing = False
        self._retry_at = 0.0
        self._backoff = settings.retry_seconds
        self._next_prune = clock() + settings.prune_interval_seconds
        self._stopping = False
        self._closed = False
        self._deadline = float("inf")
        self._next_drop_log = 0.0
        self._spill_blocked_until = 0.0
        self._drops_unlogged = 0
        self.last_error = ""
        self.stats = {"submitted": 0, "written": 0, "spilled": 0, "replayed": 0, "dropped": 0, "rejected": 0,
                      "pruned": 0}
        self._thread = threading.Thread(target=self._run, name="kagiya-audit-writer", daemon=True)
        self._thread.start()

    # --- request threads -------------------------------------------------------------------------------------
    def submit(self, row: dict[str, Any]) -> None:
        """Queue one event; never blocks on the store. After close(), writes it directly (or counts a drop)."""
        with self._cond:
            self.stats["submitted"] += 1
            if not self._closed:
                if len(self._queue) < self.settings.queue_size:
                    self._queue.append(row)
                    self._cond.notify()
                    return
                self._overflow(row)
                return
        try:
            self._insert([row])
            self.stats["written"] += 1
        except Exception as exc:  # noqa: BLE001 - after shutdown there is nowhere else to put it
            self._drop(1, f"store write after shutdown failed: {type(exc).__name__}")

    def _overflow(self, row: dict[str, Any]) -> None:
        """Queue full (lock held): spill in-flight batch, queue and `row`, in that order, so order is kept."""
        rows: list[dict[str, Any]] = []
        spills_inflight = self._inflight is not None and not self._inflight_spilled
        if spills_inflight and self._inflight is not None:
            rows.extend(self._inflight)
        rows.extend(self._queue)
        rows.append(row)
        try:
            self.spill.append(rows)
        except OSError as exc:
            self._drop(1, f"queue full and spill file failed: {exc.strerror}")
            return
        self.stats["spilled"] += len(rows) - (len(self._inflight or []) if spills_inflight else 0)
        self._inflight_spilled = self._inflight_spilled or spills_inflight
        self._queue.clear()
        self._backlog = True
        self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until every event submitted so far is in the store; False if that did not happen in time."""
        end = self._clock() + timeout
        with self._cond:
            self._retry_at = 0.0
            self._cond.notify()
            while self._queue or self._inflight is not None or self._backlog:
                left = end - self._clock()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float | None = None) -> None:
        """Drain (to the store, else the spill file) and stop. Idempotent; later submits write directly."""
        drain = self.settings.drain_seconds if timeout is None else timeout
        with self._cond:
            if self._closed:
                return
            self._stopping = True
            self._deadline = self._clock() + drain
            self._retry_at = 0.0
            self._cond.notify_all()
        self._thread.join(drain + 1.0)
        with self._cond:
            # a batch still in flight (the drain deadline passed mid-insert) is spilled too; if its insert commits
            # after all, replay skips it by event_uid
            leftover = list(self._inflight or []) if not self._inflight_spilled else []
            self._inflight_spilled = True
            leftover.extend(self._queue)
            self._queue.clear()
            if leftover:
                self._spill_or_drop(leftover, "shutdown")
            self.spill.close()
            self._closed = True
            self._cond.notify_all()

    def reset_after_fork(self) -> None:
        """In a forked child (a process forked after the app was built; `kagiya serve` itself never forks): the
        parent's thread did not come along, its queue is the parent's to write, and its spill file stays locked by
        the parent. Start afresh with our own."""
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._inflight, self._inflight_spilled = None, False
        os.close(self.spill.fd)  # our copy only: the parent's flock stays (it belongs to the shared description)
        self.spill.fd = -1
        self.spill = SpillFile(self.spill.directory)
        self._backlog = self.spill.pending
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="kagiya-audit-writer", daemon=True)
        self._thread.start()

    @property
    def failing(self) -> bool:
        return self._failing

    @property
    def closed(self) -> bool:
        return self._closed

    def queue_depth(self) -> int:
        return len(self._queue)

    def spill_bytes(self) -> int:
        return 0 if self.spill.fd < 0 else max(0, self.spill.size() - self.spill.offset)

    # --- the writer thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, timeout=self._idle_timeout())
                stopping = self._stopping
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad cycle
                log.exception("audit writer cycle failed")
                time.sleep(0.1)
            if stopping:
                with self._cond:
                    done = not self._queue and (not self._backlog or self._failing)
                    if done or self._clock() >= self._deadline:
                        if self._queue:
                            self._spill_or_drop(list(self._queue), "shutdown")
                            self._queue.clear()
                        self.spill.sync()
                        return

    def _has_work(self) -> bool:
        now = self._clock()
        return bool(self._stopping or (self._queue and now >= self._spill_blocked_until)
                    or (self._backlog and now >= self._retry_at) or now >= self._next_prune)

    def _idle_timeout(self) -> float:
        now = self._clock()
        due = self._next_prune
        if self._backlog:
            due = min(due, self._retry_at)
        if self._queue:
            due = min(due, self._spill_blocked_until)
        return max(0.01, due - now)

    def _step(self) -> None:
        batch: list[dict[str, Any]] | None = None
        with self._cond:
            if self._backlog and self._failing and self._queue:
                # the store is away: make queued events durable now rather than at the next retry
                rows = list(self._queue)
                try:
                    self.spill.append(rows)
                    self._queue.clear()
                    self.stats["spilled"] += len(rows)
                except OSError as exc:
                    # they stay queued (the queue is the only copy): try again shortly, do not spin
                    self.last_error = f"spill file: {exc.strerror}"
                    self._spill_blocked_until = self._clock() + self._backoff
            elif not self._backlog and self._queue:
                size = min(len(self._queue), self.settings.batch_size)
                batch = [self._queue.popleft() for _ in range(size)]
                self._inflight, self._inflight_spilled = batch, False
        self.spill.sync()  # outside the lock: a request overflowing the queue never waits on this fsync
        if batch is not None:
            self._write_batch(batch)
        elif self._backlog and self._clock() >= self._retry_at:
            self._replay_chunk()
        if self._prune is not None and self._clock() >= self._next_prune:
            self._next_prune = self._clock() + self.settings.prune_interval_seconds
            try:
                self.stats["pruned"] += self._prune()
            except Exception as exc:  # noqa: BLE001 - pruning is retried next interval
                log.warning("audit retention pruning failed: %s", type(exc).__name__)

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        failed: BaseException | None = None
        try:
            written = self._insert_checked(batch)
            self.stats["written"] += written
            self._succeeded()
        except Exception as exc:  # noqa: BLE001 - a store error: spill, never lose
            failed = exc
        with self._cond:
            if failed is not None:
                self._failed(failed)
                if not self._inflight_spilled:
                    self._spill_or_drop(batch, "store write failed")
            self._inflight, self._inflight_spilled = None, False
            self._cond.notify_all()
        self.spill.sync()

    def _replay_chunk(self) -> None:
        rows, end = self.spill.read(self.settings.batch_size)
        if rows:
            try:
                self.stats["replayed"] += self._insert_checked(rows)
            except Exception as exc:  # noqa: BLE001 - store still away: keep the file, retry later
                with self._cond:
                    self._failed(exc)
                return
            self._succeeded()
        with self._cond:
            self.spill.offset = end
            if self.spill.offset >= self.spill.size():
                self.spill.reset()
                self._backlog = False
                log.info("audit spill file replayed into the store")
            self._cond.notify_all()

    def _insert_checked(self, rows: list[dict[str, Any]]) -> int:
        """Insert `rows`; a transient store error propagates. A row the store refuses for good (not transient)
        is dropped alone and counted as rejected, so one bad row never blocks the spill file."""
        try:
            self._insert(rows)
            return len(rows)
        except Exception as exc:
            if self._is_transient(exc):
                raise
        written = 0
        for row in rows:
            try:
                self._insert([row])
                written += 1
            except Exception as exc:
                if self._is_transient(exc):
                    raise
                self.stats["rejected"] += 1
                log.error("the store refused an audit event (%s); it is dropped", type(exc).__name__,
                          extra={"audit": {"action": row.get("action"), "eventUid": row.get("event_uid")}})
        return written

    def _succeeded(self) -> None:
        if self._failing:
            log.info("audit writes to the store work again")
        self._failing = False
        self._backoff = self.settings.retry_seconds
        self.last_error = ""

    def _failed(self, exc: BaseException) -> None:
        """Lock held."""
        if not self._failing:
            log.warning("audit writes to the store fail (%s); events go to the spill file %s",
                        type(exc).__name__, self.spill.path)
        self._failing = True
        self.last_error = f"store: {type(exc).__name__}"
        self._retry_at = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.settings.max_retry_seconds)

    def _spill_or_drop(self, rows: list[dict[str, Any]], why: str) -> None:
        """Lock held."""
        try:
            self.spill.append(rows)
        except OSError as exc:
            self._drop(len(rows), f"{why} and the spill file failed: {exc.strerror}")
            return
        self.stats["spilled"] += len(rows)
        self._backlog = True

    def _drop(self, count: int, why: str) -> None:
        self.stats["dropped"] += count
        self._drops_unlogged += count
        now = self._clock()
        if now >= self._next_drop_log:
            log.error("dropped %d audit events: %s", self._drops_unlogged, why)
            self._drops_unlogged = 0
            self._next_drop_log = now + DROP_LOG_INTERVAL
