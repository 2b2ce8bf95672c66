"""The console's encrypt page: the same encrypt path as `POST /v1/secrets/encrypt`; plaintext never kept or shown."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import bearer
from tests.console.conftest import sign_in
from tests.support.apps import kagiya_app

VALUE = "Pl41ntext-Value-9f3b"


@pytest.fixture
def enc_app(make_settings: Any, token_file: Path, tmp_path: Path) -> Iterator[Any]:
    from kagiya.secrets.keys import local

    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "secrets": {"keyring": str(tmp_path / "keyring"), "decrypt_groups": ["team-a"],
                                          "default_recipients": ["local:svc"]}})
    local.generate(settings.section("secrets"), "svc")
    with kagiya_app(settings) as app:
        yield app


def test_encrypted_manifest_decrypts_to_the_pasted_values(enc_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = enc_app.test_client()
    csrf = sign_in(client, "dev-token-0002")
    resp = client.post("/ui/encrypt", data={"csrf_token": csrf, "name": "db", "namespace": "prod",
                                            "values": f"password={VALUE}\nuser=app\n", "recipient": "local:svc"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "# kagiya:local:svc:" in html
    assert VALUE not in html and base64.b64encode(VALUE.encode()).decode() not in html
    manifest = html.split('readonly aria-labelledby="result-title">')[1].split("</textarea>")[0]
    import html as html_lib

    plain = client.post("/v1/secrets/decrypt", json={"manifest": html_lib.unescape(manifest)},
                        headers=bearer("approver-token-0003")).get_json()["manifest"]
    data = yaml.safe_load(plain)["data"]
    assert base64.b64decode(data["password"]).decode() == VALUE and base64.b64decode(data["user"]) == b"app"
    events = client.get("/v1/audit", query_string={"action": "secrets.encrypt"},
                        headers=bearer("admin-token-0001")).get_json()["items"]
    assert [(e["actor"], e["target"], e["details"]["key_ids"]) for e in events] == [("bob", "prod/db", ["local:svc"])]
    store = enc_app.extensions["kagiya.store"]
    with store.connect() as conn:
        rows = [str(tuple(r)) for t in ("audit_events", "console_sessions")
                for r in conn.exec_driver_sql(f"SELECT * FROM {t}")]  # noqa: S608 - fixed table names
    assert VALUE not in "\n".join(rows) and VALUE not in caplog.text


def test_a_bad_line_is_named_but_never_quoted(enc_app: Any) -> None:
    client = enc_app.test_client()
    csrf = sign_in(client, "dev-token-0002")
    resp = client.post("/ui/encrypt", data={"csrf_token": csrf, "name": "db", "namespace": "prod",
                                            "values": f"ok=1\n{VALUE}\n", "recipient": "local:svc"})
    assert resp.status_code == 400
    assert "line 2 is not KEY=value" in resp.get_data(as_text=True) and VALUE not in resp.get_data(as_text=True)


def test_unknown_recipients_are_refused_by_the_api_rules(enc_app: Any) -> None:
    client = enc_app.test_client()
    csrf = sign_in(client, "dev-token-0002")
    resp = client.post("/ui/encrypt", data={"csrf_token": csrf, "name": "db", "namespace": "prod",
                                            "values": "a=b", "extra": "local:nobody"})
    assert resp.status_code == 400
    assert client.post("/ui/encrypt", data={"name": "db", "namespace": "prod", "values": "a=b",
                                            "recipient": "local:svc"}).status_code == 403  # no CSRF token


def test_the_audit_event_gives_no_offline_guessing_oracle_for_a_weak_value(enc_app: Any) -> None:
    """The encrypted input is plaintext: a bare SHA-256 of it in the audit log would let any log reader confirm a
    guessed value (the manifest's layout is known from the event's target). Only a keyed fingerprint is kept."""
    import hashlib

    from kagiya.console.encrypt import parse_values, secret_manifest

    client = enc_app.test_client()
    csrf = sign_in(client, "dev-token-0002")
    resp = client.post("/ui/encrypt", data={"csrf_token": csrf, "name": "db", "namespace": "prod",
                                            "values": "password=hunter2", "recipient": "local:svc"})
    assert resp.status_code == 200
    guess = secret_manifest("db", "prod", parse_values("password=hunter2")).encode()
    [event] = client.get("/v1/audit", query_string={"action": "secrets.encrypt"},
                         headers=bearer("admin-token-0001")).get_json()["items"]
    assert hashlib.sha256(guess).hexdigest() not in str(event)
    assert event["details"]["input_fingerprint"].startswith("hmac:")
