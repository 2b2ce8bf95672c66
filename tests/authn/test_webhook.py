"""The TokenReview webhook: versions, exact field names, bad bodies, token file, routes, limits, metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.authn.conftest import V1, V1BETA1, oidc_provider, post_review, review_body
from tests.conftest import bearer


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_review_is_answered_in_the_request_version_with_exact_fields(client: Any, api_version: str) -> None:
    resp = post_review(client, "approver-token-0003", api_version=api_version)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["apiVersion"] == api_version
    assert body["kind"] == "TokenReview"
    assert set(body["status"]) == {"authenticated", "user"}
    assert body["status"]["authenticated"] is True
    assert body["status"]["user"] == {"username": "carol", "uid": "uid-carol", "groups": ["approvers", "team-a"]}


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_unknown_token_is_200_unauthenticated_with_short_error(client: Any, api_version: str) -> None:
    resp = post_review(client, "not-a-known-token", api_version=api_version)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["apiVersion"] == api_version
    assert body["status"] == {"authenticated": False, "error": "token-auth/default: invalid token"}


def test_guard_path_and_token_file_path_route(client: Any) -> None:
    assert post_review(client, "dev-token-0002", path="/tokenreviews").get_json()["status"]["user"]["username"] == "bob"
    resp = post_review(client, "dev-token-0002", path="/authn/token-auth/default/tokenreviews")
    assert resp.get_json()["status"]["user"]["username"] == "bob"


def test_unknown_provider_in_path_is_404_status(client: Any) -> None:
    resp = post_review(client, "dev-token-0002", path="/authn/github/nobody/tokenreviews")
    assert resp.status_code == 404
    assert resp.get_json()["kind"] == "Status"


def test_audiences_for_an_audience_agnostic_provider_are_not_claimed(client: Any) -> None:
    """The token file cannot know audiences: no status.audiences, so the apiserver applies its implicit ones."""
    resp = post_review(client, "dev-token-0002", audiences=["https://kubernetes.default.svc"])
    assert "audiences" not in resp.get_json()["status"]


BAD_BODIES = [
    b"",
    b"not json",
    b"[]",
    json.dumps({"apiVersion": "v1", "kind": "TokenReview", "spec": {"token": "x"}}).encode(),
    json.dumps({"apiVersion": V1, "kind": "SubjectAccessReview", "spec": {"token": "x"}}).encode(),
    json.dumps({"apiVersion": V1, "kind": "TokenReview"}).encode(),
    json.dumps({"apiVersion": V1, "kind": "TokenReview", "spec": {"token": ""}}).encode(),
    json.dumps({"apiVersion": V1, "kind": "TokenReview", "spec": {"token": 5}}).encode(),
    json.dumps({"apiVersion": V1, "kind": "TokenReview", "spec": {"token": "x", "audiences": "a"}}).encode(),
    json.dumps({"apiVersion": V1, "kind": "TokenReview", "spec": {"token": "x" * 20000}}).encode(),
]


@pytest.mark.parametrize("raw", BAD_BODIES)
def test_malformed_bodies_are_400_status(client: Any, raw: bytes) -> None:
    resp = client.post("/authn/tokenreviews", data=raw)
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["kind"] == "Status" and body["code"] == 400
    assert "xxxxxxxx" not in body["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
))
def test_any_json_gets_200_or_400_never_500(client: Any, value: Any) -> None:
    resp = client.post("/authn/tokenreviews", data=json.dumps(value))
    assert resp.status_code in (200, 400)


def test_system_names_from_external_providers_are_refused(issuer: Any, make_app: Any) -> None:
    app = make_app([oidc_provider(issuer), oidc_provider(issuer, name="trusted", allow_system_names=True,
                                                         audiences=["kube-trusted"])])
    client = app.test_client()
    token = issuer.mint(sub="system:admin", aud="kube")
    status = post_review(client, token).get_json()["status"]
    assert status == {"authenticated": False, "error": "oidc/corp: identity provider returned a reserved system: name"}
    grouped = issuer.mint(sub="mallory", aud="kube", groups=["system:masters"])
    assert post_review(client, grouped).get_json()["status"]["authenticated"] is False
    allowed = issuer.mint(sub="system:ci", aud="kube-trusted", groups=["system:masters"])
    assert post_review(client, allowed).get_json()["status"]["user"]["username"] == "system:ci"


def test_default_chain_tries_token_file_first_then_configured_order(issuer: Any, make_app: Any) -> None:
    other = {"type": "oidc", "name": "other", "issuer": "http://127.0.0.1:9/none", "audiences": ["x"],
             "timeout": 0.5}
    app = make_app([other, oidc_provider(issuer)], default_chain=["oidc/corp", "oidc/other"])
    client = app.test_client()
    assert post_review(client, "admin-token-0001").get_json()["status"]["user"]["username"] == "alice"
    jwt = issuer.mint(sub="dave", aud="kube")
    assert post_review(client, jwt).get_json()["status"]["user"]["username"] == "dave"


def test_bad_provider_config_fails_at_startup_naming_the_key(make_app: Any) -> None:
    from kagiya.errors import ConfigError

    with pytest.raises(ConfigError, match="issuer"):
        make_app([{"type": "oidc", "name": "x", "audiences": ["a"]}])
    with pytest.raises(ConfigError, match="bogus"):
        make_app([{"type": "oidc", "name": "x", "issuer": "http://i", "audiences": ["a"], "bogus": 1}])
    with pytest.raises(ConfigError, match="default_chain"):
        make_app([], default_chain=["oidc/missing"])


def test_garbage_reviews_do_not_lock_out_the_apiserver(issuer: Any, make_app: Any) -> None:
    """The apiserver is the webhook's only caller: a flood of bad tokens (default budget 120/min) must not turn
    every other user's uncached review into a 429."""
    app = make_app([oidc_provider(issuer)])
    client = app.test_client()
    for i in range(200):
        resp = post_review(client, f"garbage-{i}")
        assert resp.status_code == 200 and resp.get_json()["status"]["authenticated"] is False
    assert post_review(client, "admin-token-0001").get_json()["status"]["user"]["username"] == "alice"
    jwt = issuer.mint(sub="dave", aud="kube")
    assert post_review(client, jwt).get_json()["status"]["user"]["username"] == "dave"
    guard_path = client.post("/tokenreviews", json=review_body("dev-token-0002"))
    assert guard_path.get_json()["status"]["user"]["username"] == "bob"


