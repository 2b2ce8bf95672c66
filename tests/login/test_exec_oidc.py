"""`kagiya login` as kubectl runs it, against the stand-in issuer: sign-in with auth-code + PKCE through a
(stand-in) browser, the cached token on the next call, silent refresh after expiry, and the device grant."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.login.conftest import KAGIYA, credential, exec_info
from tests.standins.oidc_login import LoginIssuer

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def oidc_args(idp: LoginIssuer, *extra: str) -> list[str]:
    return ["--issuer", idp.url, "--client-id", "kagiya", *extra]


def claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def test_first_call_signs_in_with_auth_code_and_pkce(issuer: LoginIssuer, run_plugin: Any, tmp_path: Path) -> None:
    proc = run_plugin(oidc_args(issuer))
    status = credential(proc)
    token = claims(status["token"])
    assert (token["iss"], token["aud"], token["sub"], token["groups"]) == (issuer.url, "kagiya", "dave", ["dev"])
    assert token["nonce"]  # the nonce we sent came back (checked by the plugin)
    assert status["expirationTimestamp"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token["exp"]))
    assert issuer.grants == {"authorize": 1, "authorization_code": 1}
    assert "open this address to sign in" in proc.stderr and "code_challenge_method=S256" in proc.stderr
    assert (tmp_path / "browser.log").read_text().count("/authorize") == 1


def test_second_call_uses_the_cache(issuer: LoginIssuer, run_plugin: Any) -> None:
    first = credential(run_plugin(oidc_args(issuer)))
    second_proc = run_plugin(oidc_args(issuer))
    assert credential(second_proc) == first
    assert second_proc.stderr == ""
    assert issuer.grants == {"authorize": 1, "authorization_code": 1}  # no new sign-in, no token request


def test_cache_file_is_private_and_names_no_issuer(issuer: LoginIssuer, run_plugin: Any, tmp_path: Path) -> None:
    credential(run_plugin(oidc_args(issuer)))
    directory = tmp_path / "xdg-cache" / "kagiya"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.glob("*.json"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert "127.0.0.1" not in files[0].name
    assert {"id_token", "refresh_token", "expiry"} <= set(json.loads(files[0].read_text()))


def test_expired_token_is_refreshed_silently(issuer: LoginIssuer, run_plugin: Any) -> None:
    issuer.id_token_lifetime = 2
    first = credential(run_plugin(oidc_args(issuer, "--expiry-margin", "0")))
    time.sleep(2.1)
    proc = run_plugin(oidc_args(issuer, "--expiry-margin", "0"))
    second = credential(proc)
    assert second["token"] != first["token"] and claims(second["token"])["exp"] > claims(first["token"])["exp"]
    assert issuer.grants == {"authorize": 1, "authorization_code": 1, "refresh_token": 1}
    assert proc.stderr == ""  # silent: no sign-in prompt


def test_refused_refresh_falls_back_to_a_new_sign_in(issuer: LoginIssuer, run_plugin: Any, tmp_path: Path) -> None:
    credential(run_plugin(oidc_args(issuer)))
    path = next((tmp_path / "xdg-cache" / "kagiya").glob("*.json"))
    entry = json.loads(path.read_text())
    entry.update(refresh_token="revoked", expiry=int(time.time()) - 10)
    path.write_text(json.dumps(entry))
    proc = run_plugin(oidc_args(issuer))
    credential(proc)
    assert "refresh refused: invalid_grant; signing in again" in proc.stderr
    assert issuer.grants == {"authorize": 2, "authorization_code": 2, "refresh_token": 1}


def test_parallel_calls_sign_in_once(issuer: LoginIssuer, run_plugin: Any) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(run_plugin(oidc_args(issuer)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tokens = {credential(r)["token"] for r in results}
    assert len(tokens) == 1
    assert issuer.grants == {"authorize": 1, "authorization_code": 1}


def test_v1beta1_exec_info_is_answered_in_v1beta1(issuer: LoginIssuer, run_plugin: Any) -> None:
    version = "client.authentication.k8s.io/v1beta1"
    credential(run_plugin(oidc_args(issuer), info=exec_info(version)), version)


def test_device_grant_for_headless_use(issuer: LoginIssuer, plugin_env: dict[str, str]) -> None:
    env = {**plugin_env, "KUBERNETES_EXEC_INFO": exec_info()}
    proc = subprocess.Popen([KAGIYA, "login", *oidc_args(issuer, "--grant", "device-code")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        match = re.search(r"enter the code ([0-9A-F]+)", "".join(lines))
        assert match, lines
        assert issuer.grants[DEVICE] == 0
        issuer.approve_device(match.group(1))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert claims(doc["status"]["token"])["sub"] == "dave"
    assert issuer.grants["authorize"] == 0 and issuer.grants[DEVICE] >= 1  # polled until approved


def test_device_grant_gives_up_after_the_login_timeout(issuer: LoginIssuer, run_plugin: Any) -> None:
    """kubectl retries a failed plugin: an abandoned device sign-in must end at --login-timeout (here 2 s)."""
    started = time.monotonic()
    proc = run_plugin(oidc_args(issuer, "--grant", "device-code", "--login-timeout", "2"), timeout=20)
    elapsed = time.monotonic() - started
    assert proc.returncode == 5 and proc.stdout == ""
    assert "timed out after 2s (--login-timeout)" in proc.stderr
    assert elapsed < 8, elapsed
    assert issuer.grants["authorize"] == 0


def test_auto_grant_uses_the_device_flow_without_a_browser(issuer: LoginIssuer, plugin_env: dict[str, str]) -> None:
    env = {k: v for k, v in plugin_env.items() if k not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PATH="/nonexistent", KUBERNETES_EXEC_INFO=exec_info())
    proc = subprocess.Popen([KAGIYA, "login", *oidc_args(issuer)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        text = proc.stderr.readline() + proc.stderr.readline()
        assert "enter the code" in text
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        proc.kill() if proc.poll() is None else None


def test_issuer_down_fails_with_one_line_and_no_stdout(run_plugin: Any) -> None:
    from tests.support.servers import free_port

    proc = run_plugin(["--issuer", f"http://127.0.0.1:{free_port()}", "--client-id", "kagiya"])
    assert proc.returncode == 6 and proc.stdout == ""
    assert proc.stderr.startswith("kagiya: error: cannot reach the OIDC issuer") and proc.stderr.count("\n") == 1


def test_missing_options_are_a_usage_error(run_plugin: Any) -> None:
    proc = run_plugin([])
    assert proc.returncode == 2 and proc.stdout == "" and "needs --issuer and --client-id" in proc.stderr


def test_bad_exec_info_is_refused(issuer: LoginIssuer, run_plugin: Any) -> None:
    proc = run_plugin(oidc_args(issuer), info='{"apiVersion": "client.authentication.k8s.io/v2"}')
    assert proc.returncode == 2 and "KUBERNETES_EXEC_INFO apiVersion" in proc.stderr and proc.stdout == ""


def test_the_cached_path_imports_nothing_heavy(issuer: LoginIssuer, run_plugin: Any, tmp_path: Path) -> None:
    credential(run_plugin(oidc_args(issuer)))  # fills the cache
    code = ("import sys, kagiya.cli as c\n"
            "try:\n    c.main(sys.argv[1:])\n"
            "finally:\n    print(sorted(m for m in ('flask', 'yaml', 'werkzeug', 'sqlalchemy', 'joserfc', 'authlib',"
            " 'urllib.request', 'http.client', 'kubernetes', 'requests') if m in sys.modules), file=sys.stderr)\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"), "KUBERNETES_EXEC_INFO": exec_info()}
    proc = subprocess.run([os.path.join(os.path.dirname(KAGIYA), "python"), "-c", code, "login",
                           *oidc_args(issuer)], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"]["token"]
    assert proc.stderr.strip() == "[]"
    assert issuer.grants == {"authorize": 1, "authorization_code": 1}


def test_refresh_that_changes_the_subject_is_refused(issuer: LoginIssuer, run_plugin: Any, tmp_path: Path) -> None:
    credential(run_plugin(oidc_args(issuer)))
    path = next((tmp_path / "xdg-cache" / "kagiya").glob("*.json"))
    entry = json.loads(path.read_text())
    entry["expiry"] = int(time.time()) - 10
    path.write_text(json.dumps(entry))
    issuer.login_as = {"sub": "someone-else", "groups": ["admins"]}  # the issuer's refresh now names another sub
    proc = run_plugin(oidc_args(issuer))
    assert "names a different subject; signing in again" in proc.stderr
    assert claims(credential(proc)["token"])["sub"] == "someone-else"  # only through a real new sign-in
    assert issuer.grants == {"authorize": 2, "authorization_code": 2, "refresh_token": 1}
