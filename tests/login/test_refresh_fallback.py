"""`kagiya login` never gets stuck on its cache: a refresh answered unusably falls back to a new sign-in (as
kubelogin does), an unreachable issuer stays a one-line error, and a damaged cache entry counts as no cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.login.conftest import credential
from tests.login.test_exec_oidc import claims, oidc_args
from tests.standins.oidc_login import LoginIssuer


class RefreshWithoutIdToken(LoginIssuer):
    """An issuer whose refresh grant (the only token answer without a nonce here) can leave out `id_token`,
    as some do when `openid` is not re-requested."""

    drop_id_token_on_refresh = False

    def _tokens(self, nonce: str | None = None) -> dict[str, Any]:
        body = super()._tokens(nonce)
        if nonce is None and self.drop_id_token_on_refresh:
            body.pop("id_token")
        return body


@pytest.fixture
def odd_issuer() -> Iterator[RefreshWithoutIdToken]:
    with RefreshWithoutIdToken() as idp:
        idp.login_as = {"sub": "dave", "email": "dave@example.com", "groups": ["dev"]}
        yield idp


def _cache_file(tmp_path: Path) -> Path:
    return next((tmp_path / "xdg-cache" / "kagiya").glob("*.json"))


def _edit_cache(tmp_path: Path, **changes: Any) -> None:
    path = _cache_file(tmp_path)
    entry = json.loads(path.read_text())
    entry.update(changes)
    path.write_text(json.dumps(entry))


def test_a_refresh_without_id_token_falls_back_to_a_new_sign_in(odd_issuer: RefreshWithoutIdToken,
                                                                 run_plugin: Any, tmp_path: Path) -> None:
    credential(run_plugin(oidc_args(odd_issuer)))
    _edit_cache(tmp_path, expiry=1)
    odd_issuer.drop_id_token_on_refresh = True
    proc = run_plugin(oidc_args(odd_issuer))
    assert claims(credential(proc)["token"])["sub"] == "dave"
    assert "refresh failed: the issuer's token answer has no id_token" in proc.stderr
    assert "signing in again" in proc.stderr
    assert odd_issuer.grants == {"authorize": 2, "authorization_code": 2, "refresh_token": 1}
    # And the new sign-in's token is cached: the next call asks nobody.
    credential(run_plugin(oidc_args(odd_issuer)))
    assert odd_issuer.grants["authorize"] == 2


def test_an_unreachable_issuer_during_refresh_is_one_line_not_a_sign_in(odd_issuer: RefreshWithoutIdToken,
                                                                        run_plugin: Any, tmp_path: Path) -> None:
    credential(run_plugin(oidc_args(odd_issuer)))
    _edit_cache(tmp_path, expiry=1)
    odd_issuer.fail_status = 502
    proc = run_plugin(oidc_args(odd_issuer))
    assert proc.returncode != 0 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert odd_issuer.grants["authorize"] == 1  # no browser opened for an outage


@pytest.mark.parametrize("expiry", ["soon", None, [1], {"at": 1}, True, 1e300, -5])
def test_a_cache_entry_with_a_bad_expiry_counts_as_no_cache(odd_issuer: RefreshWithoutIdToken, run_plugin: Any,
                                                            tmp_path: Path, expiry: Any) -> None:
    credential(run_plugin(oidc_args(odd_issuer)))
    _edit_cache(tmp_path, expiry=expiry)
    proc = run_plugin(oidc_args(odd_issuer))
    credential(proc)
    assert "Traceback" not in proc.stderr
    # A damaged entry is not trusted at all (its refresh token neither): a new sign-in, then a good cache.
    assert odd_issuer.grants == {"authorize": 2, "authorization_code": 2}
    assert isinstance(json.loads(_cache_file(tmp_path).read_text())["expiry"], int)


@pytest.mark.parametrize("expiry", ["never", None, 1e300])
def test_a_static_cache_entry_with_a_bad_expiry_counts_as_no_cache(run_plugin: Any, tmp_path: Path,
                                                                   expiry: Any) -> None:
    first = run_plugin(["--static"], input="tok-1\n", info=json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "spec": {"interactive": True}}))
    assert credential(first)["token"] == "tok-1"
    _edit_cache(tmp_path, expiry=expiry)
    # Not interactive: with no usable cache it must ask, cannot, and says so in one line (no traceback).
    proc = run_plugin(["--static"])
    assert proc.returncode != 0 and proc.stdout == ""
    assert "must prompt" in proc.stderr and "Traceback" not in proc.stderr
