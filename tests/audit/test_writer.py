"""The audit writer keeps reviews off the store's critical path and loses nothing: a locked SQLite file, a queue
overflow, a failing spill file and a clean restart (the PostgreSQL outage is in test_postgres_outage.py)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kagiya import audit
from tests.audit.conftest import audit_rows, exclusive_lock, sqlite_pragma
from tests.support.apps import kagiya_app


@pytest.fixture
def uncached_settings(make_settings: Any, token_file: Path) -> Any:
    return make_settings({"authn": {"token_file": str(token_file), "cache_ttl_seconds": 0,
                                    "cache_negative_ttl_seconds": 0}})


def review(client: Any, token: str, request_id: str) -> tuple[Any, float]:
    start = time.perf_counter()
    resp = client.post("/authn/tokenreviews", headers={"X-Request-Id": request_id},
                       json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
    return resp, time.perf_counter() - start


def test_uncached_reviews_answer_fast_while_sqlite_is_locked(uncached_settings: Any, data_dir: Path) -> None:
    with kagiya_app(uncached_settings) as app:
        client = app.test_client()
        store = app.extensions["kagiya.store"]
        with exclusive_lock(data_dir / "kagiya.db"):
            times = []
            for i in range(20):
                resp, seconds = review(client, "dev-token-0002", f"locked-{i:02d}")
                assert resp.status_code == 200 and resp.get_json()["status"]["user"]["username"] == "bob"
                times.append(seconds)
            time.sleep(0.3)  # the writer is now blocked on the lock with events queued
            assert audit_rows(store, "authn.tokenreview") == []
        # the apiserver gives up after 10 s; with a synchronous write every review here took the busy timeout
        assert max(times) < 1.0, times
        assert audit.flush(store, 20)
        ids = [r["request_id"] for r in audit_rows(store, "authn.tokenreview")]
        assert ids == [f"locked-{i:02d}" for i in range(20)]


def test_queue_overflow_spills_in_order_and_replays_exactly_once(tmp_path: Path) -> None:
    from kagiya.audit.service import start_writer
    from kagiya.audit_settings import AuditSettings
    from kagiya.store import Store

    store = Store(f"sqlite:///{tmp_path / 'kagiya.db'}")
    store.migrate()
    writer = start_writer(store, tmp_path, AuditSettings(queue_size=10, batch_size=5, retry_seconds=0.05))
    try:
        with exclusive_lock(tmp_path / "kagiya.db"):
            for i in range(100):
                audit.record(store, actor="alice", action="test.overflow", target="t", outcome="success",
                             request_id=f"e{i:03d}")
            assert writer.stats["spilled"] >= 80  # the queue held at most 10 and one batch was in flight
            assert (tmp_path / "audit-spill.jsonl").stat().st_size > 0
        assert audit.flush(store, 20)
        ids = [r["request_id"] for r in audit_rows(store, "test.overflow")]
        assert ids == [f"e{i:03d}" for i in range(100)]  # in order, none lost, none twice
        assert (tmp_path / "audit-spill.jsonl").stat().st_size == 0
    finally:
        store.dispose()


def test_spill_failure_is_a_counted_drop_logged_once(uncached_settings: Any, data_dir: Path, caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="kagiya.audit")
    os.symlink("/dev/full", data_dir / "audit-spill.jsonl")  # every write to the spill file fails with ENOSPC
    with kagiya_app(uncached_settings) as app:
        client = app.test_client()
        writer = app.extensions["kagiya.audit_writer"]
        with sqlite_pragma(app.extensions["kagiya.store"], "PRAGMA query_only = ON"):  # the store refuses writes
            for i in range(5):
                resp, _ = review(client, "dev-token-0002", f"dropped-{i}")
                assert resp.status_code == 200
            deadline = time.monotonic() + 10
            while writer.stats["dropped"] < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
        metrics = client.get("/metrics").get_data(as_text=True)
    assert 'kagiya_audit_events_total{result="dropped"} 5.0' in metrics
    drop_lines = [r for r in caplog.records if r.getMessage().startswith("dropped ")]
    assert len(drop_lines) == 1 and "No space left on device" in drop_lines[0].getMessage()


def test_clean_restart_loses_nothing(uncached_settings: Any, data_dir: Path) -> None:
    with kagiya_app(uncached_settings) as app:
        store = app.extensions["kagiya.store"]
        for i in range(3):
            audit.record(store, actor="alice", action="test.restart", target="t", outcome="success",
                         request_id=f"a{i}")
        with sqlite_pragma(store, "PRAGMA query_only = ON"):
            for i in range(3, 7):
                audit.record(store, actor="alice", action="test.restart", target="t", outcome="success",
                             request_id=f"a{i}")
            app.extensions["kagiya.audit_writer"].close()  # what atexit / store.dispose() do on shutdown
        spill = data_dir / "audit-spill.jsonl"
        assert spill.stat().st_size > 0 and spill.stat().st_mode & 0o777 == 0o600
    with kagiya_app(uncached_settings) as app:  # the next start replays what the last one spilled
        store = app.extensions["kagiya.store"]
        assert audit.flush(store, 10)
        ids = [r["request_id"] for r in audit_rows(store, "test.restart")]
        assert ids == [f"a{i}" for i in range(7)]
        assert spill.stat().st_size == 0


def test_shutdown_drains_the_queue_into_the_store(uncached_settings: Any, data_dir: Path) -> None:
    from kagiya.store import Store

    with kagiya_app(uncached_settings) as app:
        store = app.extensions["kagiya.store"]
        with exclusive_lock(data_dir / "kagiya.db"):  # events pile up in the queue
            for i in range(50):
                audit.record(store, actor="alice", action="test.drain", target="t", outcome="success",
                             request_id=f"d{i:02d}")
        # leaving the block disposes the store: the writer drains first
    fresh = Store(f"sqlite:///{data_dir / 'kagiya.db'}")
    try:
        assert [r["request_id"] for r in audit_rows(fresh, "test.drain")] == [f"d{i:02d}" for i in range(50)]
    finally:
        fresh.dispose()


def test_a_forked_child_writes_its_own_events(uncached_settings: Any, data_dir: Path) -> None:
    """A process forked after the app was built (`kagiya serve` does not fork, but an embedder may) gets a live
    writer and its own spill file."""
    with kagiya_app(uncached_settings) as app:
        store = app.extensions["kagiya.store"]
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                store.engine.dispose(close=False)
                resp, _ = review(app.test_client(), "dev-token-0002", "from-child")
                writer = app.extensions["kagiya.audit_writer"]
                own_spill = writer.spill.path.name != "audit-spill.jsonl"  # the parent holds that one
                ok = resp.status_code == 200 and audit.flush(store, 10) and own_spill
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        review(app.test_client(), "dev-token-0002", "from-parent")
        assert audit.flush(store, 10)
        assert [r["request_id"] for r in audit_rows(store, "authn.tokenreview")] == ["from-child", "from-parent"]


def test_secrets_audit_uses_the_same_writer(make_settings: Any, token_file: Path, tmp_path: Path,
                                            data_dir: Path) -> None:
    """Encrypt and decrypt answer while the store is locked; their events land once it is free."""
    from kagiya.secrets.keys import local

    settings = make_settings({
        "authn": {"token_file": str(token_file)},
        "secrets": {"keyring": str(tmp_path / "svc-keyring"), "decrypt_groups": ["team-a"],
                    "default_recipients": ["local:svc"]},
    })
    local.generate(settings.section("secrets"), "svc")
    manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\nstringData:\n  k: v-1\n"
    yaml = {"Content-Type": "application/yaml"}
    with kagiya_app(settings) as app:
        client = app.test_client()
        with exclusive_lock(data_dir / "kagiya.db"):
            start = time.perf_counter()
            enc = client.post("/v1/secrets/encrypt", data=manifest,
                              headers={**yaml, "Authorization": "Bearer dev-token-0002", "X-Request-Id": "enc-1"})
            dec = client.post("/v1/secrets/decrypt", data=enc.text,
                              headers={**yaml, "Authorization": "Bearer approver-token-0003", "X-Request-Id": "dec-1"})
            assert enc.status_code == 200 and dec.status_code == 200 and dec.text == manifest
            assert time.perf_counter() - start < 2.0
        store = app.extensions["kagiya.store"]
        assert audit.flush(store, 20)
        assert [r["request_id"] for r in audit_rows(store, "secrets.encrypt")] == ["enc-1"]
        assert [r["request_id"] for r in audit_rows(store, "secrets.decrypt")] == ["dec-1"]


def test_a_crash_after_replay_inserted_but_before_truncate_replays_exactly_once(tmp_path: Path) -> None:
    """The spill offset lives in memory: after a crash the whole file is replayed again; the store skips the
    event_uids it already holds, so each event is stored once and in the file's order."""
    from kagiya.audit.service import start_writer
    from kagiya.audit.spill import SpillFile
    from kagiya.audit_settings import AuditSettings
    from kagiya.store import Store

    store = Store(f"sqlite:///{tmp_path / 'kagiya.db'}")
    store.migrate()
    rows = [{"time": audit.AuditEvent("a", "x", "t", "success").time, "actor": "alice", "action": "test.crash",
             "target": "t", "outcome": "success", "request_id": f"c{i:02d}", "details": "{}",
             "event_uid": os.urandom(16).hex()} for i in range(20)]
    spill = SpillFile(tmp_path)
    spill.append(rows)
    spill.sync()
    audit.write_rows(store, rows[:12])  # the replay's insert committed ...
    os.close(spill.fd)  # ... then the process died: no truncate, and its flock goes with the descriptor
    writer = start_writer(store, tmp_path, AuditSettings(batch_size=5, retry_seconds=0.05))
    try:
        assert audit.flush(store, 10)
        assert [r["request_id"] for r in audit_rows(store, "test.crash")] == [f"c{i:02d}" for i in range(20)]
        assert writer.stats["replayed"] == 20 and (tmp_path / "audit-spill.jsonl").stat().st_size == 0
    finally:
        store.dispose()


