"""Store behaviour every capability relies on, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from kagiya import audit
from kagiya.errors import ConfigError, UpstreamUnavailable
from kagiya.store import SCHEMAS, Store, schema_versions


def test_migrate_is_idempotent_and_records_versions(store: Any) -> None:
    first = store.migrate()
    assert store.migrate() == first
    assert first["audit"] >= 1
    with store.connect() as conn:
        rows = dict(conn.execute(sa.select(schema_versions.c.component, schema_versions.c.version)).all())
    assert rows == first
    assert len(rows) == len(SCHEMAS)


def test_concurrent_migrators_agree(store_url: str) -> None:
    errors: list[BaseException] = []
    stores = [Store(store_url) for _ in range(4)]

    def run(s: Store) -> None:
        try:
            s.migrate()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.dispose()
    assert errors == []


def test_newer_schema_than_code_is_refused(store: Any) -> None:
    with store.begin() as conn:
        conn.execute(schema_versions.update().where(schema_versions.c.component == "audit").values(version=99))
    with pytest.raises(ConfigError, match="newer than this kagiya"):
        store.migrate()


def test_audit_events_keep_order_and_timezone(store: Any) -> None:
    for i in range(3):
        audit.record(store, actor="alice", action="test.order", target=f"t{i}", outcome="success")
    items, more = audit.query(store, audit.AuditQuery(action="test.order"))
    assert [e["target"] for e in items] == ["t0", "t1", "t2"] and more is None
    assert all(e["time"].endswith("Z") for e in items)
    assert items[0]["id"] < items[1]["id"] < items[2]["id"]


def test_audit_rolls_back_with_its_transaction(store: Any) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        audit.record(store, actor="a", action="test.rollback", target="x", outcome="success", conn=conn)
        raise RuntimeError("abort the change the event describes")
    assert audit.query(store, audit.AuditQuery(action="test.rollback"))[0] == []


def test_conditional_update_lets_exactly_one_writer_win(store: Any) -> None:
    """The pattern capabilities use for approvals: UPDATE … WHERE state='pending', check rowcount."""
    table = sa.Table(
        "race_test", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("state", sa.String(16))
    )
    with store.begin() as conn:
        table.create(conn)
        conn.execute(table.insert().values(id=1, state="pending"))
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def approve(who: str) -> None:
        barrier.wait()
        with store.begin() as conn:
            result = conn.execute(table.update().where(table.c.id == 1, table.c.state == "pending").values(state=who))
            if result.rowcount == 1:
                winners.append(who)

    threads = [threading.Thread(target=approve, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    with store.connect() as conn:
        assert conn.execute(sa.select(table.c.state)).scalar_one() == winners[0]


def test_ping_fails_closed_when_database_is_gone(tmp_path: Any) -> None:
    s = Store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(UpstreamUnavailable, match="store unavailable"):
        s.ping()
    s.dispose()


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        Store("not a url")


def test_ping_answers_within_the_connect_timeout_when_the_database_hangs() -> None:
    """A server that accepts TCP but never speaks (a partition, a hung proxy) must not hang readiness."""
    import socket
    import time

    from kagiya.store import CONNECT_TIMEOUT_SECONDS

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    s = Store(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamUnavailable):
            s.ping()
    finally:
        s.dispose()
        listener.close()
    assert time.monotonic() - started < CONNECT_TIMEOUT_SECONDS + 3


def test_a_reader_paging_by_id_never_skips_an_event_committed_late(store: Any) -> None:
    """Event ids become visible in id order: while an earlier event's transaction is open, a later one waits."""
    import time

    with store.begin() as slow:
        audit.record(store, actor="a", action="test.late", target="first", outcome="success", conn=slow)
        writer = threading.Thread(target=audit.record, args=(store,),
                                  kwargs={"actor": "b", "action": "test.late", "target": "second",
                                          "outcome": "success"})
        writer.start()
        time.sleep(0.5)
        seen_while_open, _ = audit.query(store, audit.AuditQuery(action="test.late"))
        # A reader that saw "second" now would page past "first" for good.
        assert [e["target"] for e in seen_while_open] == []
    writer.join(10)
    items, _ = audit.query(store, audit.AuditQuery(action="test.late"))
    assert [e["target"] for e in items] == ["first", "second"]


def test_only_a_read_only_transaction_counts_as_an_outage_among_internal_errors() -> None:
    """SQLSTATE 25006 (a standby, a read-only primary) is retry-later; any other InternalError stays a bug (500)."""
    import sqlalchemy as sa

    from kagiya.store import is_unavailable

    class DriverError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    assert is_unavailable(sa.exc.InternalError("INSERT", {}, DriverError("25006")))
    assert not is_unavailable(sa.exc.InternalError("INSERT", {}, DriverError("XX000")))
    assert not is_unavailable(sa.exc.IntegrityError("INSERT", {}, DriverError("23505")))


def test_a_failed_statement_never_carries_its_parameters_into_errors_or_logs(store: Any) -> None:
    """The generic 500 handler logs the traceback: an error's text must not quote what was being written (a console
    session's CSRF token here; a shared HMAC key or a policy body elsewhere)."""
    import datetime as dt

    import sqlalchemy as sa

    from kagiya.console.sessions import sessions

    now = dt.datetime.now(dt.UTC)
    row = {"id_hash": "a" * 64, "username": "bob", "uid": "", "groups": "[]", "mode": "static",
           "csrf": "csrf-token-that-must-not-leak", "created_at": now, "last_seen_at": now, "expires_at": now}
    with store.begin() as conn:
        conn.execute(sessions.insert().values(**row))
    with pytest.raises(sa.exc.IntegrityError) as caught:
        with store.begin() as conn:
            conn.execute(sessions.insert().values(**row))
    assert "csrf-token-that-must-not-leak" not in str(caught.value) and "hidden" in str(caught.value)
