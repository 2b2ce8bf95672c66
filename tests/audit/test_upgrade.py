"""A store made before `event_uid` existed upgrades in place, and replayed events are then deduplicated."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from kagiya import audit
from kagiya.store import Store

OLD_DDL = """CREATE TABLE audit_events (id INTEGER PRIMARY KEY AUTOINCREMENT, time DATETIME NOT NULL,
actor VARCHAR(256) NOT NULL, action VARCHAR(64) NOT NULL, target VARCHAR(512) NOT NULL, outcome VARCHAR(32) NOT NULL,
request_id VARCHAR(64) NOT NULL, details TEXT NOT NULL)"""


def test_an_old_audit_table_gains_event_uid_and_replays_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kagiya.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE schema_versions (component VARCHAR(64) PRIMARY KEY, version INTEGER)"))
        conn.execute(sa.text(OLD_DDL))
        conn.execute(sa.text("INSERT INTO schema_versions VALUES ('audit', 1)"))
        conn.execute(sa.text("INSERT INTO audit_events (time, actor, action, target, outcome, request_id, details) "
                             "VALUES ('2026-01-01 00:00:00', 'old', 'test.old', 't', 'success', '', '{}')"))
    engine.dispose()
    store = Store(url)
    try:
        assert store.migrate()["audit"] == 2
        row = {"time": dt.datetime.now(dt.UTC), "actor": "a", "action": "test.new", "target": "t",
               "outcome": "success", "request_id": "r", "details": "{}", "event_uid": "ab" * 16}
        audit.write_rows(store, [row])
        audit.write_rows(store, [row])  # a replay of the same event
        with store.connect() as conn:
            actions = conn.execute(sa.select(audit.audit_events.c.action).order_by(audit.audit_events.c.id))
            assert list(actions.scalars()) == ["test.old", "test.new"]
    finally:
        store.dispose()
