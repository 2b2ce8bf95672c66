"""End to end through kagiya's TokenReview webhook (Flask test client) with GitHub, GitLab and LDAP configured in
`authn.providers`: path routes, both API versions, rejections as 200, an upstream down as 503, no secret kept."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from kagiya import audit
from tests.authn_providers.conftest import GITHUB_TOKEN_ALICE, GITHUB_TOKEN_BOB, GITHUB_TOKEN_PAT, GITLAB_TOKEN
from tests.standins.github import GitHubStandIn
from tests.standins.gitlab import GitLabStandIn
from tests.support.slapd import BASE_DN, GROUPS_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd

V1 = "authentication.k8s.io/v1"
V1BETA1 = "authentication.k8s.io/v1beta1"


def ldap_token(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def providers(github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd) -> list[dict[str, Any]]:
    return [
        {"type": "github", "name": "acme", "base_url": github.base_url, "timeout": 2},
        {"type": "gitlab", "name": "corp", "base_url": gitlab.base_url, "timeout": 2},
        {"type": "ldap", "name": "corp", "urls": [slapd.url], "bind_dn": SERVICE_DN, "bind_password": SERVICE_PASSWORD,
         "user_search_base": BASE_DN, "group_search_base": GROUPS_DN, "nested_groups": True, "timeout": 2},
    ]


def review(client: Any, path: str, token: str, api_version: str = V1) -> Any:
    return client.post(path, json={"apiVersion": api_version, "kind": "TokenReview", "spec": {"token": token}})


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_each_provider_by_path_route_in_both_versions(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd, api_version: str
) -> None:
    client = make_app(providers(github, gitlab, slapd)).test_client()
    cases = [
        ("/authn/github/acme/tokenreviews", GITHUB_TOKEN_ALICE, "alice", "101", ["acme:platform", "acme:sre"]),
        ("/authn/gitlab/corp/tokenreviews", GITLAB_TOKEN, "gina", "77", ["acme", "acme/sre"]),
        ("/authn/ldap/corp/tokenreviews", ldap_token("bob", "bob-pw"), "bob", None,
         ["developers", "everyone", "platform"]),
    ]
    for path, token, username, uid, groups in cases:
        resp = review(client, path, token, api_version)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
        assert body["apiVersion"] == api_version and body["kind"] == "TokenReview"
        assert body["status"]["authenticated"] is True
        user = body["status"]["user"]
        assert user["username"] == username and user["groups"] == groups
        assert user["uid"] == uid if uid else len(user["uid"]) == 36


def test_rejections_are_200_with_kagiyas_short_reason(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd
) -> None:
    client = make_app(providers(github, gitlab, slapd)).test_client()
    gh = "/authn/github/acme/tokenreviews"
    cases = [
        (gh, GITHUB_TOKEN_BOB, "github/acme: membership of the GitHub organization acme is not active"),
        (gh, GITHUB_TOKEN_PAT, "github/acme: not a member of the GitHub organization acme"),
        ("/authn/gitlab/corp/tokenreviews", "glpat-wrong", "gitlab/corp: invalid or expired GitLab token"),
        ("/authn/ldap/corp/tokenreviews", ldap_token("*)(uid=*", "alice-pw"),
         "ldap/corp: invalid username or password"),
        ("/authn/ldap/corp/tokenreviews", ldap_token("alice", ""), "ldap/corp: empty password refused"),
        # A token the named provider cannot have issued is refused before any upstream call.
        (gh, ldap_token("alice", "alice-pw"), "github/acme: not a token a github provider accepts"),
    ]
    for path, token, reason in cases:
        resp = review(client, path, token, V1BETA1)
        assert resp.status_code == 200
        assert resp.get_json()["status"] == {"authenticated": False, "error": reason}


def test_default_chain_finds_the_provider_that_accepts(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd
) -> None:
    client = make_app(providers(github, gitlab, slapd)).test_client()
    resp = review(client, "/authn/tokenreviews", ldap_token("carol", "carol-pw"))
    assert resp.get_json()["status"]["user"]["username"] == "carol"
    resp = review(client, "/tokenreviews", GITLAB_TOKEN)
    assert resp.get_json()["status"]["user"]["username"] == "gina"


def test_upstream_down_is_503_status_not_a_cached_denial(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, private_slapd: Slapd
) -> None:
    client = make_app(providers(github, gitlab, private_slapd)).test_client()
    github.stop()
    private_slapd.stop()
    for path, token in [("/authn/github/acme/tokenreviews", GITHUB_TOKEN_ALICE),
                        ("/authn/ldap/corp/tokenreviews", ldap_token("alice", "alice-pw"))]:
        resp = review(client, path, token)
        assert resp.status_code == 503
        assert resp.get_json()["kind"] == "Status" and resp.get_json()["code"] == 503
    private_slapd.start()  # back: the same token now succeeds (the 503 was not cached)
    resp = review(client, "/authn/ldap/corp/tokenreviews", ldap_token("alice", "alice-pw"))
    assert resp.get_json()["status"]["authenticated"] is True


def test_no_token_or_password_in_audit_rows_or_logs(
    make_app: Any, github: GitHubStandIn, gitlab: GitLabStandIn, slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(providers(github, gitlab, slapd))
    client = app.test_client()
    secrets = [GITHUB_TOKEN_ALICE, GITHUB_TOKEN_BOB, GITLAB_TOKEN, "glpat-wrong", "alice-pw", "bad-pw-98765"]
    review(client, "/authn/github/acme/tokenreviews", GITHUB_TOKEN_ALICE)
    review(client, "/authn/github/acme/tokenreviews", GITHUB_TOKEN_BOB)
    review(client, "/authn/gitlab/corp/tokenreviews", GITLAB_TOKEN)
    review(client, "/authn/gitlab/corp/tokenreviews", "glpat-wrong")
    review(client, "/authn/ldap/corp/tokenreviews", ldap_token("alice", "alice-pw"))
    review(client, "/authn/ldap/corp/tokenreviews", ldap_token("alice", "bad-pw-98765"))
    gitlab.stop()
    assert review(client, "/authn/gitlab/corp/tokenreviews", GITLAB_TOKEN + "x").status_code == 503
    assert audit.flush(app.extensions["kagiya.store"])  # review events are written in the background
    with app.extensions["kagiya.store"].begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(audit.audit_events))]
    assert len(rows) >= 7
    dumped = json.dumps(rows, default=str) + "\n".join(
        r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records
    )
    for secret in [*secrets, ldap_token("alice", "alice-pw"), ldap_token("alice", "bad-pw-98765")]:
        assert secret not in dumped
    assert audit.fingerprint(GITHUB_TOKEN_ALICE) in dumped
