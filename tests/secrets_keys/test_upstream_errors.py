"""Upstream outages are retryable, missing keys or rights are not: `KeyUpstreamUnavailable` (HTTP 503) for a KMS or
gpg that timed out, is unreachable or failed on its side; plain `KeyUnavailable` (HTTP 400) for "not held / no
permission". And `POST /v1/secrets/decrypt` audits the names of the values it revealed, never a value."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kagiya.secrets import ops
from kagiya.secrets.keys.base import KeyUnavailable, KeyUpstreamUnavailable, open_key
from kagiya.web import settings_of
from tests.conftest import bearer
from tests.secrets_keys.conftest import GCP_KEY
from tests.support.apps import kagiya_app
from tests.support.gpg import TEST_KEY_A_FPR
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

PLAIN = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\ndata:\n  user: YWRtaW4=\n"
         "stringData:\n  password: s3cr3t-Value-42\n")
MISSING_GCP = "projects/kagiya-test/locations/global/keyRings/ring/cryptoKeys/missing"


def test_gcp_outage_is_upstream_but_missing_key_is_not(secrets_settings: Any, cloudkms: Any) -> None:
    settings = secrets_settings(gcp_kms_endpoint=cloudkms.url, kms_timeout_seconds=2.0)
    cloudkms.fail_status = 503
    with pytest.raises(KeyUpstreamUnavailable, match="Cloud KMS is unavailable"):
        open_key(f"gcp:{GCP_KEY}", settings).wrap(os.urandom(32))
    cloudkms.reset()
    with pytest.raises(KeyUnavailable, match="does not exist") as info:
        open_key(f"gcp:{MISSING_GCP}", settings).wrap(os.urandom(32))
    assert not isinstance(info.value, KeyUpstreamUnavailable) and info.value.http_status == 400
    down = secrets_settings(gcp_kms_endpoint=f"http://127.0.0.1:{free_port()}", kms_timeout_seconds=2.0)
    with pytest.raises(KeyUpstreamUnavailable, match="unreachable"):
        open_key(f"gcp:{GCP_KEY}", down).wrap(os.urandom(32))


def test_aws_unreachable_is_upstream_unknown_key_is_not(secrets_settings: Any, aws_keys: dict[str, str],
                                                        moto_server: Any) -> None:
    down = secrets_settings(aws_kms_endpoint=f"http://127.0.0.1:{free_port()}", kms_timeout_seconds=2.0)
    with pytest.raises(KeyUpstreamUnavailable, match="unreachable"):
        open_key(f"aws:{aws_keys['key']}", down).wrap(os.urandom(32))
    up = secrets_settings(aws_kms_endpoint=moto_server.url, kms_timeout_seconds=2.0)
    missing = aws_keys["key"].rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyUnavailable) as info:
        open_key(f"aws:{missing}", up).wrap(os.urandom(32))
    assert not isinstance(info.value, KeyUpstreamUnavailable)


def test_hung_gpg_is_upstream_missing_secret_key_is_not(secrets_settings: Any, gpg_home: Any,
                                                        tmp_path: Path) -> None:
    hung = tmp_path / "gpg"
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(hung.stat().st_mode | stat.S_IEXEC)
    slow = secrets_settings(gnupg_home=str(gpg_home.path), gpg_binary=str(hung), kms_timeout_seconds=0.5)
    with pytest.raises(KeyUpstreamUnavailable, match="did not finish within"):
        open_key(f"pgp:{TEST_KEY_A_FPR}", slow).wrap(os.urandom(32))
    missing = secrets_settings(gnupg_home=str(gpg_home.path), gpg_binary=str(tmp_path / "no-gpg"))
    with pytest.raises(KeyUnavailable) as info:
        open_key(f"pgp:{TEST_KEY_A_FPR}", missing).wrap(os.urandom(32))
    assert not isinstance(info.value, KeyUpstreamUnavailable)


@pytest.fixture
def api(make_settings: Any, token_file: Path, cloudkms: Any) -> Any:
    settings = make_settings({
        "authn": {"token_file": str(token_file)},
        "secrets": {"gcp_kms_endpoint": cloudkms.url, "kms_timeout_seconds": 2.0, "decrypt_groups": ["team-a"]},
    })
    with kagiya_app(settings) as app:
        yield app


def _audit(app: Any) -> list[dict[str, Any]]:
    from kagiya import audit

    items, _ = audit.query(app.extensions["kagiya.store"], audit.AuditQuery(action="secrets.decrypt"))
    return items


def test_http_decrypt_audits_key_names_and_answers_503_on_outage(api: Any, cloudkms: Any) -> None:
    sset = settings_of(api).section("secrets")
    sealed = ops.encrypt(ops.Source(PLAIN, None), sset, [f"gcp:{GCP_KEY}"])
    client = api.test_client()
    headers = {**bearer("approver-token-0003"), "Content-Type": "application/yaml"}
    ok = client.post("/v1/secrets/decrypt", data=sealed, headers=headers)
    assert ok.status_code == 200 and ok.text == PLAIN
    event = _audit(api)[-1]
    assert event["outcome"] == "success"
    assert event["details"]["keys"] == ["prod/db:data.user", "prod/db:stringData.password"]
    assert "s3cr3t" not in json.dumps(event) and "YWRtaW4=" not in json.dumps(event)

    cloudkms.fail_status = 503
    down = client.post("/v1/secrets/decrypt", data=sealed, headers=headers)
    assert down.status_code == 503, down.text
    assert "Cloud KMS is unavailable" in down.json["message"]
    assert _audit(api)[-1]["details"]["error"] == "KeyUpstreamUnavailable"
    enc = client.post("/v1/secrets/encrypt", data=PLAIN, query_string={"recipient": f"gcp:{GCP_KEY}"},
                      headers=headers)
    assert enc.status_code == 503
    cloudkms.reset()

    denied = client.post("/v1/secrets/decrypt", data=sealed.replace(GCP_KEY, MISSING_GCP), headers=headers)
    assert denied.status_code == 400


@pytest.mark.parametrize("scheme, setting, key", [
    ("gcp", "gcp_kms_endpoint", GCP_KEY),
    ("aws", "aws_kms_endpoint", "arn:aws:kms:eu-west-1:123456789012:key/abc"),
])
@pytest.mark.parametrize("endpoint", ["http://kms.example.com", "ftp://127.0.0.1"])
def test_both_kms_backends_share_one_endpoint_rule(secrets_settings: Any, scheme: str, setting: str, key: str,
                                                   endpoint: str) -> None:
    """One helper (keys.base.check_endpoint): the same refusal, naming each backend's own setting."""
    with pytest.raises(KeyUnavailable) as info:
        open_key(f"{scheme}:{key}", secrets_settings(**{setting: endpoint}))
    assert info.value.message == (f"secrets.{setting} {endpoint!r} must be an https:// URL "
                                  "(http:// only for 127.0.0.1/localhost stand-ins)")
