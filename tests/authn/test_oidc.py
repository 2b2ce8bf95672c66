"""OIDC provider through the webhook, against the issuer stand-in (discovery, rotating JWKS, RS256/ES256)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.authn.conftest import V1BETA1, oidc_provider, post_review
from tests.standins.oidc_issuer import OidcIssuer


@pytest.fixture
def oidc_client(issuer: OidcIssuer, make_app: Any) -> Any:
    app = make_app([oidc_provider(
        issuer, username_claim="email", username_prefix="corp:", groups_prefix="corp:",
        extra_claims={"corp.example/tenant": "tid"},
    )])
    return app.test_client()


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_valid_token_gives_username_uid_groups_extra(issuer: OidcIssuer, make_app: Any, alg: str) -> None:
    issuer.rotate(alg)
    client = make_app([oidc_provider(issuer, username_claim="email", username_prefix="corp:",
                                     groups_prefix="corp:", extra_claims={"corp.example/tenant": "tid"})]).test_client()
    token = issuer.mint(sub="u-123", email="dana@example.com", groups=["dev", "ops"], tid="t1")
    resp = post_review(client, token, api_version=V1BETA1)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["apiVersion"] == V1BETA1
    assert body["status"]["user"] == {
        "username": "corp:dana@example.com", "uid": "u-123", "groups": ["corp:dev", "corp:ops"],
        "extra": {"corp.example/tenant": ["t1"]},
    }


def _status(client: Any, token: str, **kw: Any) -> dict[str, Any]:
    resp = post_review(client, token, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["status"]  # type: ignore[no-any-return]


def test_rejections_are_200_unauthenticated(issuer: OidcIssuer, oidc_client: Any) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": issuer.signing_key.kid, "alg": "RS256"})
    now = time.time()
    cases = {
        "invalid token signature": issuer.mint(key=stranger, email="x@example.com"),
        "token expired": issuer.mint(email="x@example.com", now=now - 1000, expires_in=300),
        "token audience not accepted": issuer.mint(email="x@example.com", aud="someone-else"),
        "token not yet valid": issuer.mint(email="x@example.com", nbf=int(now) + 3600),
        "token issued in the future": issuer.mint(email="x@example.com", iat=int(now) + 3600),
        "token has no expiry": issuer.mint(email="x@example.com", exp=None),
        "token has no 'email' claim": issuer.mint(),
    }
    for reason, token in cases.items():
        assert _status(oidc_client, token) == {"authenticated": False, "error": f"oidc/corp: {reason}"}, reason
    # Tokens the provider cannot have issued never reach it: the router judges them.
    unclaimed = "no configured identity provider accepts tokens of this kind"
    for token in (issuer.mint(email="x@example.com", iss="http://127.0.0.1:1/evil"), "just-some-opaque-token"):
        assert _status(oidc_client, token) == {"authenticated": False, "error": unclaimed}


def test_algorithm_allow_list_refuses_none_and_hmac(issuer: OidcIssuer, oidc_client: Any) -> None:
    hmac_key = OctKey.generate_key(256, parameters={"kid": issuer.signing_key.kid})
    hs = jwt.encode({"alg": "HS256", "kid": issuer.signing_key.kid},
                    {"iss": issuer.url, "aud": "kube", "email": "x@e", "exp": int(time.time()) + 60}, hmac_key)
    assert _status(oidc_client, hs)["error"] == "oidc/corp: token signing algorithm not allowed"
    header, payload, _ = issuer.mint(email="x@e").split(".")
    import base64

    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert _status(oidc_client, f"{none_header}.{payload}.")["error"] == \
        "oidc/corp: token signing algorithm not allowed"


def test_leeway_accepts_small_clock_skew(issuer: OidcIssuer, oidc_client: Any) -> None:
    skewed = issuer.mint(email="x@example.com", now=time.time() - 330, expires_in=300)  # expired 30 s ago
    assert _status(oidc_client, skewed)["authenticated"] is True


def test_email_verified_is_enforced_when_configured(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, username_claim="email", require_email_verified=True)]).test_client()
    assert _status(client, issuer.mint(email="a@e", email_verified=False))["error"] == \
        "oidc/corp: email address not verified"
    assert _status(client, issuer.mint(email="a@e", email_verified=True))["user"]["username"] == "a@e"


def test_requested_audiences_are_intersected(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, audiences=["kube", "api"], require_request_audience=True)]).test_client()
    token = issuer.mint(aud=["kube", "api"])
    status = _status(client, token, audiences=["api", "other"])
    assert status["audiences"] == ["api"]
    assert _status(client, token, audiences=["other"])["error"] == \
        "oidc/corp: token audience does not match the requested audiences"


def test_discovery_and_jwks_are_fetched_once_and_refreshed_on_unknown_kid(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, jwks_min_refresh_seconds=0)]).test_client()
    for i in range(5):
        assert _status(client, issuer.mint(sub=f"user{i}"))["authenticated"] is True
    assert issuer.hits["discovery"] == 1 and issuer.hits["jwks"] == 1
    issuer.rotate("ES256", drop_old=True)
    assert _status(client, issuer.mint(sub="after-rotation"))["user"]["username"] == "after-rotation"
    assert issuer.hits["jwks"] == 2


def test_unknown_kid_after_a_refresh_is_a_rejection(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, jwks_min_refresh_seconds=0)]).test_client()
    stranger = RSAKey.generate_key(2048, parameters={"kid": "forged-kid", "alg": "RS256"})
    assert _status(client, issuer.mint(key=stranger))["error"] == "oidc/corp: token signed by an unknown key"


def test_issuer_stopped_gives_503_quickly(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer)]).test_client()
    token = issuer.mint(sub="a")
    issuer.stop()
    started = time.monotonic()
    resp = post_review(client, token)
    assert resp.status_code == 503
    assert resp.get_json()["reason"] == "ServiceUnavailable"
    assert time.monotonic() - started < 2.0


def test_slow_issuer_gives_503_within_the_configured_timeout(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, timeout=5)], review_timeout_seconds=0.5).test_client()
    issuer.delay = 1.5
    started = time.monotonic()
    resp = post_review(client, issuer.mint(sub="a"))
    elapsed = time.monotonic() - started
    issuer.delay = 0
    assert resp.status_code == 503
    assert elapsed < 1.5


def test_issuer_errors_are_503_not_cached_denials(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer)]).test_client()
    token = issuer.mint(sub="a")
    issuer.fail_status = 502
    assert post_review(client, token).status_code == 503
    issuer.fail_status = 0
    client2 = make_app([oidc_provider(issuer)]).test_client()
    assert _status(client2, token)["authenticated"] is True


def test_cached_keys_keep_serving_while_issuer_is_down(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, jwks_ttl_seconds=0, jwks_min_refresh_seconds=0)],
                      cache_ttl_seconds=0).test_client()
    assert _status(client, issuer.mint(sub="a"))["authenticated"] is True
    token = issuer.mint(sub="b")
    issuer.stop()
    assert _status(client, token)["user"]["username"] == "b"


def test_concurrent_reviews_of_one_token_make_one_upstream_call(issuer: OidcIssuer, make_app: Any) -> None:
    app = make_app([oidc_provider(issuer)])
    token = issuer.mint(sub="a")
    issuer.delay = 0.3
    results: list[int] = []

    def call() -> None:
        results.append(post_review(app.test_client(), token).status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    issuer.delay = 0
    assert results == [200] * 6
    assert issuer.hits["jwks"] == 1 and issuer.hits["discovery"] == 1
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'kagiya_authn_token_reviews_total{outcome="authenticated",provider="oidc/corp"} 6.0' in text


def test_apiserver_timeout_query_shortens_the_deadline(issuer: OidcIssuer, make_app: Any) -> None:
    """kube-apiserver may append ?timeout=…: kagiya answers 503 before the apiserver gives up."""
    from kagiya.authn.api import apiserver_timeout

    assert apiserver_timeout("30s") == 29.5 and apiserver_timeout("1m30s") == 89.5
    assert apiserver_timeout("") is None and apiserver_timeout("soon") is None and apiserver_timeout("5x") is None
    client = make_app([oidc_provider(issuer, timeout=5)], review_timeout_seconds=10).test_client()
    issuer.delay = 1.5
    started = time.monotonic()
    resp = post_review(client, issuer.mint(sub="a"), path="/authn/tokenreviews?timeout=1s")
    elapsed = time.monotonic() - started
    issuer.delay = 0
    assert resp.status_code == 503 and elapsed < 1.5


@pytest.mark.parametrize(("verified", "accepted"), [
    (False, False), ("false", False), ("no", False), (None, True), (True, True), ("true", True),
])
def test_email_username_needs_email_verified_not_false(issuer: OidcIssuer, make_app: Any, verified: Any,
                                                       accepted: bool) -> None:
    """As kube-apiserver: with `username_claim: email`, an `email_verified` that is present must be true, even
    when `require_email_verified` is off (the default); absent is accepted unless it is required."""
    client = make_app([oidc_provider(issuer, username_claim="email")]).test_client()
    status = _status(client, issuer.mint(sub="u-1", email="eve@example.com", email_verified=verified))
    assert status["authenticated"] is accepted
    if not accepted:
        assert status["error"] == "oidc/corp: email address not verified"


def test_require_email_verified_demands_the_claim(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, username_claim="email", require_email_verified=True)]).test_client()
    assert _status(client, issuer.mint(email="eve@example.com"))["error"] == \
        "oidc/corp: email address not verified"
    assert _status(client, issuer.mint(email="eve@example.com", email_verified=True))["authenticated"] is True


def test_email_verified_false_is_ignored_when_the_username_is_not_the_email(issuer: OidcIssuer,
                                                                            make_app: Any) -> None:
    client = make_app([oidc_provider(issuer)]).test_client()
    assert _status(client, issuer.mint(sub="u-9", email_verified=False))["user"]["username"] == "u-9"
