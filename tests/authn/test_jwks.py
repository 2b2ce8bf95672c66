"""JWKS fetching after failures and key rotation (issue 11.2), against the OIDC issuer stand-in.

One failed fetch used to mean ~30 s of 503s; a key rotated seconds ago was denied as a cacheable
`authenticated: false`. Now a failed fetch is retried after a capped exponential backoff (≤ 2 s, one fetch at a
time), an unknown kid refetches at most once per `jwks_min_refresh_seconds` (5 s) per issuer, and while that refetch
is impossible the answer is 503, never a denial the apiserver would cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from kagiya.authn.providers._jwks import RETRY_MAX, KeyStore, retry_delay
from kagiya.authn.providers.oidc import OidcOptions
from kagiya.errors import UpstreamUnavailable
from tests.authn.conftest import oidc_provider, post_review
from tests.standins.oidc_issuer import OidcIssuer


class FakeClock:
    """Monotonic and wall time that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall_now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(issuer: OidcIssuer, clock: FakeClock) -> Iterator[KeyStore]:
    keys = KeyStore(OidcOptions(issuer=issuer.url, audiences=("kube",), timeout=2), clock=clock, wall=clock.wall)
    yield keys
    keys.session.close()


def fetches(issuer: OidcIssuer) -> int:
    """Requests that reached the issuer's discovery or JWKS endpoints, answered or refused."""
    return issuer.hits["discovery"] + issuer.hits["jwks"] + issuer.hits["refused"]