def test_failed_bearer_tokens_on_the_http_api_are_limited_per_caller(issuer: Any, make_app: Any) -> None:
    """HTTP API bearer tokens come from many sources: each address gets `failed_reviews_per_minute` rejections
    by the identity providers, then 429 for uncached tokens; the token file and cached answers keep working."""
    app = make_app([oidc_provider(issuer)], failed_reviews_per_minute=3)
    client = app.test_client()
    good_jwt = issuer.mint(sub="ivan")
    assert client.get("/v1/audit", headers=bearer(good_jwt)).status_code == 403  # known, not an admin: cached
    for i in range(3):
        assert client.get("/v1/audit", headers=bearer(f"guess-{i}")).status_code == 401
    throttled = client.get("/v1/audit", headers=bearer("guess-final"))
    assert throttled.status_code == 429
    assert throttled.get_json()["reason"] == "TooManyRequests"
    assert client.get("/v1/audit", headers=bearer("admin-token-0001")).status_code == 200
    assert client.get("/v1/audit", headers=bearer(good_jwt)).status_code == 403
    other = client.get("/v1/audit", headers=bearer("guess-x"), environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 401
    # The webhook is not limited by the API's budget (nor by its own).
    assert post_review(client, "guess-y").status_code == 200


def test_reviews_are_counted_by_provider_and_outcome(client: Any) -> None:
    post_review(client, "dev-token-0002")
    post_review(client, "nope")
    client.post("/authn/tokenreviews", data=b"{}")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'kagiya_authn_token_reviews_total{outcome="authenticated",provider="token-auth/default"} 1.0' in text
    assert 'kagiya_authn_token_reviews_total{outcome="rejected",provider="token-auth/default"} 1.0' in text
    assert 'kagiya_authn_token_reviews_total{outcome="bad_request",provider="default"} 1.0' in text


def test_routes_appear_in_openapi(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/authn/tokenreviews", "/tokenreviews", "/authn/{provider_type}/{name}/tokenreviews"} <= set(paths)


def test_api_callers_resolve_through_configured_providers(issuer: Any, make_app: Any) -> None:
    """kagiya.callers uses the same provider objects: an OIDC token works as an API bearer token."""
    app = make_app([oidc_provider(issuer)])
    client = app.test_client()
    token = issuer.mint(sub="erin", aud="kube", groups=["kagiya:admins"])
    assert client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/v1/audit", headers={"Authorization": "Bearer admin-token-0001"}).status_code == 200
    assert client.get("/v1/audit", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_token_file_is_reloaded_when_it_changes(make_app: Any, token_file: Any) -> None:
    import os

    client = make_app(cache_ttl_seconds=0, cache_negative_ttl_seconds=0).test_client()
    assert post_review(client, "new-token-0009").get_json()["status"]["authenticated"] is False
    token_file.write_text('new-token-0009,zoe,uid-zoe,"team-b"\n')
    os.utime(token_file, ns=(1, 2_000_000_000_000_000_000))  # a different mtime even within one clock tick
    status = post_review(client, "new-token-0009").get_json()["status"]
    assert status["user"] == {"username": "zoe", "uid": "uid-zoe", "groups": ["team-b"]}
    assert post_review(client, "dev-token-0002").get_json()["status"]["authenticated"] is False


def test_unknown_paths_do_not_mint_metric_labels(client: Any) -> None:
    for i in range(3):
        assert post_review(client, "x", path=f"/authn/github/random-{i}/tokenreviews").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert "random-" not in text
    assert 'kagiya_authn_token_reviews_total{outcome="notfound",provider="unknown"} 3.0' in text


def test_a_rejection_names_the_first_provider_that_judged_the_token(issuer: Any, make_app: Any) -> None:
    """Two providers trust the issuer (different audiences); a token for neither is judged by the first of the
    chain that claims it, and the reply names that one (not whichever was tried last)."""
    providers = [oidc_provider(issuer), oidc_provider(issuer, name="trusted", audiences=["kube-trusted"])]
    token = issuer.mint(sub="mallory", aud="elsewhere")
    for chain, judge in ((["oidc/corp", "oidc/trusted"], "oidc/corp"), (["oidc/trusted", "oidc/corp"], "oidc/trusted")):
        status = post_review(make_app(providers, default_chain=chain).test_client(), token).get_json()["status"]
        assert status == {"authenticated": False, "error": f"{judge}: token audience not accepted"}
