"""The console's guards and rules through Flask's test client (fast; the browser tests cover the same flows live).

Every refusal here is the API's own: the console calls `bindings.decide`, `bindings.revoke`, `require_admin`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kagiya.console.blueprint import CSP
from tests.conftest import bearer
from tests.console.conftest import csrf_of, file_request, sign_in


def _audit(client: Any, **query: str) -> list[dict[str, Any]]:
    resp = client.get("/v1/audit", query_string=query, headers=bearer("admin-token-0001"))
    return resp.get_json()["items"]


def test_pages_need_a_session_and_carry_a_strict_csp(console_app: Any) -> None:
    client = console_app.test_client()
    resp = client.get("/ui/requests")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/ui/signin")
    page = client.get("/ui/signin")
    assert page.headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
    assert page.headers["X-Frame-Options"] == "DENY"
    html = page.get_data(as_text=True)
    assert "Local mode" in html
    assert "<script>" not in html and "style=" not in html and "http://" not in html.split("<body>")[1]
    # a bearer token does not open the console: only a session does
    assert client.get("/ui/requests", headers=bearer("admin-token-0001")).status_code == 302


def test_static_sign_in_sets_a_guarded_cookie_and_never_stores_the_token(console_app: Any) -> None:
    client = console_app.test_client()
    page = client.get("/ui/signin")
    resp = client.post("/ui/signin", data={"token": "approver-token-0003",
                                           "csrf_token": csrf_of(page.get_data(as_text=True))})
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("kagiya-console="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui/" in cookie
    assert "approver-token-0003" not in cookie
    assert "carol" in client.get("/ui/requests").get_data(as_text=True)
    store = console_app.extensions["kagiya.store"]
    with store.connect() as conn:
        dump = "\n".join(str(tuple(r)) for t in ("console_sessions", "audit_events")
                         for r in conn.exec_driver_sql(f"SELECT * FROM {t}"))  # noqa: S608 - fixed names
    assert "approver-token-0003" not in dump
    assert [e["actor"] for e in _audit(client, action="console.signin")] == ["carol"]


def test_wrong_token_is_refused_and_audited(console_app: Any) -> None:
    client = console_app.test_client()
    page = client.get("/ui/signin")
    resp = client.post("/ui/signin", data={"token": "nope-0000", "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert resp.status_code == 401 and "not accepted" in resp.get_data(as_text=True)
    assert _audit(client, action="console.signin")[0]["outcome"] == "denied"


def test_guessing_static_tokens_is_limited_per_address(console_app: Any) -> None:
    client = console_app.test_client()
    csrf = csrf_of(client.get("/ui/signin").get_data(as_text=True))
    limit = console_app.extensions["kagiya.settings"].section("console").signin_failures_per_minute
    for i in range(limit):
        assert client.post("/ui/signin", data={"token": f"guess-{i}", "csrf_token": csrf}).status_code == 401
    resp = client.post("/ui/signin", data={"token": "approver-token-0003", "csrf_token": csrf})
    assert resp.status_code == 429 and "too many failed sign-ins" in resp.get_data(as_text=True)
    other = console_app.test_client()  # another address is not affected
    other.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    sign_in(other, "approver-token-0003")
    assert "carol" in other.get("/ui/requests").text


def test_post_without_or_with_a_wrong_csrf_token_changes_nothing(console_app: Any) -> None:
    client = console_app.test_client()
    rid = file_request(client)
    sign_in(client, "approver-token-0003")
    for data in ({}, {"csrf_token": "forged"}):
        resp = client.post(f"/ui/requests/{rid}/approve", data=data)
        assert resp.status_code == 403 and "CSRF" in resp.get_data(as_text=True)
    token = csrf_of(client.get("/ui/requests").get_data(as_text=True))
    resp = client.post(f"/ui/requests/{rid}/approve", data={"csrf_token": token},
                       headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    assert client.get(f"/v1/iam/binding-requests/{rid}", headers=bearer("dev-token-0002")).get_json()["state"] \
        == "pending"
    assert {e["outcome"] for e in _audit(client, action="console.csrf")} == {"denied"}


def test_approve_deny_and_self_approval_follow_the_api_rules(console_app: Any) -> None:
    client = console_app.test_client()
    mine = file_request(client, "approver-token-0003", sa="batch")
    other = file_request(client)
    third = file_request(client, sa="cron")
    csrf = sign_in(client, "approver-token-0003")
    resp = client.post(f"/ui/requests/{mine}/approve", data={"csrf_token": csrf})
    assert resp.status_code == 403 and "may not approve their own request" in resp.get_data(as_text=True)
    resp = client.post(f"/ui/requests/{third}/deny", data={"csrf_token": csrf, "comment": ""})
    assert resp.status_code == 400  # a denial needs a comment
    assert client.post(f"/ui/requests/{other}/approve", data={"csrf_token": csrf, "comment": "ok"}).status_code == 302
    assert client.post(f"/ui/requests/{third}/deny", data={"csrf_token": csrf, "comment": "too wide"}) \
        .status_code == 302
    got = {r["id"]: r for r in client.get("/v1/iam/binding-requests", headers=bearer("dev-token-0002"))
           .get_json()["items"]}
    assert got[other]["state"] == "approved" and got[other]["decidedBy"] == "carol"
    assert got[third]["state"] == "denied" and got[third]["decisionReason"] == "too wide"
    actions = {(e["action"], e["actor"], e["outcome"]) for e in _audit(client, action="iam.request")}
    assert ("iam.request.approve", "carol", "denied") in actions  # the refused self-approval, as carol
    assert ("iam.request.approve", "carol", "approved") in actions
    assert ("iam.request.deny", "carol", "success") in actions


def test_a_developer_is_no_approver_and_cannot_read_the_audit_log(console_app: Any) -> None:
    client = console_app.test_client()
    rid = file_request(client, "approver-token-0003")
    csrf = sign_in(client, "dev-token-0002")
    resp = client.post(f"/ui/requests/{rid}/approve", data={"csrf_token": csrf})
    assert resp.status_code == 403 and "approver groups: approvers" in resp.get_data(as_text=True)
    resp = client.get("/ui/audit")
    assert resp.status_code == 403 and "may not read the audit log" in resp.get_data(as_text=True)


def test_revoke_needs_a_reason_and_is_audited_as_the_person(console_app: Any) -> None:
    client = console_app.test_client()
    rid = file_request(client)
    csrf = sign_in(client, "approver-token-0003")
    client.post(f"/ui/requests/{rid}/approve", data={"csrf_token": csrf})
    bid = client.get(f"/v1/iam/binding-requests/{rid}", headers=bearer("dev-token-0002")).get_json()["bindingId"]
    assert client.post(f"/ui/bindings/{bid}/revoke", data={"csrf_token": csrf}).status_code == 400
    assert client.post(f"/ui/bindings/{bid}/revoke", data={"csrf_token": csrf, "reason": "left team"}) \
        .status_code == 302
    assert client.get(f"/v1/iam/bindings/{bid}", headers=bearer("dev-token-0002")).get_json()["state"] == "revoked"
    event = _audit(client, action="iam.binding.revoke")[-1]
    assert event["actor"] == "carol" and event["details"]["reason"] == "left team"


def test_sessions_end_when_idle_too_long_or_past_their_absolute_age(console_app: Any) -> None:
    from kagiya.console.blueprint import EXTENSION

    sessions = console_app.extensions[EXTENSION].sessions
    now = [dt.datetime.now(dt.UTC)]
    sessions.clock = lambda: now[0]
    client = console_app.test_client()
    sign_in(client, "approver-token-0003")
    now[0] += dt.timedelta(seconds=sessions.idle.total_seconds() - 5)
    assert client.get("/ui/requests").status_code == 200
    now[0] += dt.timedelta(seconds=sessions.idle.total_seconds() + 1)
    assert client.get("/ui/requests").status_code == 302  # idle
    sign_in(client, "approver-token-0003")
    for _ in range(3):  # an open tab polling the queue is not activity: it still reaches the idle expiry
        now[0] += sessions.idle / 2
        client.get("/ui/requests/pending.frag")
    assert client.get("/ui/requests/pending.frag").status_code == 401
    assert client.get("/ui/requests").status_code == 302
    sign_in(client, "approver-token-0003")
    for _ in range(int(sessions.absolute / sessions.idle) + 1):  # busy all day: still ends at the absolute age
        now[0] += sessions.idle - dt.timedelta(seconds=10)
        client.get("/ui/requests")
    assert client.get("/ui/requests").status_code == 302


def test_a_post_after_the_session_ended_asks_to_sign_in_again(console_app: Any) -> None:
    client = console_app.test_client()
    rid = file_request(client)
    csrf = sign_in(client, "approver-token-0003")
    client.delete_cookie("kagiya-console", path="/ui/")
    resp = client.post(f"/ui/requests/{rid}/approve", data={"csrf_token": csrf})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/ui/signin")
    assert client.get(f"/v1/iam/binding-requests/{rid}", headers=bearer("dev-token-0002")).get_json()["state"] \
        == "pending"


def test_sign_out_ends_the_session_everywhere(console_app: Any) -> None:
    client = console_app.test_client()
    csrf = sign_in(client, "approver-token-0003")
    cookie = client.get_cookie("kagiya-console", path="/ui/")
    assert cookie is not None
    assert client.post("/ui/signout", data={"csrf_token": csrf}).status_code == 302
    other = console_app.test_client()
    other.set_cookie("kagiya-console", cookie.value, path="/ui/")
    assert other.get("/ui/requests").status_code == 302


def test_audit_page_filters_pages_and_shows_one_event(console_app: Any) -> None:
    client = console_app.test_client()
    for sa in ("a1", "a2", "a3"):
        file_request(client, sa=sa)
    sign_in(client, "admin-token-0001")
    html = client.get("/ui/audit", query_string={"action": "iam.request", "actor": "bob"}).get_data(as_text=True)
    assert html.count('class="event"') == 3 and "console.signin" not in html
    eid = _audit(client, action="iam.request.create")[0]["id"]
    detail = client.get(f"/ui/audit/{eid}").get_data(as_text=True)
    assert "iam.request.create" in detail and "team-a" in detail
    assert client.get("/ui/audit", query_string={"since": "yesterday"}).status_code == 400


def test_markup_in_reasons_and_comments_is_shown_as_text_everywhere(console_app: Any) -> None:
    """XSS: a requester's reason and an approver's comment are someone else's words on an approver's page."""
    lure = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    client = console_app.test_client()
    rid = file_request(client, reason=lure)
    csrf = sign_in(client, "admin-token-0001")
    for path in ("/ui/requests", "/ui/requests/pending.frag"):
        html = client.get(path).get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and lure not in html and "<img src=x" not in html
    client.post(f"/ui/requests/{rid}/deny", data={"csrf_token": csrf, "comment": lure})
    eid = _audit(client, action="iam.request.deny")[0]["id"]
    html = client.get(f"/ui/audit/{eid}").get_data(as_text=True)
    assert lure not in html and "<script>" not in html.split('<pre class="explain">')[1]
