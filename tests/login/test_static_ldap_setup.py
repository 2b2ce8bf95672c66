"""`kagiya login --static` / `--ldap` prompt on stderr and produce the token the webhook expects;
`kagiya login setup` writes the kubeconfig exec entry; `kagiya login clear` forgets tokens."""

from __future__ import annotations

import base64
import calendar
import json
import stat
import time
from pathlib import Path
from typing import Any

import yaml

from tests.login.conftest import exec_info

INTERACTIVE = {"KUBERNETES_EXEC_INFO": exec_info(interactive=True)}
BATCH = {"KUBERNETES_EXEC_INFO": exec_info(interactive=False)}


def status_of(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["kind"] == "ExecCredential" and doc["apiVersion"] == "client.authentication.k8s.io/v1"
    return doc["status"]  # type: ignore[no-any-return]


def test_static_prompts_on_stderr_once_then_uses_the_cache(runner: Any, tmp_path: Path) -> None:
    args = ["login", "--static", "--cache-dir", str(tmp_path / "c")]
    first = runner(args, input="dev-token-0002\n", env=INTERACTIVE)
    assert status_of(first) == {"token": "dev-token-0002"}  # no expiry: static tokens do not expire
    assert first.stderr == "Token: "
    second = runner(args, input="", env=BATCH)  # cached: no prompt needed, even without a terminal
    assert status_of(second) == {"token": "dev-token-0002"} and second.stderr == ""
    files = list((tmp_path / "c").glob("*.json"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_static_without_a_terminal_and_no_cache_fails_clearly(runner: Any, tmp_path: Path) -> None:
    r = runner(["login", "--static", "--cache-dir", str(tmp_path / "c")], input="x\n", env=BATCH)
    assert r.exit_code == 2 and r.stdout == ""
    assert "kagiya login --static must prompt, but kubectl gave it no terminal" in r.stderr


def test_ldap_token_is_base64_user_colon_password(runner: Any, tmp_path: Path) -> None:
    r = runner(["login", "--ldap", "--cache-dir", str(tmp_path / "c")], input="nora\ns3cret:pw\n", env=INTERACTIVE)
    status = status_of(r)
    assert base64.b64decode(status["token"]).decode() == "nora:s3cret:pw"
    assert r.stderr == "LDAP user name: Password: "
    expires = calendar.timegm(time.strptime(status["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(expires - (time.time() + 8 * 3600)) < 60


def test_ldap_remember_zero_stores_nothing(runner: Any, tmp_path: Path) -> None:
    r = runner(["login", "--ldap", "--remember", "0", "--cache-dir", str(tmp_path / "c")], input="nora\npw\n",
               env=INTERACTIVE)
    status_of(r)
    assert not list((tmp_path / "c").glob("*.json"))


def test_ldap_refuses_empty_password(runner: Any, tmp_path: Path) -> None:
    r = runner(["login", "--ldap", "--cache-dir", str(tmp_path / "c")], input="nora\n\n", env=INTERACTIVE)
    assert r.exit_code == 2 and r.stdout == "" and "must not be empty" in r.stderr


def test_static_profiles_are_per_cluster(runner: Any, tmp_path: Path) -> None:
    def info(server: str) -> dict[str, str]:
        return {"KUBERNETES_EXEC_INFO": json.dumps({
            "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "spec": {"interactive": True, "cluster": {"server": server}}})}

    args = ["login", "--static", "--cache-dir", str(tmp_path / "c")]
    assert status_of(runner(args, input="tok-a\n", env=info("https://a:6443")))["token"] == "tok-a"
    assert status_of(runner(args, input="tok-b\n", env=info("https://b:6443")))["token"] == "tok-b"
    assert status_of(runner(args, input="", env=info("https://a:6443")))["token"] == "tok-a"


def test_setup_writes_the_exec_entry_and_keeps_the_rest(runner: Any, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "old"}}],
        "users": [{"name": "old", "user": {"token": "keep-me"}}, {"name": "kagiya", "user": {"token": "replace-me"}}],
    }))
    r = runner(["login", "setup", "--kubeconfig", str(kubeconfig), "--context", "prod", "--command", "/opt/kagiya",
                "--issuer", "https://idp.example.com", "--client-id", "kube", "--scope", "openid", "--scope",
                "groups", "--grant", "device-code", "--expiry-margin", "0"])
    assert r.exit_code == 0, r.stderr
    config = yaml.safe_load(kubeconfig.read_text())
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    users = {u["name"]: u["user"] for u in config["users"]}
    assert users["old"] == {"token": "keep-me"}
    assert users["kagiya"] == {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "/opt/kagiya",
        "args": ["login", "--issuer", "https://idp.example.com", "--client-id", "kube", "--scope", "openid",
                 "--scope", "groups", "--grant", "device-code", "--expiry-margin", "0"],
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": False,
    }}
    assert config["contexts"][0]["context"] == {"cluster": "prod", "user": "kagiya"}
    assert config["clusters"] == [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443"}}]


def test_setup_static_asks_for_cluster_info_and_creates_a_new_file(runner: Any, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "new" / "config"
    r = runner(["login", "setup", "--kubeconfig", str(kubeconfig), "--static", "--command", "kagiya",
                "--name", "static-user"])
    assert r.exit_code == 0, r.stderr
    assert "kubectl config set-context --current --user=static-user" in r.stdout
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]
    assert user["name"] == "static-user"
    assert user["user"]["exec"]["args"] == ["login", "--static"] and user["user"]["exec"]["provideClusterInfo"]


def test_setup_errors(runner: Any, tmp_path: Path) -> None:
    r = runner(["login", "setup", "--kubeconfig", str(tmp_path / "k")])
    assert r.exit_code == 2 and "needs --issuer and --client-id" in r.stderr
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    r = runner(["login", "setup", "--kubeconfig", str(bad), "--static"])
    assert r.exit_code == 3 and "not valid YAML; not touching it" in r.stderr and bad.read_text() == "clusters: [\n"
    r = runner(["login", "setup", "--kubeconfig", str(tmp_path / "k2"), "--static", "--context", "nope"])
    assert r.exit_code == 3 and "has no context 'nope'" in r.stderr


def test_clear_forgets_cached_tokens(runner: Any, tmp_path: Path) -> None:
    cache = str(tmp_path / "c")
    status_of(runner(["login", "--static", "--cache-dir", cache], input="t1\n", env=INTERACTIVE))
    r = runner(["login", "clear", "--cache-dir", cache])
    assert r.exit_code == 0 and "removed 1 cached token file(s)" in r.stdout
    r = runner(["login", "--static", "--cache-dir", cache], input="t2\n", env=INTERACTIVE)
    assert status_of(r)["token"] == "t2"


def test_setup_writes_the_absolute_path_of_the_running_kagiya(tmp_path: Path) -> None:
    """kubectl runs the plugin without the user's venv on PATH: the entry must name this kagiya by absolute path,
    however it was started (absolute path, relative path, bare name found on PATH)."""
    import os
    import subprocess

    from tests.login.conftest import KAGIYA

    bin_dir = os.path.dirname(KAGIYA)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the venv is NOT on PATH, as for kubectl later
    invocations = [([KAGIYA], None, env), (["./kagiya"], bin_dir, env),
                   (["kagiya"], None, {**env, "PATH": f"{bin_dir}:/usr/bin:/bin"})]
    for i, (argv, cwd, run_env) in enumerate(invocations):
        kubeconfig = tmp_path / f"config-{i}"
        proc = subprocess.run([*argv, "login", "setup", "--kubeconfig", str(kubeconfig), "--static"], cwd=cwd,
                              env=run_env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        command = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]["command"]
        assert command == KAGIYA and os.path.isabs(command), argv


def test_setup_from_python_writes_this_interpreter_running_the_cli_module(runner: Any, tmp_path: Path) -> None:
    """Started without a console script (in-process here, argv[0] is pytest): the entry runs this interpreter's
    `-m kagiya.cli`, an absolute path that works, never a bare `kagiya` that kubectl cannot find."""
    import os
    import subprocess
    import sys

    kubeconfig = tmp_path / "config"
    assert runner(["login", "setup", "--kubeconfig", str(kubeconfig), "--static"]).exit_code == 0
    exec_entry = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]
    assert exec_entry["command"] == os.path.abspath(sys.executable)
    assert exec_entry["args"] == ["-m", "kagiya.cli", "login", "--static"]
    proc = subprocess.run([exec_entry["command"], *exec_entry["args"][:3], "--help"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0 and "ExecCredential" in proc.stdout
