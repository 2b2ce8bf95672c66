"""A real PostgreSQL stopped and started under a running replica: reviews keep answering, their audit events
are spilled and replayed exactly once in order, writes answer 503 + Retry-After, and the replica recovers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kagiya import audit
from tests.audit.conftest import ADMIN, BASE_ARN, audit_rows
from tests.audit.test_store_failures import assert_unavailable, put_policy, wait_ready
from tests.audit.test_writer import review
from tests.support.apps import kagiya_app
from tests.support.postgres import reset_database, stop_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_postgres_outage_spills_replays_and_recovers(postgres: Any, make_settings: Any, token_file: Path,
                                                     data_dir: Path) -> None:
    url, server = postgres
    reset_database(url)
    settings = make_settings({"database_url": url, "iam": {"base_role_arn": BASE_ARN},
                              "authn": {"token_file": str(token_file), "cache_ttl_seconds": 0,
                                        "cache_negative_ttl_seconds": 0},
                              "audit": {"retry_seconds": 0.1, "max_retry_seconds": 0.5}})
    with kagiya_app(settings) as app:
        app.config["TESTING"] = False
        client = app.test_client()
        store = app.extensions["kagiya.store"]
        writer = app.extensions["kagiya.audit_writer"]
        for i in range(3):
            assert review(client, "dev-token-0002", f"pg-{i:02d}")[0].status_code == 200
        assert audit.flush(store, 10)
        stop_postgres(server)
        try:
            for i in range(3, 13):
                resp, seconds = review(client, "dev-token-0002", f"pg-{i:02d}")
                assert resp.status_code == 200 and seconds < 1.0
            deadline = time.monotonic() + 10
            while writer.stats["spilled"] < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert writer.stats["spilled"] == 10 and writer.stats["dropped"] == 0
            assert (data_dir / "audit-spill.jsonl").stat().st_size > 0
            started = time.monotonic()
            assert_unavailable(put_policy(client, "team-a"))
            assert time.monotonic() - started < 6
            assert client.get("/readyz").status_code == 503
        finally:
            server.start()
        assert wait_ready(client, 20).status_code == 200
        assert audit.flush(store, 20)
        ids = [r["request_id"] for r in audit_rows(store, "authn.tokenreview")]
        assert ids == [f"pg-{i:02d}" for i in range(13)]  # in order, none lost, none twice
        assert put_policy(client, "team-a").status_code == 200
        assert client.get("/v1/iam/policies/team-a", headers=ADMIN).status_code == 200


def test_a_read_only_postgres_is_503_not_500_and_recovers(postgres: Any, make_settings: Any, token_file: Path) -> None:
    """After a failover the service may reach a standby (or a primary put in read-only mode): writes fail with
    SQLSTATE 25006, which the driver raises as InternalError, not OperationalError. Still 503 + Retry-After."""
    import sqlalchemy as sa

    url, _server = postgres
    reset_database(url)
    settings = make_settings({"database_url": url, "authn": {"token_file": str(token_file)}})
    with kagiya_app(settings) as app:
        app.config["TESTING"] = False
        client = app.test_client()
        store = app.extensions["kagiya.store"]
        assert put_policy(client, "team-a").status_code == 200

        def read_only(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_conn.commit()

        sa.event.listen(store.engine, "connect", read_only)
        store.engine.dispose()
        try:
            assert_unavailable(put_policy(client, "team-b"))
            assert client.get("/readyz").status_code == 503
        finally:
            sa.event.remove(store.engine, "connect", read_only)
            store.engine.dispose()
        assert wait_ready(client, 10).status_code == 200
        assert put_policy(client, "team-b").status_code == 200
