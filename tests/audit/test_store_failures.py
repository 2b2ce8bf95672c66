"""A store that cannot be written answers 503 + Retry-After with a Status body (never 500); /readyz is 503 from
the first failed write until a write succeeds; the replica recovers by itself. SQLite read-only and full here,
a real PostgreSQL stopped and started in test_postgres_outage.py."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.audit.conftest import ADMIN, BASE_ARN, sqlite_pragma
from tests.support.apps import kagiya_app


@pytest.fixture
def iam_settings(make_settings: Any, token_file: Any) -> Any:
    return make_settings({"authn": {"token_file": str(token_file)}, "iam": {"base_role_arn": BASE_ARN}})


def put_policy(client: Any, namespace: str, note: str = "") -> Any:
    return client.put(f"/v1/iam/policies/{namespace}", headers=ADMIN,
                      json={"allow": [{"cloud": "aws", "glob": BASE_ARN + "app-*" + note}]})


def assert_unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "5"
    body = resp.get_json()
    assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable" and body["code"] == 503
    assert body["details"]["retryAfterSeconds"] == 5
    assert "Traceback" not in resp.get_data(as_text=True)


def wait_ready(client: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get("/readyz")
        if resp.status_code == 200 or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_read_only_sqlite_is_503_and_unready_until_a_write_succeeds(iam_settings: Any) -> None:
    with kagiya_app(iam_settings) as app:
        app.config["TESTING"] = False  # answer as in production: the error handler, not a raised exception
        client = app.test_client()
        assert put_policy(client, "team-a").status_code == 200
        assert client.get("/readyz").status_code == 200
        with sqlite_pragma(app.extensions["kagiya.store"], "PRAGMA query_only = ON"):
            assert_unavailable(put_policy(client, "team-b"))
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "store unavailable" in ready.get_json()["details"]["checks"]["store"]
            assert client.get("/v1/iam/policies/team-a", headers=ADMIN).status_code == 200  # reads still work
            time.sleep(1.1)
            assert client.get("/readyz").status_code == 503  # the probe write fails too
        assert wait_ready(client).status_code == 200  # recovered by itself: a probe write succeeded
        assert put_policy(client, "team-b").status_code == 200


def test_full_sqlite_disk_is_503_never_500(iam_settings: Any) -> None:
    with kagiya_app(iam_settings) as app:
        app.config["TESTING"] = False
        client = app.test_client()
        with sqlite_pragma(app.extensions["kagiya.store"], "full"):  # no page may be added to the database
            statuses = [put_policy(client, f"ns-{i}", "x" * 200).status_code for i in range(60)]
            assert 500 not in statuses and 503 in statuses, statuses
            assert_unavailable(put_policy(client, "one-more", "y" * 200))
            assert client.get("/readyz").status_code == 503
        assert wait_ready(client).status_code == 200
        assert put_policy(client, "after", "z").status_code == 200
