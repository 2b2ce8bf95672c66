"""Issuers against real upstreams (moto_server STS, the IAM Credentials stand-in via google-cloud-iam) and the
credential cache's timing rules with an injected clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kagiya.errors import Forbidden, UpstreamUnavailable
from kagiya.iam.credential_settings import CredentialSettings
from kagiya.iam.credentials import CredentialCache
from kagiya.iam.identity import Caller
from kagiya.iam.issuers import issuer_for
from kagiya.iam.issuers.base import Grant, session_name
from tests.iam_credentials.conftest import ACCOUNT, start_moto, sts_client

ROLE = f"arn:aws:iam::{ACCOUNT}:role/app-reader"
POD = Caller("team-a", "web-7d9f-abcde", "uid-1", "web", pod_ip="127.0.0.2")


def aws_settings(endpoint: str, **kw: Any) -> CredentialSettings:
    return CredentialSettings(sts_endpoint=endpoint, issuer_timeout_seconds=2.0, **kw)


@given(st.text(max_size=80), st.text(max_size=300), st.text(max_size=80))
def test_session_name_is_always_valid_for_sts(namespace: str, pod: str, requested: str) -> None:
    import re

    name = session_name(namespace, pod, requested)
    assert 2 <= len(name) <= 64
    assert re.fullmatch(r"[A-Za-z0-9_+=,.@-]+", name)


def test_long_session_names_keep_the_pod_suffix() -> None:
    a = session_name("n" * 50, "deployment-name-that-is-long-" + "x" * 30 + "-abcde")
    b = session_name("n" * 50, "deployment-name-that-is-long-" + "x" * 30 + "-fghij")
    assert a != b and len(a) == 64


def test_aws_issuer_assumes_the_role_with_session_tags(moto: Any) -> None:
    issuer = issuer_for("aws", aws_settings(moto.url))
    creds = issuer.issue(Grant("aws", ROLE, external_id="ext-1"), POD, duration_seconds=900)
    assert creds.fields["AccessKeyId"].startswith("ASIA")
    assert creds.fields["AccountId"] == ACCOUNT
    assert 800 < creds.lifetime <= 905
    who = sts_client(moto.url, dict(creds.fields)).get_caller_identity()
    assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/app-reader/team-a.web-7d9f-abcde"
    assert "SecretAccessKey" not in repr(creds) and creds.fields["SecretAccessKey"] not in repr(creds)


def test_aws_issuer_down_is_upstream_unavailable(tmp_path: Any) -> None:
    from tests.support.servers import free_port

    issuer = issuer_for("aws", aws_settings(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(UpstreamUnavailable):
        issuer.issue(Grant("aws", ROLE), POD, duration_seconds=900)


def test_gcp_issuer_mints_access_and_id_tokens(gcp_standin: Any) -> None:
    settings = CredentialSettings(iam_credentials_endpoint=gcp_standin.url, issuer_timeout_seconds=2.0)
    issuer = issuer_for("gcp", settings)
    grant = Grant("gcp", "reader@proj-1.iam.gserviceaccount.com")
    creds = issuer.issue(grant, POD, duration_seconds=1200, scopes=("scope-a",))
    assert creds.fields["access_token"].startswith("ya29.")
    assert 1100 < creds.lifetime <= 1205
    assert gcp_standin.requests[-1]["body"]["scope"] == ["scope-a"]
    token, expiry = issuer.id_token(grant, "https://example.test", True)  # type: ignore[attr-defined]
    assert token.count(".") == 2 and expiry > dt.datetime.now(dt.UTC)
    with pytest.raises(Forbidden):
        issuer.issue(Grant("gcp", "nobody@proj-1.iam.gserviceaccount.com"), POD, duration_seconds=900)
    gcp_standin.down = True
    with pytest.raises(UpstreamUnavailable):
        issuer.issue(grant, POD, duration_seconds=900)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def test_cache_refreshes_at_two_thirds_or_five_minutes_before(gcp_standin: Any) -> None:
    clock = Clock()
    settings = CredentialSettings(iam_credentials_endpoint=gcp_standin.url, session_seconds=3600)
    cache = CredentialCache(settings, clock=clock)
    grant = Grant("gcp", "reader@proj-1.iam.gserviceaccount.com")
    first = cache.get(POD, grant)
    assert cache.get(POD, grant) is first and gcp_standin.calls["generateAccessToken"] == 1
    # 3600 s lifetime: 2/3 is 2400 s, "5 minutes before" is 3300 s -> refresh at 2400 s.
    clock.now += 2399
    assert cache.refresh_due() == 0
    clock.now += 2
    assert cache.refresh_due() == 1
    assert cache.get(POD, grant) is not first and gcp_standin.calls["generateAccessToken"] == 2


def test_short_lifetimes_refresh_five_minutes_before(gcp_standin: Any) -> None:
    clock = Clock()
    # 900 s session: 2/3 = 600 s, 5 min before = 600 s; with 1200 s: 800 vs 900 -> 800.
    settings = CredentialSettings(iam_credentials_endpoint=gcp_standin.url, session_seconds=43200)
    cache = CredentialCache(settings, clock=clock)
    cache.get(POD, Grant("gcp", "reader@proj-1.iam.gserviceaccount.com"))
    entry = next(iter(cache._entries.values()))
    assert entry.refresh_at == pytest.approx(clock.now + 43200 * 2 / 3, abs=2)
    settings2 = CredentialSettings(iam_credentials_endpoint=gcp_standin.url, session_seconds=900,
                                   refresh_before_seconds=500)
    cache2 = CredentialCache(settings2, clock=clock)
    cache2.get(POD, Grant("gcp", "reader@proj-1.iam.gserviceaccount.com"))
    entry2 = next(iter(cache2._entries.values()))
    assert entry2.refresh_at == pytest.approx(clock.now + 400, abs=2)  # 900-500 < 600


def test_issuer_stopped_serves_cache_until_near_expiry_then_clear_503(tmp_path: Any) -> None:
    """A real moto_server is stopped: cached STS credentials keep flowing, then a 503 that says why."""
    server = start_moto(tmp_path)
    clock = Clock()
    try:
        cache = CredentialCache(aws_settings(server.url, session_seconds=900, min_remaining_seconds=120), clock=clock)
        grant = Grant("aws", ROLE)
        creds = cache.get(POD, grant)
    finally:
        server.stop()
    clock.now += 650  # past the refresh point (600 s): the refresh fails, the cached value stays
    assert cache.refresh_due() == 0
    assert cache.get(POD, grant) is creds
    assert cache.stats["stale"] >= 1
    clock.now = creds.expiry.timestamp() - 119  # under min_remaining: never hand these out
    with pytest.raises(UpstreamUnavailable) as info:
        cache.get(POD, grant)
    assert info.value.http_status == 503
    assert "unavailable" in info.value.message and "expire in" in info.value.message


def test_revoked_grant_is_dropped_at_refresh(gcp_standin: Any) -> None:
    clock = Clock()
    current: dict[str, Grant | None] = {"grant": Grant("gcp", "reader@proj-1.iam.gserviceaccount.com")}
    cache = CredentialCache(
        CredentialSettings(iam_credentials_endpoint=gcp_standin.url),
        grant_lookup=lambda caller, cloud: current["grant"], clock=clock,
    )
    cache.get(POD, current["grant"])  # type: ignore[arg-type]
    current["grant"] = None
    clock.now += 3000
    assert cache.refresh_due() == 0 and len(cache) == 0
    assert gcp_standin.calls["generateAccessToken"] == 1


def test_prefetch_then_drop_pod(gcp_standin: Any) -> None:
    import time

    cache = CredentialCache(CredentialSettings(iam_credentials_endpoint=gcp_standin.url))
    grant = Grant("gcp", "reader@proj-1.iam.gserviceaccount.com")
    cache.prefetch(POD, grant)
    deadline = time.monotonic() + 10
    while not cache.has(POD.pod_uid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.has(POD.pod_uid)
    assert cache.refresh_due() == 0  # a fresh prefetch is not minted again by the refresher
    cache.get(POD, grant)
    assert cache.stats["hit"] == 1 and cache.stats["miss"] == 0
    assert gcp_standin.calls["generateAccessToken"] == 1
    assert cache.drop_pod(POD.pod_uid) == 1 and not cache.has(POD.pod_uid)
    cache.stop()


def test_anonymous_google_credentials_only_for_a_loopback_http_endpoint() -> None:
    from kagiya.errors import ConfigError

    issuer = issuer_for("gcp", CredentialSettings(iam_credentials_endpoint="http://10.1.2.3:8080"))
    with pytest.raises(ConfigError, match="loopback"):
        issuer.issue(Grant("gcp", "reader@proj-1.iam.gserviceaccount.com"), POD, duration_seconds=900)
    with pytest.raises(ConfigError, match="no credential issuer"):
        issuer_for("azure", CredentialSettings())


def test_agent_help_imports_no_heavy_clients() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom kagiya.cli import main\nmain(['agent', '--help'])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'google', 'kubernetes', 'flask', "
            "'requests', 'werkzeug'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_entries_of_pods_that_vanished_are_not_refreshed(gcp_standin: Any) -> None:
    clock = Clock()
    alive = {POD.pod_uid: True}
    cache = CredentialCache(CredentialSettings(iam_credentials_endpoint=gcp_standin.url),
                            pod_alive=lambda uid: alive.get(uid, False), clock=clock)
    cache.get(POD, Grant("gcp", "reader@proj-1.iam.gserviceaccount.com"))
    alive[POD.pod_uid] = False  # its delete event was missed
    clock.now += 3000
    assert cache.refresh_due() == 0 and len(cache) == 0
    assert gcp_standin.calls["generateAccessToken"] == 1
