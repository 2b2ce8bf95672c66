"""`POST /v1/secrets/encrypt` and `/decrypt`: bearer auth, decrypt groups, audit without values, 400 and 413."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bearer
from tests.support.apps import kagiya_app

PLAIN = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\nstringData:\n"
         "  password: s3cr3t-Value-42\n")


@pytest.fixture
def api(make_settings: Any, token_file: Path, tmp_path: Path) -> Any:
    from kagiya.secrets.keys import local

    settings = make_settings({
        "authn": {"token_file": str(token_file)},
        "secrets": {"keyring": str(tmp_path / "svc-keyring"), "decrypt_groups": ["team-a"],
                    "default_recipients": ["local:svc"], "max_file_bytes": 4096},
    })
    local.generate(settings.section("secrets"), "svc")
    with kagiya_app(settings) as app:
        yield app


def audit_rows(app: Any) -> list[dict[str, Any]]:
    from kagiya import audit

    items, _ = audit.query(app.extensions["kagiya.store"], audit.AuditQuery(action="secrets"))
    return items


def test_encrypt_then_decrypt_raw_yaml(api: Any) -> None:
    client = api.test_client()
    enc = client.post("/v1/secrets/encrypt", data=PLAIN, headers={**bearer("dev-token-0002"),
                                                                   "Content-Type": "application/yaml"})
    assert enc.status_code == 200, enc.json
    assert "# kagiya:local:svc:" in enc.text and "s3cr3t" not in enc.text
    dec = client.post("/v1/secrets/decrypt", data=enc.text, headers={**bearer("approver-token-0003"),
                                                                      "Content-Type": "application/yaml"})
    assert dec.status_code == 200 and dec.text == PLAIN
    rows = audit_rows(api)
    assert [(r["actor"], r["outcome"]) for r in rows] == [("bob", "success"), ("carol", "success")]
    event = rows[1]
    assert event["target"] == "prod/db"
    assert event["details"]["key_ids"] == ["local:svc"]
    assert event["details"]["input_sha256"] == hashlib.sha256(enc.data).hexdigest()
    assert "s3cr3t" not in json.dumps(rows)


def test_json_wrapper_with_recipients(api: Any, tmp_path: Path) -> None:
    client = api.test_client()
    enc = client.post("/v1/secrets/encrypt", json={"manifest": PLAIN, "recipients": ["local:svc"]},
                      headers=bearer("dev-token-0002"))
    assert enc.status_code == 200
    dec = client.post("/v1/secrets/decrypt", json={"manifest": enc.json["manifest"]}, headers=bearer("dev-token-0002"))
    assert dec.json == {"manifest": PLAIN}


def test_decrypt_needs_bearer_and_group(api: Any) -> None:
    client = api.test_client()
    enc = client.post("/v1/secrets/encrypt", data=PLAIN, headers=bearer("dev-token-0002")).text
    assert client.post("/v1/secrets/decrypt", data=enc).status_code == 401
    denied = client.post("/v1/secrets/decrypt", data=enc, headers=bearer("admin-token-0001"))
    assert denied.status_code == 403 and denied.json["kind"] == "Status"
    assert "decrypt_groups" in denied.json["message"]
    assert [r["outcome"] for r in audit_rows(api)] == ["success", "denied"]
    assert client.post("/v1/secrets/encrypt", data=PLAIN).status_code == 401


@pytest.mark.parametrize(("body", "fragment"), [
    ("kind: Secret\nstringData:\n  a: [1\n", "not a valid YAML"),
    ("kind: Secret\nmetadata: {name: x}\nstringData:\n  n: 3\n", "stringData.n must be a string"),
    ("kind: ConfigMap\ndata:\n  a: b\n", "no kind: Secret"),
    ("kind: Secret\ndata:\n  a: not base64!\n", "not valid base64"),
    ("", "empty"),
])
def test_bad_manifests_are_400(api: Any, body: str, fragment: str) -> None:
    reply = api.test_client().post("/v1/secrets/encrypt", data=body, headers=bearer("dev-token-0002"))
    assert reply.status_code == 400, reply.json
    assert reply.json["kind"] == "Status" and fragment in reply.json["message"]


def test_tampered_or_encrypted_inputs_are_400_and_audited(api: Any) -> None:
    client = api.test_client()
    enc = client.post("/v1/secrets/encrypt", data=PLAIN, headers=bearer("dev-token-0002")).text
    again = client.post("/v1/secrets/encrypt", data=enc, headers=bearer("dev-token-0002"))
    assert again.status_code == 400 and "already encrypted" in again.json["message"]
    tampered = enc.replace("  password:", "  passwd:")
    reply = client.post("/v1/secrets/decrypt", data=tampered, headers=bearer("dev-token-0002"))
    assert reply.status_code == 400 and "'passwd'" in reply.json["message"]
    assert audit_rows(api)[-1]["outcome"] == "failure"


def test_oversize_is_413(api: Any) -> None:
    big = PLAIN + "  pad: '" + "x" * 5000 + "'\n"
    reply = api.test_client().post("/v1/secrets/encrypt", data=big, headers=bearer("dev-token-0002"))
    assert reply.status_code == 413 and reply.json["reason"] == "RequestEntityTooLarge"
