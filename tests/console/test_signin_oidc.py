"""OIDC sign-in through the test client and the issuer stand-in: PKCE, state bound to the browser, nonce, one use,
and the ID token checked by the service's own authn provider. Also: cookies under TLS, and the console switched off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.standins.oidc_issuer import OidcIssuer
from tests.support.apps import kagiya_app


@pytest.fixture
def idp() -> Iterator[OidcIssuer]:
    with OidcIssuer() as issuer:
        issuer.login_as = {"sub": "dana", "groups": ["approvers"]}
        yield issuer


@pytest.fixture
def oidc_app(make_settings: Any, token_file: Path, idp: OidcIssuer) -> Iterator[Any]:
    provider = {"type": "oidc", "name": "corp", "issuer": idp.url, "audiences": ["kagiya"]}
    settings = make_settings({"authn": {"token_file": str(token_file), "providers": [provider]}})
    with kagiya_app(settings) as app:
        yield app


def _authorize(client: Any) -> tuple[str, dict[str, str]]:
    """Start a sign-in; returns the authorize URL's query and the issuer's redirect back (path, query)."""
    start = client.get("/ui/signin/oidc")
    assert start.status_code == 302
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"].endswith("/ui/signin/callback") and "nonce" in query and "state" in query
    back = requests.get(start.headers["Location"], allow_redirects=False, timeout=5)
    answer = urlsplit(back.headers["Location"])
    return answer.path, {k: v[0] for k, v in parse_qs(answer.query).items()}


def test_sign_in_takes_username_and_groups_from_the_verified_id_token(oidc_app: Any) -> None:
    client = oidc_app.test_client()
    page = client.get("/ui/signin").get_data(as_text=True)
    assert "Local mode" not in page and 'name="token"' not in page
    path, query = _authorize(client)
    resp = client.get(path, query_string=query)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/ui/requests")
    assert "dana" in client.get("/ui/requests").get_data(as_text=True)
    # the static form is not offered in OIDC mode, even to someone holding a token-file token
    assert client.post("/ui/signin", data={"token": "admin-token-0001"}).status_code in (400, 403)


def test_a_callback_from_another_browser_or_a_replay_is_refused(oidc_app: Any) -> None:
    victim, attacker = oidc_app.test_client(), oidc_app.test_client()
    path, query = _authorize(attacker)
    victim.get("/ui/signin/oidc")  # the victim has a login cookie of their own
    resp = victim.get(path, query_string=query)  # login CSRF: the attacker's code in the victim's browser
    assert resp.status_code == 400 and "does not belong to this browser" in resp.get_data(as_text=True)
    assert victim.get("/ui/requests").status_code == 302
    assert attacker.get(path, query_string=query).status_code == 302
    assert attacker.get("/ui/requests").status_code == 200
    attacker.get("/ui/signin/oidc")
    attacker.set_cookie("kagiya-console-login", query["state"], path="/ui/")
    again = attacker.get(path, query_string=query)  # same state and code once more
    assert again.status_code == 400 and "unknown or expired" in again.get_data(as_text=True)


def test_an_id_token_the_provider_rejects_gives_no_session(oidc_app: Any, idp: OidcIssuer) -> None:
    idp.login_as = {"sub": "dana", "groups": ["approvers"], "aud": "someone-else"}
    client = oidc_app.test_client()
    path, query = _authorize(client)
    resp = client.get(path, query_string=query)
    assert resp.status_code == 400 and 'role="alert"' in resp.get_data(as_text=True)
    assert client.get("/ui/requests").status_code == 302


def test_under_tls_the_cookie_is_secure_and_host_only(make_settings: Any, token_file: Path) -> None:
    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "console": {"public_url": "https://kagiya.example.com"}})
    with kagiya_app(settings) as app:
        client = app.test_client()
        page = client.get("/ui/signin")
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        from tests.console.conftest import csrf_of

        resp = client.post("/ui/signin", data={"token": "dev-token-0002",
                                               "csrf_token": csrf_of(page.get_data(as_text=True))})
        cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("__Host-kagiya-console="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/;" in cookie


def test_the_sign_in_page_shows_no_words_taken_from_its_url(oidc_app: Any) -> None:
    """Content spoofing: a link to this service must not make its sign-in page say what the link's author wants."""
    lure = "Your account is locked. Call +1 555 0100 to unlock it"
    for client_path in ("/ui/signin", "/ui/signin/callback"):
        resp = oidc_app.test_client().get(client_path, query_string={"error": lure, "state": "x"})
        assert lure not in resp.get_data(as_text=True)


