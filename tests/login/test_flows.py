"""The OIDC client flows in-process, for the edge cases a subprocess cannot steer: RFC 8628 `slow_down` and
`access_denied`, and the loopback listener's handling of stray, forged and error redirects."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from kagiya.login.oidc import DEVICE_GRANT, Client, GrantRejected, LoopbackListener
from tests.standins.oidc_login import LoginIssuer


def approve_when_asked(issuer: LoginIssuer, said: list[str]) -> Any:
    def say(text: str) -> None:
        said.append(text)
        issuer.approve_device(text.rsplit(" ", 1)[1])

    return say


def test_device_grant_backs_off_on_slow_down(issuer: LoginIssuer) -> None:
    issuer.slow_down_polls = 2
    sleeps: list[float] = []
    said: list[str] = []
    entry = Client(issuer.url, "kagiya").device_login(say=approve_when_asked(issuer, said), sleep=sleeps.append)
    assert entry["sub"] == "dave" and entry["refresh_token"] and entry["expiry"]
    assert sleeps == [1.0, 6.0, 11.0]  # interval 1 from the issuer, +5 s per slow_down (RFC 8628 §3.5)
    assert issuer.grants[DEVICE_GRANT] == 3
    assert "enter the code" in said[0]


def test_device_grant_denied_by_the_user(issuer: LoginIssuer) -> None:
    issuer.deny_devices = True
    with pytest.raises(GrantRejected, match="device login failed: access_denied"):
        Client(issuer.url, "kagiya").device_login(say=approve_when_asked(issuer, []), sleep=lambda s: None)


def test_device_grant_times_out(issuer: LoginIssuer) -> None:
    ticks = iter(range(0, 10_000, 100))
    with pytest.raises(GrantRejected, match="timed out"):
        Client(issuer.url, "kagiya").device_login(say=lambda t: None, sleep=lambda s: None,
                                                  clock=lambda: float(next(ticks)))


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_loopback_listener_ignores_stray_and_forged_redirects() -> None:
    listener = LoopbackListener(0, "the-state")
    try:
        base = listener.redirect_uri
        assert get(base.replace("/callback", "/favicon.ico")) == 404
        assert get(base + "?code=stolen&state=other") == 400  # not our login: ignored, still waiting
        assert not listener.done.is_set()
        threading.Timer(0.1, get, args=(base + "?code=good&state=the-state",)).start()
        assert listener.wait(5) == "good"
    finally:
        listener.close()


def test_loopback_listener_reports_an_issuer_error() -> None:
    listener = LoopbackListener(0, "s")
    try:
        assert get(listener.redirect_uri + "?error=access_denied&state=s") == 400
        with pytest.raises(GrantRejected, match="refused the sign-in: access_denied"):
            listener.wait(5)
    finally:
        listener.close()


def test_loopback_listener_times_out() -> None:
    listener = LoopbackListener(0, "s")
    try:
        with pytest.raises(GrantRejected, match="no sign-in answer within 0 s"):
            listener.wait(0.2)
    finally:
        listener.close()


def test_discovery_naming_another_issuer_is_refused(issuer: LoginIssuer) -> None:
    from kagiya.errors import ConfigError

    with pytest.raises(ConfigError, match="discovery document names issuer"):
        Client(issuer.url + "/", "kagiya").discovery()


def test_device_grant_honours_the_login_timeout(issuer: LoginIssuer) -> None:
    """Never approved: the poll stops after `timeout` seconds (not when the 10-minute code expires)."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(GrantRejected, match=r"timed out after 3s \(--login-timeout\)"):
        Client(issuer.url, "kagiya").device_login(say=lambda t: None, timeout=3, sleep=sleep, clock=lambda: now[0])
    assert sum(slept) == pytest.approx(3.0)


@pytest.mark.parametrize("odd", [{"interval": -1}, {"interval": "soon", "expires_in": "later"},
                                 {"interval": float("nan")}, {"expires_in": -5}])
def test_device_grant_survives_odd_interval_and_expiry_values(issuer: LoginIssuer, odd: dict[str, Any]) -> None:
    """An issuer's unusable `interval` / `expires_in` means the RFC 8628 defaults (5 s, 600 s): the sign-in still
    works and still ends at the login timeout, instead of the plugin failing on a negative sleep."""
    import json

    from flask import Response

    @issuer.app.after_request
    def _odd_device_answer(resp: Response) -> Response:
        if resp.is_json and "device_code" in (resp.get_json(silent=True) or {}):
            resp.set_data(json.dumps({**resp.get_json(), **odd}))
        return resp

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        assert seconds >= 0
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(GrantRejected, match="timed out"):
        Client(issuer.url, "kagiya").device_login(say=lambda t: None, timeout=12, sleep=sleep, clock=lambda: now[0])
    assert slept[0] == (5.0 if "interval" in odd else 1.0) and sum(slept) == pytest.approx(12.0)
    said: list[str] = []
    entry = Client(issuer.url, "kagiya").device_login(say=approve_when_asked(issuer, said), sleep=lambda s: None)
    assert entry["id_token"]
