"""Audit events: append-only rows and JSON log lines that never carry a secret value or a raw token."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagiya import audit
from tests.conftest import bearer

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImF1ZCI6Imt1YmUifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM = "-----BEGIN " + "PRIVATE KEY-----\nMIIB...\n-----END " + "PRIVATE KEY-----"  # a fake, split for scanners


def all_rows(app: Any) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    store = app.extensions["kagiya.store"]
    assert audit.flush(store)  # queued events reach the store in the background
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(audit.audit_events)).mappings()]


@pytest.mark.parametrize("secret", [JWT, GITHUB_TOKEN, AWS_SECRET, PEM, "AKIA" + "IOSFODNN7EXAMPLE"])
def test_secret_shaped_values_never_reach_row_or_log(app: Any, caplog: Any, secret: str) -> None:
    caplog.set_level(logging.INFO, logger="kagiya.audit")
    store = app.extensions["kagiya.store"]
    audit.record(
        store, actor=f"user {secret}", action="test.leak", target=f"t/{secret}", outcome="success",
        details={"note": f"value is {secret}", "nested": {"list": [secret]}},
    )
    stored = json.dumps(all_rows(app), default=str)
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__.get("audit", {})) for r in caplog.records)
    assert secret not in stored
    assert secret not in logged
    assert "[redacted hmac:" in stored


@pytest.mark.parametrize("key", ["token", "password", "secretAccessKey", "session_token", "value", "plaintext"])
def test_values_under_secret_keys_are_redacted_whatever_they_look_like(app: Any, key: str) -> None:
    store = app.extensions["kagiya.store"]
    audit.record(store, actor="alice", action="test.keys", target="x", outcome="success", details={key: "hunter2"})
    row = all_rows(app)[-1]
    assert "hunter2" not in row["details"]
    assert json.loads(row["details"])[key] == f"[redacted {audit.fingerprint('hunter2')}]"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=80))
def test_any_token_passed_under_token_key_is_never_stored(app: Any, token: str) -> None:
    event = audit.record(
        app.extensions["kagiya.store"], actor="alice", action="test.tokens", target="x", outcome="failure",
        details={"token": token, "token_fingerprint": audit.fingerprint(token)},
    )
    assert event.details["token"] == f"[redacted {audit.fingerprint(token)}]"
    assert event.details["token_fingerprint"] == audit.fingerprint(token)


def test_fingerprint_is_short_and_stable() -> None:
    assert audit.fingerprint("abc") == audit.fingerprint(b"abc")
    assert audit.fingerprint("abc").startswith("hmac:") and len(audit.fingerprint("abc")) == 21


def test_rejects_unknown_action_and_outcome(app: Any) -> None:
    store = app.extensions["kagiya.store"]
    with pytest.raises(ValueError):
        audit.record(store, actor="a", action="Bad Action", target="t", outcome="success")
    with pytest.raises(ValueError):
        audit.record(store, actor="a", action="ok", target="t", outcome="maybe")


def test_api_filters_and_pages(app: Any, client: Any) -> None:
    store = app.extensions["kagiya.store"]
    for i in range(5):
        audit.record(store, actor="alice", action="iam.binding.approve", target=f"b{i}", outcome="approved")
    audit.record(store, actor="bob", action="secrets.decrypt", target="ns/s", outcome="success")
    admin = bearer("admin-token-0001")

    page1 = client.get("/v1/audit?action=iam.binding&limit=2", headers=admin).get_json()
    assert [e["target"] for e in page1["items"]] == ["b0", "b1"]
    cont = page1["metadata"]["continue"]
    page2 = client.get(f"/v1/audit?action=iam.binding&limit=2&continue={cont}", headers=admin).get_json()
    assert [e["target"] for e in page2["items"]] == ["b2", "b3"]
    page3 = client.get(
        f"/v1/audit?action=iam.binding&limit=2&continue={page2['metadata']['continue']}", headers=admin
    ).get_json()
    assert [e["target"] for e in page3["items"]] == ["b4"] and "continue" not in page3["metadata"]

    bobs = client.get("/v1/audit?actor=bob", headers=admin).get_json()["items"]
    assert [(e["action"], e["outcome"]) for e in bobs] == [("secrets.decrypt", "success")]
    future = client.get("/v1/audit?since=2999-01-01T00:00:00Z", headers=admin).get_json()["items"]
    assert future == []
    past = client.get("/v1/audit?until=2000-01-01T00:00:00Z", headers=admin).get_json()["items"]
    assert past == []


def test_fingerprints_are_keyed_per_deployment_and_shared_by_replicas(make_settings: Any, tmp_path: Any) -> None:
    import hashlib

    from kagiya.web import create_app

    guessable = "YWxpY2U6aHVudGVyMg=="  # base64("alice:hunter2"), an LDAP webhook token
    first = create_app(make_settings())
    fp = audit.fingerprint(guessable)
    assert hashlib.sha256(guessable.encode()).hexdigest()[:12] not in fp, "a bare hash would allow offline guessing"
    second = create_app(make_settings())  # another replica on the same store
    assert audit.fingerprint(guessable) == fp
    other = create_app(make_settings({"data_dir": str(tmp_path / "other-deployment")}))
    assert audit.fingerprint(guessable) != fp
    for app in (first, second, other):
        app.extensions["kagiya.store"].dispose()


@pytest.mark.parametrize(
    "details",
    [
        {"accessToken": "opaque-1"}, {"idToken": "opaque-2"}, {"refreshToken": "opaque-3"},
        {"clientSecret": "opaque-4"}, {"apiKey": "opaque-5"}, {"api_key": "opaque-6"}, {"passphrase": "opaque-7"},
        {"password": 123456}, {"credentials": {"a": "opaque-8", "b": ["opaque-9"]}},
        {"note": "0123456789abcdef0123456789abcdef01234567"},  # a 40-char hex token
        {"note": "bootstrap abcdef.0123456789abcdef"},
        {"note": "Authorization: Bearer 0123abcdEFGH"},
        {"note": "x" + "Ab9_" * 8},  # token_urlsafe-like run of 32+
        {"ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2: None},
    ],
)
def test_secret_values_in_any_shape_are_redacted(app: Any, details: dict[str, Any]) -> None:
    event = audit.record(app.extensions["kagiya.store"], actor="a", action="test.shapes", target="t",
                         outcome="success", details=details)
    stored = json.dumps(event.as_dict())
    for leaf in _leaves(details):
        assert str(leaf) not in stored, leaf


def test_derived_safe_fields_stay_readable(app: Any) -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    details = {"input_sha256": digest, "key_ids": ["gcp:projects/p/locations/l/keyRings/r/cryptoKeys/k"],
               "secret_name": "db", "value_count": 3, "used_key": "local:default", "keys": ["password"],
               "token_fingerprint": audit.fingerprint("t")}
    event = audit.record(app.extensions["kagiya.store"], actor="a", action="test.safe", target="t",
                         outcome="success", details=details)
    assert dict(event.details) == details


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in ([k] if k.startswith("ghp_") else []) + _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value] if not isinstance(value, str) or len(value) > 6 else []


def _review_audit(app: Any, caplog: Any, request_id: str | None) -> tuple[str, dict[str, Any], str]:
    """One review through the app; the request id as answered, as stored and as printed in the audit log line."""
    caplog.set_level(logging.INFO, logger="kagiya.audit")
    caplog.clear()
    headers = {"X-Request-Id": request_id} if request_id else {}
    resp = app.test_client().post("/authn/tokenreviews", headers=headers, json={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "dev-token-0002"}})
    assert resp.status_code == 200
    logged = [r.__dict__["audit"] for r in caplog.records if "audit" in r.__dict__][-1]
    return resp.headers["X-Request-Id"], all_rows(app)[-1], logged["requestId"]


@pytest.mark.parametrize("offered", [None, "0f5e7d1c-9a4b-4c3e-8f2a-6b1d0e9c8a7f", "3f" * 16])
def test_request_ids_stay_readable_in_rows_and_log_lines(app: Any, caplog: Any, offered: str | None) -> None:
    answered, row, logged = _review_audit(app, caplog, offered)
    assert len(answered) >= 32 and (offered is None or answered == offered)  # kagiya's own ids are 32 hex digits
    assert row["request_id"] == answered
    assert logged == answered


@pytest.mark.parametrize("offered", [GITHUB_TOKEN, "glpat-" + "Zx9-Yw8_Vu7-Ts6_Rq5P"])
def test_a_credential_sent_as_request_id_is_still_redacted(app: Any, caplog: Any, offered: str) -> None:
    _, row, logged = _review_audit(app, caplog, offered)
    assert offered not in row["request_id"] and offered not in logged
    assert row["request_id"] == logged == f"[redacted {audit.fingerprint(offered)}]"
