"""Fixtures for the authn suite: an OIDC issuer stand-in, apps with providers, and TokenReview helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.standins.oidc_issuer import OidcIssuer

V1 = "authentication.k8s.io/v1"
V1BETA1 = "authentication.k8s.io/v1beta1"


def review_body(token: str, api_version: str = V1, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    return {"apiVersion": api_version, "kind": "TokenReview", "spec": spec}


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(client_id="kube") as idp:
        yield idp


@pytest.fixture
def make_app(make_settings: Any, token_file: Path) -> Iterator[Callable[..., Any]]:
    """`make_app(providers=[...], **authn)` -> a Flask app (token file configured unless token_file=None)."""
    made: list[Any] = []

    def make(providers: list[dict[str, Any]] | None = None, **authn: Any) -> Any:
        from kagiya.web import create_app

        section: dict[str, Any] = {"token_file": str(token_file), "providers": providers or []}
        section.update(authn)
        if section["token_file"] is None:
            section["token_file"] = ""
        app = create_app(make_settings({"authn": section}))
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield make
    for app in made:
        authenticator = app.extensions.get("kagiya.authn")
        if authenticator is not None:
            authenticator.close(wait=True)  # reviews still waiting on a slow stand-in finish inside the test
        app.extensions["kagiya.store"].dispose()


def oidc_provider(issuer: OidcIssuer, name: str = "corp", **options: Any) -> dict[str, Any]:
    return {"type": "oidc", "name": name, "issuer": issuer.url, "audiences": ["kube"], "timeout": 1,
            **options}


def post_review(client: Any, token: str, path: str = "/authn/tokenreviews", **kw: Any) -> Any:
    return client.post(path, json=review_body(token, **kw))
