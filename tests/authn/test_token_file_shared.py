"""The static token file: one provider instance shared by the webhook and the HTTP API's bearer-token check,
which keeps serving the last good file through a broken edit (non-UTF-8 bytes, bad CSV)."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest

from kagiya.authn.providers.tokenfile import TokenFileProvider
from tests.authn.conftest import oidc_provider, post_review
from tests.conftest import bearer
from tests.standins.oidc_issuer import OidcIssuer


def _touch(path: Path, step: int) -> None:
    """Give the file a distinct mtime so the reloader sees the edit even within one clock tick."""
    os.utime(path, ns=(1, 10**18 + step))


def _providers_for(path: Path) -> list[TokenFileProvider]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, TokenFileProvider) and o.path == path]


@pytest.mark.parametrize("with_providers", [False, True])
def test_one_token_file_provider_serves_the_webhook_and_the_api(make_app: Any, token_file: Path,
                                                                 issuer: OidcIssuer, with_providers: bool) -> None:
    app = make_app([oidc_provider(issuer)] if with_providers else [])
    assert len(_providers_for(token_file)) == 1
    client = app.test_client()
    token_file.write_text('new-admin-0009,zoe,uid-zoe,"kagiya:admins"\n')
    _touch(token_file, 1)
    assert client.get("/v1/audit", headers=bearer("new-admin-0009")).status_code == 200
    assert post_review(client, "new-admin-0009").get_json()["status"]["user"]["username"] == "zoe"
    assert client.get("/v1/audit", headers=bearer("admin-token-0001")).status_code == 401
    assert post_review(client, "admin-token-0001").get_json()["status"]["authenticated"] is False


@pytest.mark.parametrize("broken", [
    b"\xff\xfeadmin-token-0001,alice,uid-alice\n",  # not UTF-8
    b'ok,user,uid\n"never closed,user,uid\n',  # unterminated quote: a row with too few fields
    b"onlytoken\n",
])
def test_a_broken_edit_keeps_the_last_good_file_serving(make_app: Any, token_file: Path, broken: bytes) -> None:
    app = make_app()
    client = app.test_client()
    token_file.write_bytes(broken)
    _touch(token_file, 2)
    # Webhook: still the old file (not a 503), for a token it has not cached yet.
    resp = post_review(client, "dev-token-0002")
    assert resp.status_code == 200
    assert resp.get_json()["status"]["user"]["username"] == "bob"
    # HTTP API: still the old file (not a 500).
    assert client.get("/v1/audit", headers=bearer("admin-token-0001")).status_code == 200
    assert client.get("/v1/audit", headers=bearer("nobody")).status_code == 401
    # A good edit is picked up again.
    token_file.write_text('fixed-0010,yan,uid-yan,"kagiya:admins"\n')
    _touch(token_file, 3)
    assert client.get("/v1/audit", headers=bearer("fixed-0010")).status_code == 200


def test_a_non_utf8_file_at_start_is_a_config_error(tmp_path: Path) -> None:
    from kagiya.errors import ConfigError

    path = tmp_path / "tokens.csv"
    path.write_bytes(b"tok,\xe9l\xe8ve,uid\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        TokenFileProvider(path)