def test_many_threads_through_overflow_and_a_locked_store_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """Request threads overflow into the spill file while the writer inserts and replays: every event lands once,
    and each thread's events keep their order."""
    import threading

    from kagiya.audit.service import start_writer
    from kagiya.audit_settings import AuditSettings
    from kagiya.store import Store

    store = Store(f"sqlite:///{tmp_path / 'kagiya.db'}")
    store.migrate()
    writer = start_writer(store, tmp_path, AuditSettings(queue_size=10, batch_size=7, retry_seconds=0.02,
                                                         max_retry_seconds=0.05))

    def submit(thread: int) -> None:
        for i in range(150):
            audit.record(store, actor="alice", action="test.threads", target="t", outcome="success",
                         request_id=f"t{thread}-{i:03d}")

    try:
        threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
        with exclusive_lock(tmp_path / "kagiya.db"):
            for t in threads[:3]:
                t.start()
            for t in threads[:3]:
                t.join()
        for t in threads[3:]:
            t.start()
        for t in threads[3:]:
            t.join()
        assert audit.flush(store, 30)
        ids = [r["request_id"] for r in audit_rows(store, "test.threads")]
        assert len(ids) == len(set(ids)) == 900 and writer.stats["dropped"] == 0
        for n in range(6):
            mine = [i for i in ids if i.startswith(f"t{n}-")]
            assert mine == sorted(mine)
    finally:
        store.dispose()
