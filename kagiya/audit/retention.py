"""Audit retention: delete events older than `audit.retention_days` and beyond the newest `audit.max_rows`.

Run by the background writer every `audit.prune_interval_seconds`, in small transactions (so a SQLite
writer lock is never held long and PostgreSQL never builds one huge delete). Deleting the same rows from two
replicas at once is harmless: the second finds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from kagiya.store import Store

CHUNK = 5000


def prune(store: Store, table: sa.Table, *, retention_days: int, max_rows: int,
          now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> int:
    """Delete what is past either bound; returns how many rows went."""
    deleted = 0
    if retention_days:
        cutoff = now() - dt.timedelta(days=retention_days)
        deleted += _delete_while(store, table, table.c.time < cutoff)
    if max_rows:
        with store.connect() as conn:
            boundary = conn.execute(
                sa.select(table.c.id).order_by(table.c.id.desc()).offset(max_rows).limit(1)
            ).scalar()
        if boundary is not None:
            deleted += _delete_while(store, table, table.c.id <= boundary)
    return deleted


def _delete_while(store: Store, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
    total = 0
    while True:
        ids = sa.select(table.c.id).where(condition).order_by(table.c.id).limit(CHUNK).scalar_subquery()
        with store.begin() as conn:
            count = conn.execute(sa.delete(table).where(table.c.id.in_(ids))).rowcount or 0
        total += count
        if count < CHUNK:
            return total
