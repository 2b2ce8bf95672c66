"""Helpers for the audit pipeline and store-failure suites: provoke real SQLite failures on kagiya's own engine."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import postgres_server_process
from tests.support.servers import ServerProcess

BASE_ARN = "arn:aws:iam::123456789012:role/"
ADMIN = {"Authorization": "Bearer admin-token-0001"}


@pytest.fixture(scope="session")
def postgres() -> Iterator[tuple[str, ServerProcess]]:
    """A private PostgreSQL server this suite may stop and start (an outage)."""
    with postgres_server_process() as pair:
        yield pair


@contextmanager
def sqlite_pragma(store: Any, *pragmas: str) -> Iterator[None]:
    """Every new connection of the store's engine runs `pragmas` (`query_only` = a read-only database,
    `max_page_count` = a full disk); pooled connections are dropped so the next request reconnects."""
    import sqlalchemy as sa

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in pragmas:
            if pragma == "full":
                pages = cur.execute("PRAGMA page_count").fetchone()[0]
                cur.execute(f"PRAGMA max_page_count = {pages}")
            else:
                cur.execute(pragma)
        cur.close()

    sa.event.listen(store.engine, "connect", on_connect)
    store.engine.dispose()
    try:
        yield
    finally:
        sa.event.remove(store.engine, "connect", on_connect)
        store.engine.dispose()


@contextmanager
def exclusive_lock(db_path: Path) -> Iterator[None]:
    """Another process-like connection holds SQLite's exclusive write lock until the block ends."""
    conn = sqlite3.connect(str(db_path), timeout=1, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def audit_rows(store: Any, action: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from kagiya import audit

    with store.connect() as conn:
        t = audit.audit_events
        return [dict(r) for r in conn.execute(sa.select(t).where(t.c.action == action).order_by(t.c.id)).mappings()]


def in_thread(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread
