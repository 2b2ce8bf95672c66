"""Audit retention: `audit.retention_days` and `audit.max_rows` bound the table; the writer prunes in the
background."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kagiya import audit
from kagiya.audit.retention import prune
from kagiya.errors import ConfigError


def rows_at(times: list[dt.datetime]) -> list[dict[str, Any]]:
    return [{"time": t, "actor": "a", "action": "test.retention", "target": "t", "outcome": "success",
             "request_id": f"r{i}", "details": "{}", "event_uid": os.urandom(16).hex()} for i, t in enumerate(times)]


def remaining(store: Any) -> list[str]:
    t = audit.audit_events
    with store.connect() as conn:
        return list(conn.execute(sa.select(t.c.request_id).order_by(t.c.id)).scalars())


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from kagiya.store import Store

    s = Store(f"sqlite:///{tmp_path / 'kagiya.db'}")
    s.migrate()
    yield s
    s.dispose()


def test_prune_by_age_keeps_recent_events(store: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    audit.write_rows(store, rows_at([now - dt.timedelta(days=40), now - dt.timedelta(days=31),
                                     now - dt.timedelta(days=29), now]))
    assert prune(store, audit.audit_events, retention_days=30, max_rows=0) == 2
    assert remaining(store) == ["r2", "r3"]


def test_prune_by_row_count_drops_the_oldest(store: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    audit.write_rows(store, rows_at([now] * 12))
    assert prune(store, audit.audit_events, retention_days=0, max_rows=5) == 7
    assert remaining(store) == [f"r{i}" for i in range(7, 12)]
    assert prune(store, audit.audit_events, retention_days=0, max_rows=5) == 0


def test_the_writer_prunes_in_the_background(store: Any, tmp_path: Path) -> None:
    from kagiya.audit.service import start_writer
    from kagiya.audit_settings import AuditSettings

    now = dt.datetime.now(dt.UTC)
    audit.write_rows(store, rows_at([now - dt.timedelta(days=3)] * 5 + [now] * 1200))
    start_writer(store, tmp_path, AuditSettings(retention_days=2, max_rows=1000, prune_interval_seconds=1))
    deadline = time.monotonic() + 10
    while len(remaining(store)) > 1000 and time.monotonic() < deadline:
        time.sleep(0.1)
    kept = remaining(store)
    assert len(kept) == 1000 and kept[-1] == "r1204"


def test_retention_settings_come_from_config(make_settings: Any) -> None:
    settings = make_settings(env={"KAGIYA_AUDIT_RETENTION_DAYS": "7", "KAGIYA_AUDIT_MAX_ROWS": "5000"})
    assert settings.section("audit").retention_days == 7
    assert settings.section("audit").max_rows == 5000
    assert make_settings().section("audit").retention_days == 90
    with pytest.raises(ConfigError, match="max_rows"):
        make_settings({"audit": {"max_rows": 10}})
    with pytest.raises(ConfigError, match="retention_days"):
        make_settings({"audit": {"retention_days": -1}})


def test_building_settings_does_not_import_the_store() -> None:
    """The audit section is read by every CLI command that loads settings; SQLAlchemy must stay out of that path."""
    import subprocess
    import sys

    code = ("import sys; from kagiya.config import load_settings; load_settings(env={}); "
            "print('sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
