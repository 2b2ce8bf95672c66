"""A token only ever reaches a provider that can have issued it (issue 11.1: credential disclosure).

With LDAP, GitHub and GitLab (and an OIDC issuer) configured, the default chain used to send an LDAP password and
an expired corporate ID token to GitHub's and GitLab's `/user`. Each case below asserts the upstream stand-ins'
call counts: zero for every token that is not theirs, on the TokenReview webhook and on the HTTP API bearer path.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagiya.authn import routing, shapes
from kagiya.authn.providers import ldap as ldap_provider
from kagiya.authn.providers.github import GitHubOptions, GitHubProvider
from kagiya.authn.providers.gitlab import GitLabOptions, GitLabProvider
from kagiya.authn.routing import ProviderEntry, Route, claimants
from tests.authn_providers.conftest import GITHUB_TOKEN_ALICE, GITLAB_TOKEN
from tests.standins.github import GitHubStandIn
from tests.standins.gitlab import GitLabStandIn
from tests.standins.oidc_issuer import OidcIssuer
from tests.support.slapd import BASE_DN, GROUPS_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd

V1 = "authentication.k8s.io/v1"
LEGACY_GITHUB_TOKEN = "0123456789abcdef" * 2 + "01234567"  # 40 hex: a pre-2021 classic token's shape (made up)
UNCLAIMED = "no configured identity provider accepts tokens of this kind"


def ldap_token(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(client_id="kube") as idp:
        yield idp


def github_entry(github: GitHubStandIn, **kw: Any) -> dict[str, Any]:
    return {"type": "github", "name": "acme", "base_url": github.base_url, "timeout": 2, **kw}


def gitlab_entry(gitlab: GitLabStandIn, **kw: Any) -> dict[str, Any]:
    return {"type": "gitlab", "name": "corp", "base_url": gitlab.base_url, "timeout": 2, **kw}


def ldap_entry(slapd: Slapd) -> dict[str, Any]:
    return {"type": "ldap", "name": "corp", "urls": [slapd.url], "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD, "user_search_base": BASE_DN, "group_search_base": GROUPS_DN,
            "timeout": 2}


def oidc_entry(issuer: OidcIssuer) -> dict[str, Any]:
    return {"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": ["kube"], "timeout": 2}


def status(client: Any, token: str, path: str = "/authn/tokenreviews") -> dict[str, Any]:
    resp = client.post(path, json={"apiVersion": V1, "kind": "TokenReview", "spec": {"token": token}})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["status"]  # type: ignore[no-any-return]


def forge_calls(github: GitHubStandIn, gitlab: GitLabStandIn) -> tuple[int, int]:
    return sum(github.hits.values()), sum(gitlab.hits.values())


def test_ldap_password_and_corporate_id_token_never_reach_the_forges(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd, issuer: OidcIssuer
) -> None:
    client = make_app([github_entry(github), gitlab_entry(gitlab), ldap_entry(slapd), oidc_entry(issuer)]).test_client()

    assert status(client, ldap_token("bob", "bob-pw"))["user"]["username"] == "bob"
    assert status(client, ldap_token("bob", "wrong-pw")) == {
        "authenticated": False, "error": "ldap/corp: invalid username or password"}
    expired = issuer.mint(sub="dana", now=time.time() - 3600, expires_in=300)
    assert status(client, expired) == {"authenticated": False, "error": "oidc/corp: token expired"}
    assert status(client, issuer.mint(sub="dana"))["user"]["username"] == "dana"
    # A JWT from an issuer nobody configured (a service-account token, another IdP): judged locally, sent nowhere.
    with OidcIssuer(client_id="kube") as stranger:
        assert status(client, stranger.mint(sub="eve")) == {"authenticated": False, "error": UNCLAIMED}
    assert status(client, "some-opaque-session-cookie") == {"authenticated": False, "error": UNCLAIMED}
    assert forge_calls(github, gitlab) == (0, 0)
    assert github.seen_auth == [] and gitlab.seen_auth == []

    # Each forge sees exactly its own tokens.
    assert status(client, GITHUB_TOKEN_ALICE)["user"]["username"] == "alice"
    assert sum(gitlab.hits.values()) == 0
    github.hits.clear()
    assert status(client, GITLAB_TOKEN)["user"]["username"] == "gina"
    assert sum(github.hits.values()) == 0


def test_a_forge_token_never_reaches_the_other_forge(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn
) -> None:
    only_gitlab = make_app([gitlab_entry(gitlab)]).test_client()
    assert status(only_gitlab, GITHUB_TOKEN_ALICE) == {"authenticated": False, "error": UNCLAIMED}
    only_github = make_app([github_entry(github)]).test_client()
    assert status(only_github, GITLAB_TOKEN) == {"authenticated": False, "error": UNCLAIMED}
    assert forge_calls(github, gitlab) == (0, 0)
    # Named by path (or client certificate), a provider still refuses a token it cannot have issued, locally.
    assert status(only_github, GITLAB_TOKEN, "/authn/github/acme/tokenreviews") == {
        "authenticated": False, "error": "github/acme: not a token a github provider accepts"}
    assert forge_calls(github, gitlab) == (0, 0)


def test_legacy_40_hex_tokens_only_when_the_admin_opts_in(make_app: Any, github: GitHubStandIn) -> None:
    github.add_user("olga", 105, LEGACY_GITHUB_TOKEN)
    github.add_member("olga", "acme")
    strict = make_app([github_entry(github)]).test_client()
    assert status(strict, LEGACY_GITHUB_TOKEN) == {"authenticated": False, "error": UNCLAIMED}
    assert sum(github.hits.values()) == 0
    opted_in = make_app([github_entry(github, legacy_tokens=True)]).test_client()
    assert status(opted_in, LEGACY_GITHUB_TOKEN)["user"]["username"] == "olga"
    assert github.hits["/user"] == 1


def hex_that_reads_as_ldap_credentials() -> str:
    """40 hex characters that are also standard base64 of `user:password`: the one overlap between a legacy
    GitHub token's shape and LDAP's (found by search, so no token is hard-coded)."""
    import itertools

    def decoded(group: str) -> bytes:
        return base64.b64decode(group)

    printable = [g for g in map("".join, itertools.product("0123456789abcdef", repeat=4))
                 if all(0x21 <= b < 0x7F and b != ord(":") for b in decoded(g))]
    colon = next(g for g in map("".join, itertools.product("0123456789abcdef", repeat=4))
                 if decoded(g)[2:3] == b":" and all(0x21 <= b < 0x7F for b in decoded(g)))
    token = printable[0] + colon + "".join(printable[1:9])
    assert len(token) == 40 and shapes.inspect(token).basic_credentials
    return token


def test_a_token_ldap_claims_never_reaches_a_forge_even_by_path(
    make_app: Any, github: GitHubStandIn, slapd: Slapd
) -> None:
    token = hex_that_reads_as_ldap_credentials()
    client = make_app([github_entry(github, legacy_tokens=True), ldap_entry(slapd)]).test_client()
    assert status(client, token, "/authn/github/acme/tokenreviews") == {
        "authenticated": False, "error": "github/acme: not a token a github provider accepts"}
    assert status(client, token) == {"authenticated": False, "error": "ldap/corp: invalid username or password"}
    assert sum(github.hits.values()) == 0


def test_gitlab_custom_prefix_is_configurable(make_app: Any, gitlab: GitLabStandIn) -> None:
    custom = "acme-glpat-" + "C" * 20  # made up: an instance with a custom token prefix
    gitlab.add_user("carl", 78, custom)
    default = make_app([gitlab_entry(gitlab)]).test_client()
    assert status(default, custom)["authenticated"] is False
    assert sum(gitlab.hits.values()) == 0
    configured = make_app([gitlab_entry(gitlab, token_prefixes=["acme-glpat-", "glpat-"])]).test_client()
    assert status(configured, custom)["user"]["username"] == "carl"


def test_api_bearer_tokens_follow_the_same_rules(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd, issuer: OidcIssuer
) -> None:
    client = make_app([github_entry(github), gitlab_entry(gitlab), ldap_entry(slapd), oidc_entry(issuer)]).test_client()
    expired = issuer.mint(sub="dana", now=time.time() - 3600, expires_in=300)
    for token, code in ((ldap_token("bob", "bob-pw"), 403), (ldap_token("bob", "nope"), 401), (expired, 401),
                        ("opaque-api-token-1234", 401)):
        resp = client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == code, (token[:6], resp.get_data(as_text=True))  # 403: known, not an admin
    assert forge_calls(github, gitlab) == (0, 0)
    assert client.get("/v1/audit", headers={"Authorization": f"Bearer {GITHUB_TOKEN_ALICE}"}).status_code == 403
    assert sum(gitlab.hits.values()) == 0 and github.hits["/user"] == 1


@pytest.fixture(scope="module")
def offline_route() -> Iterator[Route]:
    """A default route over real provider objects (GitHub and GitLab with legacy shapes on) pointing nowhere:
    `claimants` decides without I/O, so nothing is ever contacted."""
    github = GitHubProvider("acme", GitHubOptions(legacy_tokens=True), base_url="http://127.0.0.1:9/")
    gitlab = GitLabProvider("corp", GitLabOptions(legacy_tokens=True), base_url="http://127.0.0.1:9/")
    ldap = ldap_provider.from_config("corp", {"urls": ["ldap://127.0.0.1:9"], "user_search_base": BASE_DN})
    yield Route("default", (ProviderEntry("github", "acme", github), ProviderEntry("gitlab", "corp", gitlab),
                            ProviderEntry("ldap", "corp", ldap)))
    github.close()
    gitlab.close()
    ldap.close()


@settings(max_examples=300, deadline=None)
@given(username=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp", "Z")),
                        min_size=1, max_size=40).filter(lambda u: ":" not in u and u.isprintable()),
       password=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_an_ldap_credential_only_ever_goes_to_ldap(offline_route: Route, username: str, password: str) -> None:
    """Whatever the user name and password, even with the forges' legacy (prefix-less) shapes accepted, the
    router hands Guard's `base64(user:password)` to the directory and never to a third-party forge."""
    chosen = claimants(offline_route, shapes.inspect(ldap_token(username, password)))
    assert [e.key for e in chosen] == ["ldap/corp"]


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    b64url('{"alg":"RS256"}') + "." + b64url("[" * 5000) + ".sig",  # 6.7 KiB: under every size limit
    b64url('{"a":' * 2000 + "1" + "}" * 2000) + "." + b64url('{"iss":"x"}') + ".sig",
], ids=["nested-payload", "nested-header"])
def test_deeply_nested_jwt_segments_are_refused_not_a_500(make_app: Any, gitlab: GitLabStandIn, issuer: OidcIssuer,
                                                          token: str) -> None:
    """A JWT-shaped token whose segments nest deeper than the json module recurses is "not a JWT", judged
    locally: a rejection on the webhook and a 401 on the HTTP API, never an internal error."""
    client = make_app([gitlab_entry(gitlab), oidc_entry(issuer)]).test_client()
    assert not shapes.inspect(token).is_jwt
    assert status(client, token) == {"authenticated": False, "error": UNCLAIMED}
    assert client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert sum(gitlab.hits.values()) == 0


