"""Signing in and out of the console.

OIDC mode (an issuer is configured): authorization code flow with PKCE S256, `state` bound to this browser by a
short-lived HttpOnly cookie and `nonce` checked in the ID token (RFC 6749 §4.1, RFC 7636, OpenID Connect Core
§3.1). The ID token is then checked by the service's own authn providers (`kagiya.callers`: signature, issuer,
audience, expiry, claim mappings and prefixes), so the console sees the same username and groups as the API.
Local mode (no issuer, `make run`): a form takes a static token from the token file, checked the same way; it is
marked as local on every page. Neither token is stored: the session keeps only who signed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from typing import Any

from flask import Response, current_app, g, make_response, redirect, request, url_for
from werkzeug.wrappers import Response as ResponseBase

from kagiya.callers import resolver_of
from kagiya.console.blueprint import (
    LOGIN_COOKIE,
    PRE_COOKIE,
    audit_action,
    bp,
    clear_cookie,
    console,
    cookie_name,
    current_session,
    page,
    pre_token,
    set_cookie,
    signed_in,
)
from kagiya.errors import BadRequest, TooManyRequests, Unauthorized
from kagiya.login.oidc import Client, GrantRejected


def _client() -> Client:
    """The app's OIDC client, built on first use (its discovery document is cached inside)."""
    state = console()
    if state.client is None:
        cfg = state.oidc
        state.client = Client(cfg["issuer"], cfg["client_id"], cfg["client_secret"], scopes=cfg["scopes"],
                              ca_file=cfg["ca_file"])
    return state.client


def _redirect_uri() -> str:
    base = console().section.public_url.rstrip("/") or request.host_url.rstrip("/")
    return base + url_for("console.oidc_callback")


def _start_session(user: Any, mode: str) -> ResponseBase:
    sid, session = console().sessions.create(user, mode)
    g.console_session = session
    audit_action("console.signin", "success", details={"mode": mode, "uid": user.uid})
    response = make_response(redirect(url_for("console.requests_page")))
    set_cookie(response, cookie_name(), sid, console().section.session_absolute_seconds)
    clear_cookie(response, cookie_name(PRE_COOKIE))
    clear_cookie(response, cookie_name(LOGIN_COOKIE))
    return response


@bp.get("/")
def home() -> ResponseBase:
    return redirect(url_for("console.requests_page" if current_session() else "console.signin_page"))


@bp.get("/signin")
def signin_page() -> Any:
    if current_session() is not None:
        return redirect(url_for("console.requests_page"))
    return _signin_form()


def _signin_form(error: str = "", status: int = 200) -> Response:
    """The sign-in page. An error is only ever one this service found: never text taken from the URL, so nobody
    can send a link that shows their own words ("your account is locked, call ...") on this service's page."""
    cookies: dict[str, str] = {}
    token = pre_token(cookies)
    issuer = console().oidc.get("issuer", "")
    body, status = page("signin.html", status, title="Sign in", csrf_token=token, issuer=issuer, error=error,
                        no_users=not console().settings.section("authn").token_file)
    response = make_response(body, status)
    for name, value in cookies.items():
        set_cookie(response, name, value, 600)
    return response


@bp.post("/signin")
def signin_static() -> Any:
    """Local mode only: a token-file token, checked by the same resolver as the API's bearer tokens."""
    if console().mode != "static":
        raise BadRequest("this console signs in through the OIDC issuer, not with a token")
    limiter, address = console().limiter, request.remote_addr or "-"
    if limiter.blocked(address):
        raise TooManyRequests("too many failed sign-ins from your address: wait a minute and try again")
    token = request.form.get("token", "").strip()
    try:
        user = resolver_of(current_app).resolve(token)
    except Unauthorized:
        limiter.failed(address)
        audit_action("console.signin", "denied", actor="anonymous", details={"mode": "static"})
        return page("signin.html", 401, title="Sign in", issuer="", error="That token was not accepted.",
                    csrf_token=request.cookies.get(cookie_name(PRE_COOKIE), ""))
    return _start_session(user, "static")


@bp.get("/signin/oidc")
def oidc_start() -> ResponseBase:
    if console().mode != "oidc":
        raise BadRequest("no OIDC issuer is configured for the console")
    client = _client()
    redirect_uri = _redirect_uri()
    state, nonce, verifier = console().sessions.begin_login(redirect_uri)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri,
             "scope": " ".join(client.scopes), "state": state, "nonce": nonce, "code_challenge": challenge,
             "code_challenge_method": "S256"}
    response = make_response(redirect(client.endpoint("authorization_endpoint") + "?" +
                                      urllib.parse.urlencode(query)))
    set_cookie(response, cookie_name(LOGIN_COOKIE), state, 600)
    return response


@bp.get("/signin/callback")
def oidc_callback() -> Any:
    if console().mode != "oidc":
        raise BadRequest("no OIDC issuer is configured for the console")
    state = request.args.get("state", "")
    bound = request.cookies.get(cookie_name(LOGIN_COOKIE), "")
    if not state or not bound or not hmac.compare_digest(state.encode(), bound.encode()):
        return _failed("this sign-in answer does not belong to this browser; start again")
    attempt = console().sessions.finish_login(state)
    if attempt is None:
        return _failed("this sign-in attempt is unknown or expired; start again")
    if "code" not in request.args:
        return _failed(f"the issuer refused the sign-in ({request.args.get('error', 'no code')[:64]})")
    client = _client()
    try:
        entry = client.token_request({"grant_type": "authorization_code", "code": request.args["code"],
                                      "redirect_uri": attempt["redirect_uri"], "code_verifier": attempt["verifier"]},
                                     attempt["nonce"])
        user = resolver_of(current_app).resolve(entry["id_token"])
    except (GrantRejected, Unauthorized, BadRequest) as exc:
        return _failed(exc.message)
    return _start_session(user, "oidc")


def _failed(why: str) -> Any:
    audit_action("console.signin", "denied", actor="anonymous", details={"mode": "oidc", "reason": why})
    response = _signin_form(why, 400)
    clear_cookie(response, cookie_name(LOGIN_COOKIE))
    return response


@bp.post("/signout")
def signout() -> ResponseBase:
    session = signed_in()
    audit_action("console.signout", "success", details={"mode": session.mode})
    console().sessions.delete(request.cookies.get(cookie_name(), ""))
    response = make_response(redirect(url_for("console.signin_page")))
    clear_cookie(response, cookie_name())
    return response
