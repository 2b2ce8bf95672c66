"""The console blueprint and its guards: session cookie, CSRF, security headers, HTML error pages.

- Every `/ui/` answer carries a strict Content-Security-Policy (`default-src 'none'`; scripts, styles, images and
  fetches from this service only, no inline code; `form-action 'self'`, `frame-ancestors 'none'`), plus
  `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`.
- Every POST must carry the session's CSRF token (sign-in forms: a pre-session double-submit token) and, when the
  browser sends one, an `Origin` equal to this service's; otherwise 403 and nothing happens.
- The session cookie is HttpOnly, SameSite=Lax, Path=/ui/, and Secure (named `__Host-…`) when served over TLS.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, redirect, render_template, request, url_for

from kagiya import audit
from kagiya.config import Settings
from kagiya.console.limits import FailureLimiter
from kagiya.console.sessions import Session, SessionStore
from kagiya.errors import Forbidden, KagiyaError, Unauthorized

log = logging.getLogger("kagiya.console")
bp = Blueprint("console", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")
EXTENSION = "kagiya.console"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PRE_COOKIE = "kagiya-console-pre"
LOGIN_COOKIE = "kagiya-console-login"
#: Requests a page makes by itself; they do not count as activity for the idle expiry.
BACKGROUND_ENDPOINTS = frozenset({"console.pending_fragment"})


@dataclass
class Console:
    """What the console needs, built once per app."""

    settings: Settings
    sessions: SessionStore
    #: "oidc" when an issuer is configured (console.oidc_issuer or an authn oidc provider), else "static".
    mode: str
    oidc: dict[str, Any]
    secure_default: bool
    limiter: FailureLimiter
    #: The OIDC client (kagiya.login.oidc.Client), built on first sign-in.
    client: Any = None

    @property
    def section(self) -> Any:
        return self.settings.section("console")


def install(app: Flask, settings: Settings) -> None:
    section = settings.section("console")
    oidc = _oidc_config(settings)
    app.extensions[EXTENSION] = Console(
        settings=settings,
        sessions=SessionStore(app.extensions["kagiya.store"], section.session_idle_seconds,
                              section.session_absolute_seconds),
        mode="oidc" if oidc else "static", oidc=oidc,
        secure_default=bool(settings.tls_cert) or section.public_url.startswith("https://"),
        limiter=FailureLimiter(section.signin_failures_per_minute),
    )


def _oidc_config(settings: Settings) -> dict[str, Any]:
    section = settings.section("console")
    issuer, client_id, ca_file = section.oidc_issuer, section.oidc_client_id, section.oidc_ca_file
    if not issuer:
        for provider in settings.section("authn").providers:
            if provider.get("type") == "oidc" and provider.get("issuer"):
                issuer = provider["issuer"]
                client_id = client_id or next(iter(provider.get("audiences") or ()), "")
                ca_file = ca_file or provider.get("ca_file", "")
                break
    if not issuer:
        return {}
    if not client_id:
        from kagiya.errors import ConfigError

        raise ConfigError("console.oidc_client_id is required with console.oidc_issuer")
    secret = ""
    if section.oidc_client_secret_file:
        from pathlib import Path

        from kagiya.errors import ConfigError

        try:
            secret = Path(section.oidc_client_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"console.oidc_client_secret_file: {exc.strerror}") from None
    return {"issuer": issuer, "client_id": client_id, "client_secret": secret, "ca_file": ca_file,
            "scopes": tuple(section.oidc_scopes)}


def console() -> Console:
    return current_app.extensions[EXTENSION]


def is_secure() -> bool:
    return request.is_secure or console().secure_default


def cookie_name(base: str = "kagiya-console") -> str:
    """Under TLS every console cookie is `__Host-` prefixed (Secure, Path=/, no Domain), so a sibling subdomain or
    a plain-http answer cannot plant one: not the session, nor the sign-in state or pre-session CSRF token."""
    return f"__Host-{base}" if is_secure() else base


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    secure = is_secure()
    response.set_cookie(name, value, max_age=max_age, path="/" if name.startswith("__Host-") else "/ui/",
                        secure=secure, httponly=True, samesite="Lax")


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/" if name.startswith("__Host-") else "/ui/", secure=is_secure(),
                           httponly=True, samesite="Lax")


def current_session() -> Session | None:
    return g.get("console_session")


def signed_in() -> Session:
    """The signed-in session; raises Unauthorized (shown as a redirect to the sign-in page)."""
    session = current_session()
    if session is None:
        raise Unauthorized("sign in to use the console")
    return session


def audit_action(action: str, outcome: str, target: str = "console", actor: str = "",
                 details: dict[str, Any] | None = None) -> None:
    session = current_session()
    audit.record(current_app.extensions["kagiya.store"], actor=actor or (session.user.username if session else ""),
                 action=action, target=target, outcome=outcome, request_id=g.get("request_id", ""),
                 details=details or {})


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, session=current_session(), mode=console().mode, **context), status


@bp.before_request
def _load_session() -> None:
    if request.endpoint == "console.static":
        return
    session = console().sessions.get(request.cookies.get(cookie_name(), ""),
                                     touch=request.endpoint not in BACKGROUND_ENDPOINTS)
    g.console_session = session
    # The one authorization path: the API's own checks (callers.require_admin, bindings.decide) see this person.
    g.kagiya_caller = session.user if session else None
    if request.method == "POST":
        _check_post(session)


def _check_post(session: Session | None) -> None:
    if session is None and request.endpoint != "console.signin_static":
        raise Unauthorized("your session has ended: sign in again")
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        if _origin_key(origin) not in _own_origins():
            _refuse_forgery("the form was posted from another site")
    elif origin == "null":
        _refuse_forgery("the form was posted from an opaque origin")
    offered = request.form.get("csrf_token", "")
    if session is not None:
        expected = session.csrf
    else:
        expected = request.cookies.get(cookie_name(PRE_COOKIE), "")
    if not offered or not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
        _refuse_forgery("the form's CSRF token is missing or wrong")


def _origin_key(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in, for comparing origins."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), port or {"http": 80, "https": 443}.get(scheme)


def _own_origins() -> set[tuple[str, str, int | None]]:
    """The origins this service is reached at: the request's own, and `console.public_url`'s (behind a TLS-
    terminating proxy the browser's origin is https while the request reaching us is plain http)."""
    origins = {_origin_key(request.host_url)}
    if console().section.public_url:
        origins.add(_origin_key(console().section.public_url))
    return origins


def _refuse_forgery(why: str) -> None:
    session = current_session()
    audit_action("console.csrf", "denied", target=request.path[:200], details={"reason": why},
                 actor=session.user.username if session else "anonymous")
    raise Forbidden(f"refused: {why}; reload the page and try again")


def pre_token(response_cookies: dict[str, str]) -> str:
    """The sign-in form's double-submit token (reusing the browser's, else a new one to set)."""
    token = request.cookies.get(cookie_name(PRE_COOKIE), "")
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        response_cookies[cookie_name(PRE_COOKIE)] = token
    return token


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if is_secure():
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(KagiyaError)
def _error_page(exc: KagiyaError) -> Any:
    if isinstance(exc, Unauthorized) and current_session() is None:
        if request.path.endswith(".frag"):
            return Response("signed out", status=401, content_type="text/plain")
        return redirect(url_for("console.signin_page"))
    if exc.http_status >= 500:
        log.warning("console request failed: %s", exc.message)
    return page("error.html", exc.http_status, message=exc.message, title="Refused" if exc.http_status < 500
                else "Unavailable")


@bp.app_template_filter("age")
def _age(value: str | None) -> str:
    import datetime as dt

    if not value:
        return "-"
    then = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    seconds = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 0)} s"