def test_behind_a_tls_proxy_the_public_origin_is_accepted_and_others_refused(make_settings: Any,
                                                                            token_file: Path) -> None:
    """The browser's Origin is the public https URL while the request reaching the service is plain http."""
    from tests.console.conftest import csrf_of

    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "console": {"public_url": "https://kagiya.example.com"}})
    with kagiya_app(settings) as app:
        client = app.test_client()
        token = csrf_of(client.get("/ui/signin").get_data(as_text=True))
        form = {"token": "dev-token-0002", "csrf_token": token}
        for forged in ("https://evil.example.com", "http://kagiya.example.com", "https://kagiya.example.com:8443"):
            assert client.post("/ui/signin", data=form, headers={"Origin": forged}).status_code == 403, forged
        resp = client.post("/ui/signin", data=form, headers={"Origin": "https://kagiya.example.com"})
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/ui/requests")


def test_under_tls_a_planted_sign_in_state_cookie_is_not_honoured(make_settings: Any, token_file: Path,
                                                                   idp: OidcIssuer) -> None:
    """Login CSRF by cookie tossing: a sibling subdomain (or a plain-http answer) can set `kagiya-console-login`
    but never a `__Host-` cookie; under TLS only the latter binds a sign-in answer to the browser."""
    provider = {"type": "oidc", "name": "corp", "issuer": idp.url, "audiences": ["kagiya"]}
    settings = make_settings({"authn": {"token_file": str(token_file), "providers": [provider]},
                              "console": {"public_url": "https://kagiya.example.com"}})
    with kagiya_app(settings) as app:
        attacker, victim = app.test_client(), app.test_client()
        start = attacker.get("/ui/signin/oidc")
        cookie = next(c for c in start.headers.getlist("Set-Cookie") if "kagiya-console-login=" in c)
        assert cookie.startswith("__Host-kagiya-console-login=") and "Secure" in cookie and "Path=/;" in cookie
        back = requests.get(start.headers["Location"], allow_redirects=False, timeout=5)
        answer = urlsplit(back.headers["Location"])
        query = {k: v[0] for k, v in parse_qs(answer.query).items()}
        victim.set_cookie("kagiya-console-login", query["state"], path="/ui/")  # tossed by the attacker
        resp = victim.get(answer.path, query_string=query)
        assert resp.status_code == 400 and victim.get("/ui/requests").status_code == 302
        page = app.test_client().get("/ui/signin")
        assert any(c.startswith("__Host-kagiya-console-pre=") for c in page.headers.getlist("Set-Cookie"))


def test_unauthenticated_sign_in_starts_cannot_grow_the_store_without_bound(oidc_app: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from kagiya.console import sessions

    monkeypatch.setattr(sessions, "MAX_PENDING_LOGINS", 5)
    client = oidc_app.test_client()
    assert [client.get("/ui/signin/oidc").status_code for _ in range(5)] == [302] * 5
    refused = client.get("/ui/signin/oidc")
    assert refused.status_code == 429 and "in progress" in refused.get_data(as_text=True)
    with oidc_app.extensions["kagiya.store"].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sessions.logins)).scalar_one() == 5


def test_the_console_can_be_switched_off(make_settings: Any, token_file: Path) -> None:
    settings = make_settings({"authn": {"token_file": str(token_file)}, "console": {"enabled": False}})
    with kagiya_app(settings) as app:
        assert app.test_client().get("/ui/signin").status_code == 404

