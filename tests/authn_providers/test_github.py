"""GitHub provider against the GitHub REST stand-in: identity, org membership, teams, paging, errors, timeouts."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagiya.authn.providers import build_provider
from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.providers.github import GitHubProvider
from kagiya.errors import ConfigError, UpstreamUnavailable
from tests.authn_providers.conftest import (
    GITHUB_TOKEN_ALICE,
    GITHUB_TOKEN_BOB,
    GITHUB_TOKEN_NOSCOPE,
    GITHUB_TOKEN_PAT,
)
from tests.standins.github import GitHubStandIn


def provider(gh: GitHubStandIn, org: str = "acme", **options: Any) -> GitHubProvider:
    p = build_provider("github", org, {"base_url": gh.base_url, "timeout": 2, **options})
    assert isinstance(p, GitHubProvider)
    return p


def test_active_member_gets_login_id_and_org_qualified_teams(github: GitHubStandIn) -> None:
    user = provider(github).authenticate(GITHUB_TOKEN_ALICE)
    assert user == User(username="alice", uid="101", groups=("acme:platform", "acme:sre"))
    # The other organization's team is not a group here.
    assert "other-org:admins" not in user.groups


def test_token_sent_as_bearer_only_to_the_configured_host(github: GitHubStandIn) -> None:
    provider(github).authenticate(GITHUB_TOKEN_ALICE)
    assert set(github.seen_auth) == {f"Bearer {GITHUB_TOKEN_ALICE}"}


def test_pending_invitation_is_refused(github: GitHubStandIn) -> None:
    result = provider(github).authenticate(GITHUB_TOKEN_BOB)
    assert result == Rejected("membership of the GitHub organization acme is not active")


def test_non_member_is_refused(github: GitHubStandIn) -> None:
    assert provider(github).authenticate(GITHUB_TOKEN_PAT) == Rejected("not a member of the GitHub organization acme")
    # ...and the same token is good for the org it belongs to.
    assert provider(github, "other-org").authenticate(GITHUB_TOKEN_PAT) == User("pat", "103", ("other-org:admins",))


@pytest.mark.parametrize("token", ["ghp_unknown", "", "a b", "tok\u00e9n", "x" * 5000, "bad\r\nX-Injected: 1"])
def test_invalid_tokens_are_rejected(github: GitHubStandIn, token: str) -> None:
    result = provider(github).authenticate(token)
    assert isinstance(result, Rejected)
    assert result.reason in ("invalid or expired GitHub token", "invalid GitHub token")


def test_missing_read_org_scope_is_a_clear_rejection(github: GitHubStandIn) -> None:
    assert provider(github).authenticate(GITHUB_TOKEN_NOSCOPE) == Rejected("the GitHub token lacks the read:org scope")


def test_saml_sso_unauthorised_token_is_told_to_authorise(github: GitHubStandIn) -> None:
    github.state.sso_required[GITHUB_TOKEN_ALICE] = {"acme"}
    result = provider(github).authenticate(GITHUB_TOKEN_ALICE)
    assert result == Rejected("authorize the token for SAML SSO of the GitHub organization acme")
    assert "github.com" not in result.reason  # GitHub's URL and words are not copied into the reply


def test_teams_are_read_across_every_page(github: GitHubStandIn) -> None:
    slugs = [f"team-{i:03d}" for i in range(250)]
    for slug in slugs:
        github.add_team("acme", slug, "alice")
    user = provider(github).authenticate(GITHUB_TOKEN_ALICE)
    assert isinstance(user, User)
    assert set(user.groups) == {f"acme:{s}" for s in [*slugs, "platform", "sre"]}
    assert github.hits["/user/teams"] == 3  # 253 teams at 100 per page


def test_more_pages_than_allowed_is_unavailable_not_a_partial_list(github: GitHubStandIn) -> None:
    for i in range(250):
        github.add_team("acme", f"t{i}", "alice")
    with pytest.raises(UpstreamUnavailable, match="more than 2 pages"):
        provider(github, max_pages=2).authenticate(GITHUB_TOKEN_ALICE)


def test_teams_can_be_switched_off(github: GitHubStandIn) -> None:
    assert provider(github, teams=False).authenticate(GITHUB_TOKEN_ALICE) == User("alice", "101", ())
    assert github.hits["/user/teams"] == 0


def test_github_enterprise_base_url() -> None:
    with GitHubStandIn(prefix="/api/v3") as ghe:
        ghe.add_user("alice", 7, "ghe-token")
        ghe.add_member("alice", "corp")
        ghe.add_team("corp", "infra", "alice")
        for i in range(120):  # paging links keep the /api/v3 prefix
            ghe.add_team("corp", f"x{i}", "alice")
        user = provider(ghe, "corp").authenticate("ghe-token")
        assert isinstance(user, User) and user.username == "alice" and "corp:infra" in user.groups
        assert len(user.groups) == 121


@pytest.mark.parametrize("knob", ["rate_limited", "secondary_limited"])
def test_rate_limit_is_transient(github: GitHubStandIn, knob: str) -> None:
    setattr(github, knob, True)
    with pytest.raises(UpstreamUnavailable, match="rate limit"):
        provider(github).authenticate(GITHUB_TOKEN_ALICE)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(github: GitHubStandIn, status: int) -> None:
    github.fail_status = status
    with pytest.raises(UpstreamUnavailable, match="GitHub is unavailable"):
        provider(github).authenticate(GITHUB_TOKEN_ALICE)


def test_stopped_upstream_is_unavailable_quickly(github: GitHubStandIn) -> None:
    p = provider(github)
    assert isinstance(p.authenticate(GITHUB_TOKEN_ALICE), User)  # warm pool, then the server goes away
    github.stop()
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        p.authenticate(GITHUB_TOKEN_ALICE)
    assert time.monotonic() - started < 2


def test_slow_upstream_is_unavailable_within_the_timeout(github: GitHubStandIn) -> None:
    github.delay = 0.4  # each call is slow; three calls together exceed the 1 s budget
    p = provider(github, timeout=1)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
        p.authenticate(GITHUB_TOKEN_ALICE)
    assert time.monotonic() - started < 1.5


def test_hung_upstream_is_unavailable_within_the_timeout() -> None:
    """A listener that accepts and never answers (a wedged load balancer)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        p = build_provider("github", "acme", {"base_url": f"http://127.0.0.1:{sock.getsockname()[1]}", "timeout": 0.5})
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
            p.authenticate(GITHUB_TOKEN_ALICE)
        assert time.monotonic() - started < 1.2