def test_a_forge_token_is_not_handed_from_one_forge_service_to_another(make_app: Any, github: GitHubStandIn) -> None:
    """github.com and a GitHub Enterprise Server both issue `ghp_` tokens: in the default chain neither is asked
    (asking each in turn would send one service's token to the other); naming the provider by path works. Two
    organizations on one service are both asked, as before."""
    with GitHubStandIn() as ghes:
        ghes.add_user("erin", 201, "ghp_erin" + "E" * 33)
        ghes.add_member("erin", "internal")
        erin = "ghp_erin" + "E" * 33
        client = make_app([github_entry(github), {**github_entry(ghes), "name": "internal"}]).test_client()
        assert status(client, erin) == {"authenticated": False, "error": routing.AMBIGUOUS_REASON}
        assert status(client, GITHUB_TOKEN_ALICE) == {"authenticated": False, "error": routing.AMBIGUOUS_REASON}
        assert sum(github.hits.values()) == 0 and sum(ghes.hits.values()) == 0
        assert status(client, erin, "/authn/github/internal/tokenreviews")["user"]["username"] == "erin"
        assert sum(github.hits.values()) == 0
    github.add_member("alice", "beta")
    two_orgs = make_app([github_entry(github, name="beta"), github_entry(github)]).test_client()
    assert status(two_orgs, GITHUB_TOKEN_ALICE)["user"]["username"] == "alice"
