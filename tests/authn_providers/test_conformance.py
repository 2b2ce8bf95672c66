"""One conformance suite for the GitHub, GitLab and LDAP providers: the promises every provider keeps
(docs/authn-providers.md, "What every provider promises"), each against its own upstream."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kagiya.authn.providers import build_provider
from kagiya.authn.providers.base import Rejected, User
from kagiya.errors import UpstreamUnavailable
from tests.authn_providers.conftest import GITHUB_TOKEN_ALICE
from tests.standins.github import GitHubStandIn
from tests.standins.gitlab import GitLabStandIn
from tests.support.slapd import BASE_DN, GROUPS_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd

TIMEOUT = 0.6
UPSTREAM_WORDS = ("Bad credentials", "401 Unauthorized", "Not Found", "documentation_url", "invalidCredentials")


@dataclass
class Harness:
    kind: str
    options: Callable[[str], dict[str, Any]]  # upstream URL -> provider options
    url: str
    good: str
    expected: Callable[[User], bool]
    bad: list[str]
    stop: Callable[[], None]

    built: list[Any] = field(default_factory=list)

    def build(self, url: str | None = None) -> Any:
        provider = build_provider(self.kind, "acme", self.options(url or self.url))
        self.built.append(provider)
        return provider

    def close(self) -> None:
        for provider in self.built:
            provider.close()


def _ldap_token(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(params=["github", "gitlab", "ldap"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    for h in _harness(request):
        try:
            yield h
        finally:
            h.close()


def _harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Only the upstream this parameter needs is started."""
    if request.param == "github":
        github: GitHubStandIn = request.getfixturevalue("github")
        yield Harness(
            "github", lambda url: {"base_url": url, "timeout": TIMEOUT}, github.base_url, GITHUB_TOKEN_ALICE,
            lambda u: (u.username, u.uid, u.groups) == ("alice", "101", ("acme:platform", "acme:sre")),
            ["ghp_nope", ""], github.stop,
        )
    elif request.param == "gitlab":
        with GitLabStandIn() as gl:
            gl.add_user("alice", 11, "glpat-conformance")
            gl.add_group("acme", alice=30)
            yield Harness(
                "gitlab", lambda url: {"base_url": url, "timeout": TIMEOUT}, gl.base_url, "glpat-conformance",
                lambda u: (u.username, u.uid, u.groups) == ("alice", "11", ("acme",)),
                ["glpat-nope", ""], gl.stop,
            )
    else:
        private_slapd: Slapd = request.getfixturevalue("private_slapd")

        def options(url: str) -> dict[str, Any]:
            return {"urls": [url.replace("http://", "ldap://")], "bind_dn": SERVICE_DN,
                    "bind_password": SERVICE_PASSWORD, "user_search_base": BASE_DN, "group_search_base": GROUPS_DN,
                    "timeout": TIMEOUT}

        yield Harness(
            "ldap", options, private_slapd.url, _ldap_token("alice", "alice-pw"),
            lambda u: u.username == "alice" and u.groups == ("developers", "ops") and len(u.uid) == 36,
            [_ldap_token("alice", "nope"), ""], private_slapd.stop,
        )


def test_valid_token_gives_the_expected_user(harness: Harness) -> None:
    user = harness.build().authenticate(harness.good)
    assert isinstance(user, User) and harness.expected(user)


def test_bad_tokens_are_rejected_in_kagiyas_own_short_words(harness: Harness) -> None:
    provider = harness.build()
    for token in harness.bad:
        result = provider.authenticate(token)
        assert isinstance(result, Rejected)
        assert 0 < len(result.reason) < 100 and result.reason.isascii()
        assert not any(word in result.reason for word in UPSTREAM_WORDS)


def test_one_provider_serves_concurrent_reviews(harness: Harness) -> None:
    provider = harness.build()
    results: list[Any] = []
    lock = threading.Lock()

    def work() -> None:
        for token in (harness.good, harness.bad[0]) * 3:
            result = provider.authenticate(token)
            with lock:
                results.append((token, result))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 36
    for token, result in results:
        assert isinstance(result, User if token == harness.good else Rejected)


def test_stopped_upstream_is_unavailable_promptly(harness: Harness) -> None:
    provider = harness.build()
    assert isinstance(provider.authenticate(harness.good), User)
    harness.stop()
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        provider.authenticate(harness.good)
    assert time.monotonic() - started < TIMEOUT + 0.5


def test_silent_upstream_is_unavailable_within_the_timeout(harness: Harness) -> None:
    with socket.socket() as sock:  # accepts connections (kernel backlog) and never says a word
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        provider = harness.build(f"http://127.0.0.1:{sock.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
            provider.authenticate(harness.good)
        assert time.monotonic() - started < TIMEOUT + 0.5