def test_provider_is_built_once_and_reuses_connections(github: GitHubStandIn) -> None:
    p = provider(github)
    for _ in range(5):
        assert isinstance(p.authenticate(GITHUB_TOKEN_ALICE), User)
    assert github.hits["/user"] == 5


def test_token_never_logged(github: GitHubStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(github)
    p.authenticate(GITHUB_TOKEN_ALICE)
    p.authenticate(GITHUB_TOKEN_BOB)
    p.authenticate(GITHUB_TOKEN_PAT)
    github.fail_status = 502
    with pytest.raises(UpstreamUnavailable):
        p.authenticate(GITHUB_TOKEN_ALICE)
    github.stop()
    with pytest.raises(UpstreamUnavailable):
        p.authenticate(GITHUB_TOKEN_ALICE)
    assert caplog.records, "the provider logs its decisions"
    for token in (GITHUB_TOKEN_ALICE, GITHUB_TOKEN_BOB, GITHUB_TOKEN_PAT):
        assert token not in caplog.text
        assert token[4:20] not in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "ftp://x"}, "authn.providers.github/acme.base_url"),
        ({"timeout": "soon"}, "authn.providers.github/acme.timeout"),
        ({"timeout": 0}, "timeout must be between"),
        ({"org": "acme"}, "unknown config key authn.providers.github/acme.org"),
        ({"teams": "maybe"}, "authn.providers.github/acme.teams"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_provider("github", "acme", options)


def test_body_that_stalls_after_the_headers_is_unavailable_within_the_timeout() -> None:
    """Headers arrive at once, then the body stops half-way (read outside requests' own error handling)."""
    release = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"lo')
                release.wait(5)

        threading.Thread(target=serve, daemon=True).start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        p = build_provider("github", "acme", {"base_url": url, "timeout": 0.5})
        started = time.monotonic()
        try:
            with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
                p.authenticate(GITHUB_TOKEN_ALICE)
        finally:
            release.set()
            p.close()
        assert time.monotonic() - started < 1.2


def test_paging_link_to_another_origin_is_refused_and_gets_no_token(github: GitHubStandIn) -> None:
    for i in range(150):
        github.add_team("acme", f"t{i}", "alice")
    with GitHubStandIn() as elsewhere:
        github.link_origin = elsewhere.base_url  # same host, other port: still another origin
        with pytest.raises(UpstreamUnavailable, match="unexpected link"):
            provider(github).authenticate(GITHUB_TOKEN_ALICE)
        assert elsewhere.seen_auth == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=60))
def test_arbitrary_strings_are_rejected_never_raise(github: GitHubStandIn, token: str) -> None:
    result = provider(github).authenticate(token)
    assert isinstance(result, Rejected)
