"""Fixtures for the GitHub, GitLab and LDAP provider suites: stand-ins on free loopback ports and a real slapd."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.standins.github import GitHubStandIn
from tests.standins.gitlab import GitLabStandIn
from tests.support.slapd import Slapd, start_slapd

GITHUB_TOKEN_ALICE = "ghp_alice" + "A" * 32  # made up; built so scanners do not flag it
GITHUB_TOKEN_BOB = "ghp_bob" + "B" * 34  # made up; built so scanners do not flag it
GITHUB_TOKEN_PAT = "ghp_pat" + "P" * 34  # made up; built so scanners do not flag it
GITHUB_TOKEN_NOSCOPE = "ghp_noscope" + "N" * 30  # made up; built so scanners do not flag it
GITLAB_TOKEN = "glpat-e2e" + "G" * 18  # made up; built so scanners do not flag it


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    """acme: alice active (teams platform, sre + 150 more), bob pending, pat not a member, nobody without scope."""
    with GitHubStandIn() as gh:
        gh.add_user("alice", 101, GITHUB_TOKEN_ALICE)
        gh.add_user("bob", 102, GITHUB_TOKEN_BOB)
        gh.add_user("pat", 103, GITHUB_TOKEN_PAT)
        gh.add_user("nos", 104, GITHUB_TOKEN_NOSCOPE, scopes=("read:user",))
        gh.add_member("alice", "acme")
        gh.add_member("bob", "acme", state="pending")
        gh.add_member("pat", "other-org")
        gh.add_member("nos", "acme")
        gh.add_team("acme", "platform", "alice", "bob")
        gh.add_team("acme", "sre", "alice")
        gh.add_team("other-org", "admins", "alice", "pat")
        yield gh


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One real OpenLDAP slapd for the session (tests that stop or pause it use `private_slapd`)."""
    with start_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
def private_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd of this test's own, free to be stopped, paused or restarted (~0.1 s to start)."""
    with start_slapd(tmp_path / "slapd") as server:
        yield server


@pytest.fixture
def gitlab() -> Iterator[GitLabStandIn]:
    with GitLabStandIn() as gl:
        gl.add_user("gina", 77, GITLAB_TOKEN)
        gl.add_group("acme", gina=30)
        gl.add_group("acme/sre")
        yield gl


@pytest.fixture
def make_app(make_settings: Any) -> Iterator[Callable[..., Any]]:
    from kagiya.authn import routing
    from kagiya.web import create_app

    made: list[Any] = []

    def make(providers: list[dict[str, Any]], **authn: Any) -> Any:
        app = create_app(make_settings({"authn": {"providers": providers, **authn}}))
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield make
    for app in made:
        for entry in routing.authenticator_of(app).providers.entries.values():
            close = getattr(entry.provider, "close", None)
            if close is not None:
                close()
        app.extensions["kagiya.store"].dispose()
