"""GitLab provider against the GitLab REST v4 stand-in: identity, subgroup paths, paging both ways, errors, timeouts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kagiya.authn.providers import build_provider
from kagiya.authn.providers.base import Rejected, User
from kagiya.errors import ConfigError, UpstreamUnavailable
from tests.standins.gitlab import GitLabStandIn

TOKEN_ALICE = "glpat-aliceAAAAAAAAAAAAAAAA"
TOKEN_BOB = "glpat-bobBBBBBBBBBBBBBBBBBB"
TOKEN_READ_USER = "glpat-readuserRRRRRRRRRRRR"
TOKEN_BLOCKED = "glpat-blockedXXXXXXXXXXXXX"


@pytest.fixture
def gitlab() -> Iterator[GitLabStandIn]:
    """alice: owner of acme (so inherits acme/platform and acme/platform/sre), reporter in tools; bob: only oss."""
    with GitLabStandIn() as gl:
        gl.add_user("alice", 11, TOKEN_ALICE)
        gl.add_user("bob", 12, TOKEN_BOB)
        gl.add_user("rita", 13, TOKEN_READ_USER, scopes=("read_user",))
        gl.add_user("mallory", 14, TOKEN_BLOCKED, state="blocked")
        gl.add_group("acme", alice=50)
        gl.add_group("acme/platform")
        gl.add_group("acme/platform/sre")
        gl.add_group("tools", alice=20)
        gl.add_group("oss", bob=30)
        gl.add_group("secret-project", bob=0)
        yield gl


def provider(gl: GitLabStandIn, name: str = "corp", **options: Any) -> Any:
    return build_provider("gitlab", name, {"base_url": gl.base_url, "timeout": 2, **options})


@pytest.mark.parametrize("token_header", ["bearer", "private-token"])
def test_valid_token_gives_username_id_and_full_group_paths(gitlab: GitLabStandIn, token_header: str) -> None:
    user = provider(gitlab, token_header=token_header).authenticate(TOKEN_ALICE)
    assert user == User("alice", "11", ("acme", "acme/platform", "acme/platform/sre", "tools"))
    header = "Authorization" if token_header == "bearer" else "PRIVATE-TOKEN"
    assert {h for h, _ in gitlab.seen_auth} == {header}


def test_min_access_level_filters_groups(gitlab: GitLabStandIn) -> None:
    user = provider(gitlab, min_access_level=30).authenticate(TOKEN_ALICE)
    assert isinstance(user, User) and "tools" not in user.groups and "acme/platform/sre" in user.groups


def test_required_group_admits_members_of_it_and_its_subgroups_only(gitlab: GitLabStandIn) -> None:
    assert isinstance(provider(gitlab, required_group="acme/platform").authenticate(TOKEN_ALICE), User)
    assert provider(gitlab, required_group="acme").authenticate(TOKEN_BOB) == Rejected(
        "not a member of the GitLab group acme"
    )
    # a prefix of a name is not a parent group
    assert isinstance(provider(gitlab, required_group="acm").authenticate(TOKEN_ALICE), Rejected)


@pytest.mark.parametrize("token", ["glpat-nope", "", "with space", "x" * 5000])
def test_invalid_tokens_are_rejected(gitlab: GitLabStandIn, token: str) -> None:
    result = provider(gitlab).authenticate(token)
    assert result in (Rejected("invalid or expired GitLab token"), Rejected("invalid GitLab token"))


def test_blocked_account_and_missing_scope_are_rejected(gitlab: GitLabStandIn) -> None:
    assert isinstance(provider(gitlab).authenticate(TOKEN_BLOCKED), Rejected)
    assert provider(gitlab).authenticate(TOKEN_READ_USER) == Rejected("the GitLab token lacks the read_api scope")


@pytest.mark.parametrize("links", [True, False], ids=["link-header", "x-next-page"])
def test_groups_are_read_across_every_page(gitlab: GitLabStandIn, links: bool) -> None:
    gitlab.links = links
    for i in range(230):
        gitlab.add_group(f"acme/team-{i:03d}")  # inherited from acme
    user = provider(gitlab).authenticate(TOKEN_ALICE)
    assert isinstance(user, User)
    assert len(user.groups) == 234 and "acme/team-229" in user.groups
    assert gitlab.hits["/api/v4/groups"] == 3


def test_self_hosted_instance_under_a_path() -> None:
    with GitLabStandIn(prefix="/gitlab") as gl:
        gl.add_user("alice", 1, "tok-self-hosted")
        gl.add_group("infra", alice=30)
        assert provider(gl, "onprem").authenticate("tok-self-hosted") == User("alice", "1", ("infra",))


def test_rate_limit_and_server_errors_are_transient(gitlab: GitLabStandIn) -> None:
    gitlab.rate_limited = True
    with pytest.raises(UpstreamUnavailable, match="rate limit"):
        provider(gitlab).authenticate(TOKEN_ALICE)
    gitlab.rate_limited = False
    gitlab.fail_status = 502
    with pytest.raises(UpstreamUnavailable, match="GitLab is unavailable"):
        provider(gitlab).authenticate(TOKEN_ALICE)


def test_stopped_upstream_is_unavailable_quickly(gitlab: GitLabStandIn) -> None:
    p = provider(gitlab)
    gitlab.stop()
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        p.authenticate(TOKEN_ALICE)
    assert time.monotonic() - started < 2


def test_slow_upstream_is_unavailable_within_the_timeout(gitlab: GitLabStandIn) -> None:
    gitlab.delay = 3
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
        provider(gitlab, timeout=0.5).authenticate(TOKEN_ALICE)
    assert time.monotonic() - started < 1.0


def test_token_never_logged(gitlab: GitLabStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(gitlab, required_group="oss")
    for token in (TOKEN_ALICE, TOKEN_BOB, TOKEN_READ_USER, "glpat-nope"):
        p.authenticate(token)
    gitlab.fail_status = 500
    with pytest.raises(UpstreamUnavailable):
        p.authenticate(TOKEN_ALICE)
    assert caplog.records
    for token in (TOKEN_ALICE, TOKEN_BOB, TOKEN_READ_USER):
        assert token not in caplog.text and token[6:] not in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_header": "cookie"}, "authn.providers.gitlab/corp.token_header"),
        ({"min_access_level": 11}, "min_access_level must be"),
        ({"base_url": "gitlab.com"}, "authn.providers.gitlab/corp.base_url"),
        ({"group": "acme"}, "unknown config key authn.providers.gitlab/corp.group"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_provider("gitlab", "corp", options)
