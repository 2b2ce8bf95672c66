"""Settings section `audit:`: the background writer's queue, its spill file and retention. Kept apart from the
kagiya.audit package (which imports SQLAlchemy), as kube_settings.py is, so building settings stays light.

`retention_days` and `max_rows` bound the audit table; the writer prunes rows past either bound every
`prune_interval_seconds` (0 disables that bound). `queue_size` events wait in memory for the writer; beyond it
events go straight to the spill file. `batch_size` events are written per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditSettings:
    #: Delete events older than this many days (0 keeps them for ever).
    retention_days: int = 90
    #: Keep at most this many events, deleting the oldest first (0 means no row bound).
    max_rows: int = 1_000_000
    #: How often the writer prunes (seconds).
    prune_interval_seconds: float = 300.0
    #: Events held in memory before they overflow to the spill file.
    queue_size: int = 10_000
    #: Events per store transaction (and per fsync of the spill file).
    batch_size: int = 500
    #: First retry delay after a failed store write; doubles up to `max_retry_seconds`.
    retry_seconds: float = 0.5
    max_retry_seconds: float = 10.0
    #: On a clean shutdown, how long the writer may take to drain its queue (to the store, else the spill file).
    drain_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.retention_days <= 36_500:
            raise ValueError(f"retention_days must be from 0 to 36500, got {self.retention_days}")
        if not (self.max_rows == 0 or 1000 <= self.max_rows <= 10**10):
            raise ValueError(f"max_rows must be 0 or from 1000 to 10000000000, got {self.max_rows}")
        if not 1 <= self.prune_interval_seconds <= 86_400:
            raise ValueError(f"prune_interval_seconds must be from 1 to 86400, got {self.prune_interval_seconds}")
        if not 10 <= self.queue_size <= 1_000_000:
            raise ValueError(f"queue_size must be from 10 to 1000000, got {self.queue_size}")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch_size must be from 1 to 10000, got {self.batch_size}")
        if not 0.01 <= self.retry_seconds <= self.max_retry_seconds <= 600:
            raise ValueError("retry_seconds and max_retry_seconds must satisfy 0.01 <= retry <= max <= 600")
        if not 0 <= self.drain_seconds <= 600:
            raise ValueError(f"drain_seconds must be from 0 to 600, got {self.drain_seconds}")
