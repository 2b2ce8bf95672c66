"""Who is calling the HTTP API: one function, `caller_from_request`, used by every capability.

A caller presents `Authorization: Bearer <token>`. The token is checked by the resolver's providers in order
(the static token file first, as Guard does; the authn capability appends its identity providers). A missing
or unknown token is 401; `require_groups` turns "known but not allowed" into 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask, current_app, g, request

from kagiya.authn.providers.base import Rejected, User
from kagiya.config import Settings
from kagiya.errors import Forbidden, Unauthorized

log = logging.getLogger("kagiya.callers")

#: A provider takes a token and answers a User or a Rejected; raises UpstreamUnavailable when it cannot tell.
Authenticator = Callable[[str], "User | Rejected"]
MAX_TOKEN_BYTES = 16 * 1024
EXTENSION = "kagiya.caller_resolver"


class CallerResolver:
    """An ordered chain of authenticators; the first that returns a User wins."""

    def __init__(self) -> None:
        self._chain: list[tuple[str, Authenticator]] = []

    def add(self, name: str, authenticator: Authenticator) -> None:
        self._chain.append((name, authenticator))

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self._chain]

    def resolve(self, token: str) -> User:
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("a bearer token is required")
        for _name, authenticate in self._chain:
            result = authenticate(token)
            if isinstance(result, User):
                return result
        raise Unauthorized("invalid bearer token")


def init_app(app: Flask, settings: Settings) -> None:
    """Install the resolver: the static token file first, then the default chain of configured providers.

    Every provider, the token file included, is built once by `kagiya.authn.routing.install` and shared with the
    TokenReview webhook (one file watcher, one upstream client per provider)."""
    resolver = CallerResolver()
    authn = settings.section("authn")
    if authn.token_file or authn.providers:
        from kagiya.authn import routing

        authenticator = routing.install(app, settings)
        token_file = authenticator.providers.token_file
        if token_file is not None:
            resolver.add(token_file.provider.name, _direct(token_file.provider))
        route = authenticator.providers.default_route(include_token_file=False)
        if route.entries:
            # Failed-review limit per caller address: HTTP API bearer tokens come from many sources.
            resolver.add(
                "authn-providers",
                lambda token: authenticator.review(route, token, (), f"api:{request.remote_addr}").decision.result,
            )
    app.extensions[EXTENSION] = resolver


def _direct(provider: Any) -> Authenticator:
    return lambda token: provider.authenticate(token)


def resolver_of(app: Any) -> CallerResolver:
    return app.extensions[EXTENSION]


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def caller_from_request() -> User:
    """The authenticated caller of the current request; raises Unauthorized. Cached on `flask.g`."""
    cached = g.get("kagiya_caller")
    if cached is not None:
        return cached
    caller = resolver_of(current_app).resolve(bearer_token())
    g.kagiya_caller = caller
    return caller


def require_groups(groups: Sequence[str], action: str = "do this") -> User:
    """The caller, if they belong to one of `groups`; else 403 naming what was refused."""
    caller = caller_from_request()
    if not caller.in_any(groups):
        raise Forbidden(f"user {caller.username!r} may not {action}")
    return caller


def require_admin(action: str = "do this") -> User:
    settings: Settings = current_app.extensions["kagiya.settings"]
    return require_groups(settings.admin_groups, action)
