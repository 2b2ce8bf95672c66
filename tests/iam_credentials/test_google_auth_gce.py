"""google-auth as the pod, through kagiya's GCE metadata endpoint (GCE_METADATA_HOST), minted by the IAM
Credentials stand-in. google-auth reads GCE_METADATA_HOST at import time, so the pod runs in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.iam_credentials.conftest import GSA_READER, source_session

POD_SCRIPT = r"""
import json
import google.auth.transport.requests
from google.auth import compute_engine
from google.auth.compute_engine import _metadata

request = google.auth.transport.requests.Request()
creds = compute_engine.Credentials()
creds.refresh(request)
ident = compute_engine.IDTokenCredentials(request, "https://service.example", use_metadata_identity_endpoint=True)
ident.refresh(request)
print(json.dumps({"token": creds.token, "email": creds.service_account_email, "valid": creds.valid,
                  "id_token": ident.token, "project": _metadata.get_project_id(request)}))
"""


def run_pod(world: Any) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCE_", "GOOGLE_"))}
    env.update(GCE_METADATA_HOST=world.url.removeprefix("http://"), GCE_METADATA_IP=world.url.removeprefix("http://"),
               NO_GCE_CHECK="true")
    out = subprocess.run([sys.executable, "-W", "error", "-c", POD_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_google_auth_refresh_gets_a_token_via_gce(world: Any) -> None:
    world.add_pod("team-a", "gweb-1", "gweb", "127.0.0.1")
    world.wait_prefetched("uid-team-a-gweb-1")
    result = run_pod(world)
    assert result["valid"] and result["token"].startswith("ya29.standin-")
    assert result["email"] == GSA_READER
    assert result["project"] == "proj-1"
    assert result["id_token"].count(".") == 2
    # Served from the prefetched entry: one generateAccessToken for the pod, however often it asked.
    assert world.gcp.calls["generateAccessToken"] == 1


def test_metadata_flavor_rules_and_other_accounts(world: Any) -> None:
    world.add_pod("team-a", "gweb-2", "gweb", "127.0.0.2")
    world.add_pod("team-a", "web-2", "web", "127.0.0.3")  # bound to an AWS role only
    s = source_session("127.0.0.2")
    base = f"{world.url}/computeMetadata/v1/instance/service-accounts"
    r = s.get(f"{base}/default/email")
    assert r.status_code == 403 and r.headers["Metadata-Flavor"] == "Google"
    flavor = {"Metadata-Flavor": "Google"}
    r = s.get(f"{base}/default/email", headers=flavor)
    assert r.status_code == 200 and r.text == GSA_READER and r.headers["Metadata-Flavor"] == "Google"
    assert s.get(f"{base}/default/email", headers={**flavor, "X-Forwarded-For": "1.2.3.4"}).status_code == 403
    assert s.get(f"{base}/other@proj-1.iam.gserviceaccount.com/token", headers=flavor).status_code == 404
    r = s.get(f"{base}/default/", params={"recursive": "true"}, headers=flavor)
    assert r.headers["Content-Type"].startswith("application/json") and r.json()["email"] == GSA_READER
    r = s.get(f"{base}/default/token", params={"scopes": "scope-x,scope-y"}, headers=flavor)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer" and 0 < r.json()["expires_in"] <= 3600
    assert world.gcp.requests[-1]["body"]["scope"] == ["scope-x", "scope-y"]
    assert s.get(f"{base}/default/scopes", headers=flavor).text.startswith("https://www.googleapis.com/auth/")
    assert s.get(f"{world.url}/computeMetadata/v1/instance/hostname", headers=flavor).status_code == 404
    # A pod with no Google binding gets 404, never another pod's account.
    r = source_session("127.0.0.3").get(f"{base}/default/token", headers=flavor)
    assert r.status_code == 404 and GSA_READER not in r.text


def test_issuer_outage_serves_cached_tokens(world: Any) -> None:
    world.add_pod("team-a", "gweb-3", "gweb", "127.0.0.4")
    world.wait_prefetched("uid-team-a-gweb-3")
    world.gcp.down = True
    s = source_session("127.0.0.4")
    r = s.get(f"{world.url}/computeMetadata/v1/instance/service-accounts/default/token",
              headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 200
    # New scopes need a new token: with the issuer down that is a clear 503, not a 500.
    r = s.get(f"{world.url}/computeMetadata/v1/instance/service-accounts/default/token",
              params={"scopes": "new-scope"}, headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 503 and r.headers["Metadata-Flavor"] == "Google"
    assert "IAM Credentials" in r.json()["message"]
    # Time passes (the cache's clock moves) with the issuer still down: served until near expiry, then a clear 503.
    import time

    cache = world.svc.cache
    expiry = max(e.creds.expiry.timestamp() for e in cache._entries.values() if e.creds is not None)
    cache.clock = lambda: expiry - 600.0
    cache.refresh_due()  # the refresh fails; the cached token stays
    r = s.get(f"{world.url}/computeMetadata/v1/instance/service-accounts/default/token",
              headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 200 and 590 <= r.json()["expires_in"] <= 600
    cache.clock = lambda: expiry - 100.0  # under min_remaining_seconds (120)
    r = s.get(f"{world.url}/computeMetadata/v1/instance/service-accounts/default/token",
              headers={"Metadata-Flavor": "Google"})
    assert r.status_code == 503 and r.json()["kind"] == "Status"
    assert "expire in 100 s" in r.json()["message"]
    cache.clock = time.time