def test_one_failed_fetch_is_retried_within_two_seconds_through_the_webhook(issuer: OidcIssuer,
                                                                            make_app: Any) -> None:
    client = make_app([oidc_provider(issuer)], cache_negative_ttl_seconds=0).test_client()
    token = issuer.mint(sub="a")
    issuer.fail_status = 500
    assert post_review(client, token).status_code == 503
    issuer.fail_status = 0
    deadline = time.monotonic() + 2.5
    while (resp := post_review(client, token)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resp.status_code == 200 and resp.get_json()["status"]["user"]["username"] == "a"
    assert issuer.hits["refused"] == 1  # the failure was asked once, not on every review during the backoff


def test_backoff_is_capped_exponential(issuer: OidcIssuer, store: KeyStore, clock: FakeClock) -> None:
    assert [retry_delay(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    issuer.fail_status = 500
    asked = []
    for _ in range(8):  # 8 failures in a row; between them, reviews inside the backoff do not ask the issuer
        before = fetches(issuer)
        with pytest.raises(UpstreamUnavailable):
            store.key_for("k1", "RS256")
        asked.append(fetches(issuer) - before)
        delay = retry_delay(store.failures)
        assert delay <= RETRY_MAX
        clock.advance(delay - 0.01)
        with pytest.raises(UpstreamUnavailable):
            store.key_for("k1", "RS256")  # still backing off: no call
        clock.advance(0.01)
    assert asked == [1] * 8 and issuer.hits["refused"] == 8
    issuer.fail_status = 0
    assert store.key_for(issuer.signing_key.kid, "RS256") is not None  # recovered at most 2 s after the issuer
    assert store.failures == 0


def test_concurrent_misses_make_one_fetch(issuer: OidcIssuer, store: KeyStore) -> None:
    issuer.delay = 0.3
    found: list[Any] = []

    def look() -> None:
        found.append(store.key_for(issuer.signing_key.kid, "RS256"))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and all(k is not None for k in found)
    assert issuer.hits["discovery"] == 1 and issuer.hits["jwks"] == 1


def test_unknown_kid_refetches_at_most_once_per_five_seconds(issuer: OidcIssuer, store: KeyStore,
                                                              clock: FakeClock) -> None:
    assert store.key_for(issuer.signing_key.kid, "RS256") is not None
    assert issuer.hits["jwks"] == 1
    for second in range(1, 11):  # a forged kid every second, issued now: 503 while no refetch is allowed
        clock.advance(1)
        if second % 5:
            with pytest.raises(UpstreamUnavailable):
                store.key_for("forged", "RS256", issued_at=clock.wall())
        else:
            assert store.key_for("forged", "RS256", issued_at=clock.wall()) is None  # just refetched: definitive
        assert issuer.hits["jwks"] == 1 + second // 5
    # A forged kid on a token older than the keys we hold is a definitive "unknown key" without any call.
    clock.advance(1)
    assert store.key_for("forged", "RS256", issued_at=clock.wall() - 3600) is None
    assert issuer.hits["jwks"] == 3


def test_rotated_key_is_503_until_refetched_then_accepted(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer, jwks_min_refresh_seconds=0.5)]).test_client()
    assert post_review(client, issuer.mint(sub="before")).get_json()["status"]["authenticated"] is True
    issuer.rotate()
    rotated = issuer.mint(sub="after")
    resp = post_review(client, rotated)
    # Keys were fetched moments ago, so no refetch yet: "retry" (503), not a denial the apiserver would cache.
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert issuer.hits["jwks"] == 1
    time.sleep(0.6)
    assert post_review(client, rotated).get_json()["status"]["user"]["username"] == "after"
    assert issuer.hits["jwks"] == 2


def test_forged_kid_is_a_denial_once_the_keys_are_newer_than_the_token(issuer: OidcIssuer, make_app: Any) -> None:
    client = make_app([oidc_provider(issuer)]).test_client()
    assert post_review(client, issuer.mint(sub="a")).status_code == 200
    stranger = RSAKey.generate_key(2048, parameters={"kid": "forged-kid", "alg": "RS256"})
    old = issuer.mint(key=stranger, sub="x", now=time.time() - 600, expires_in=3600)
    for _ in range(3):
        resp = post_review(client, old)
        assert resp.status_code == 200
        assert resp.get_json()["status"] == {"authenticated": False,
                                             "error": "oidc/corp: token signed by an unknown key"}
    assert issuer.hits["jwks"] == 1


def test_a_key_the_refreshed_jwks_no_longer_publishes_is_refused_at_once(issuer: OidcIssuer, store: KeyStore,
                                                                          clock: FakeClock) -> None:
    """Stale keys serve only while the issuer cannot be asked: the review whose TTL refresh brings a key set
    without the token's kid must not verify with the removed (revoked) key."""
    old_kid = issuer.signing_key.kid
    assert store.key_for(old_kid, "RS256") is not None
    issuer.rotate(drop_old=True)
    clock.advance(store.opts.jwks_ttl_seconds + 1)
    assert store.key_for(old_kid, "RS256") is None
    assert issuer.hits["jwks"] == 2
    # And while the issuer is down, a known key keeps verifying past its TTL.
    clock.advance(store.opts.jwks_ttl_seconds + 1)
    issuer.fail_status = 500
    assert store.key_for(issuer.signing_key.kid, "RS256") is not None


def test_a_token_without_kid_verifies_against_each_key_of_its_algorithm(issuer: OidcIssuer, make_app: Any) -> None:
    """An issuer that omits `kid` publishes two keys while it rotates: kube-apiserver (go-oidc) tries each key, so
    tokens signed by the old and by the new key both verify; a stranger's kid-less token is still refused."""
    from joserfc import jwt

    def kidless(key: RSAKey, sub: str) -> str:
        now = int(time.time())
        return jwt.encode({"alg": "RS256"}, {"iss": issuer.url, "aud": "kube", "sub": sub, "iat": now, "nbf": now,
                                             "exp": now + 300}, key)

    old = issuer.signing_key
    issuer.rotate()  # both keys published
    client = make_app([oidc_provider(issuer)]).test_client()
    for key, sub in ((old, "old"), (issuer.signing_key, "new")):
        status = post_review(client, kidless(key, sub)).get_json()["status"]
        assert status.get("user", {}).get("username") == sub, status
    stranger = RSAKey.generate_key(2048, parameters={"alg": "RS256"})
    assert post_review(client, kidless(stranger, "x")).get_json()["status"] == {
        "authenticated": False, "error": "oidc/corp: invalid token signature"}
    assert issuer.hits["jwks"] == 1
