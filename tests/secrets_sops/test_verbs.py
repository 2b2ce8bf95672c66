"""The verbs scripts use: exec-env and exec-file (values reach a child, never a file on disk), updatekeys (the
.kagiya.yaml rules re-applied to a file's recipients) and `introspect --json`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import CliRunner

REPO = Path(__file__).resolve().parents[2]
SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: app
  namespace: prod
data:
  API_TOKEN: {base64.b64encode(b"tok-plaintext-1").decode()}
  tls.crt: {base64.b64encode(b"cert").decode()}
stringData:
  DB_PASSWORD: pw-plaintext-2
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KAGIYA_", "SOPS_"))}
    e.update(PYTHONPATH=str(REPO), KAGIYA_KEYRING=str(tmp_path / "kr" / "keyring"), HOME=str(tmp_path))
    return e


@pytest.fixture
def encrypted(tmp_path: Path, env: dict[str, str]) -> Path:
    path = tmp_path / "app.enc.yaml"
    path.write_text(SECRET)
    res = _kagiya(env, "secrets", "encrypt", "-i", str(path))
    assert res.returncode == 0, res.stderr
    return path


def _kagiya(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kagiya.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def _no_file_holds(root: Path, needle: str) -> bool:
    return not [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_exec_env(encrypted: Path, env: dict[str, str], tmp_path: Path) -> None:
    script = "import os; print(os.environ['API_TOKEN'], os.environ['DB_PASSWORD'], 'tls.crt' in os.environ)"
    res = _kagiya(env, "secrets", "exec-env", str(encrypted), "--", sys.executable, "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["tok-plaintext-1", "pw-plaintext-2", "False"]
    assert "tls.crt: not a valid environment variable name" in res.stderr
    assert "cert" not in res.stderr
    assert _no_file_holds(tmp_path, "pw-plaintext-2")


def test_exec_env_passes_the_exit_status_and_pristine(encrypted: Path, env: dict[str, str]) -> None:
    res = _kagiya(env, "secrets", "exec-env", str(encrypted), "--", sys.executable, "-c", "raise SystemExit(42)")
    assert res.returncode == 42
    script = "import os; print(sorted(k for k in os.environ if k not in ('LC_CTYPE',)))"
    res = _kagiya(env, "secrets", "exec-env", "--pristine", str(encrypted), "--", sys.executable, "-c", script)
    assert res.returncode == 0, res.stderr
    assert eval(res.stdout) == ["API_TOKEN", "DB_PASSWORD", "PATH"]  # noqa: S307 - our own child's repr


def test_exec_env_fails_closed_without_the_key(encrypted: Path, env: dict[str, str], tmp_path: Path) -> None:
    env["KAGIYA_KEYRING"] = str(tmp_path / "none")
    marker = tmp_path / "ran"
    res = _kagiya(env, "secrets", "exec-env", str(encrypted), "--", "touch", str(marker))
    assert res.returncode != 0 and not marker.exists()
    assert "kagiya: error:" in res.stderr


CHECK = """
import os, stat, sys
path = sys.argv[1]
st = os.stat(path)
kind = "fifo" if stat.S_ISFIFO(st.st_mode) else "file"
links = st.st_nlink
mode = oct(stat.S_IMODE(st.st_mode))
data = open(path).read()
print(kind, links, mode, os.path.dirname(path) if kind == "fifo" else path)
print("DB_PASSWORD: pw-plaintext-2" in data)
"""


def test_exec_file_fifo(encrypted: Path, env: dict[str, str], tmp_path: Path) -> None:
    res = _kagiya(env, "secrets", "exec-file", str(encrypted), "--", sys.executable, "-c", CHECK, "{}")
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    kind, _, mode, directory = first.split()
    assert (kind, mode, second) == ("fifo", "0o600", "True")
    assert not Path(directory).exists()  # cleaned up after the child


def test_exec_file_unlinked_temp_file(encrypted: Path, env: dict[str, str]) -> None:
    res = _kagiya(env, "secrets", "exec-file", "--no-fifo", str(encrypted), "--", sys.executable, "-c", CHECK, "{}")
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    kind, links, mode, path = first.split()
    assert (kind, links, mode, second) == ("file", "0", "0o600", "True")
    assert path.startswith("/dev/fd/")


def test_exec_file_child_that_never_reads(encrypted: Path, env: dict[str, str]) -> None:
    res = _kagiya(env, "secrets", "exec-file", str(encrypted), "--", sys.executable, "-c",
                  "import sys; print(sys.argv[1])", "{}")
    assert res.returncode == 0, res.stderr
    assert not Path(res.stdout.strip()).exists()


def test_exec_file_needs_placeholder(encrypted: Path, env: dict[str, str]) -> None:
    res = _kagiya(env, "secrets", "exec-file", str(encrypted), "--", "cat")
    assert res.returncode != 0 and "{}" in res.stderr


def _trailer_recipients(path: Path) -> list[str]:
    return [":".join(line.split(":")[1:3]) for line in path.read_text().splitlines()
            if line.startswith(("# kubesec:", "# kagiya:")) and not line.startswith(("# kubesec:v:", "# kubesec:mac:"))]


def test_updatekeys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    monkeypatch.setenv("KAGIYA_KEYRING", str(tmp_path / "kr" / "keyring"))
    for name in ("alice", "bob"):
        assert cli(["secrets", "keygen", name]).exit_code == 0
    repo = tmp_path / "repo"
    (repo / "prod").mkdir(parents=True)
    (repo / ".kagiya.yaml").write_text("creation_rules:\n  - path_regex: ^prod/\n    recipients: [local:alice]\n")
    path = repo / "prod" / "app.yaml"
    path.write_text(SECRET)
    assert cli(["secrets", "encrypt", "-i", str(path)]).exit_code == 0
    assert _trailer_recipients(path) == ["local:alice"]
    res = cli(["secrets", "updatekeys", str(path)])
    assert res.exit_code == 0 and "already match" in res.stderr
    # the rule changes: bob replaces alice
    (repo / ".kagiya.yaml").write_text("creation_rules:\n  - path_regex: ^prod/\n    recipients: [local:bob]\n")
    before = path.read_text()
    res = cli(["secrets", "updatekeys", "--dry-run", str(path)])
    assert res.exit_code == 1 and "+local:bob" in res.stderr and "-local:alice" in res.stderr
    assert path.read_text() == before
    res = cli(["secrets", "updatekeys", str(path)])
    assert res.exit_code == 0, res.stderr
    assert _trailer_recipients(path) == ["local:bob"]
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0 and "pw-plaintext-2" in res.stdout
    # a file no rule covers is an error, not a silent no-op
    other = repo / "app.yaml"
    other.write_text(path.read_text())
    res = cli(["secrets", "updatekeys", str(other)])
    assert res.exit_code != 0 and "no .kagiya.yaml creation rule matches" in res.stderr


def test_introspect_json(encrypted: Path, env: dict[str, str], tmp_path: Path) -> None:
    res = _kagiya(env, "secrets", "introspect", "--json", "--verify", str(encrypted))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["format"] == "kubesec" and out["encrypted"] is True and out["mac"] is True
    assert out["recipients"] == [{"uri": "local:default", "status": "ok", "reason": ""}]
    assert out["secrets"] == [{"namespace": "prod", "name": "app",
                               "keys": ["data.API_TOKEN", "data.tls.crt", "stringData.DB_PASSWORD"]}]
    assert "plaintext" not in res.stdout
    plain = tmp_path / "plain.yaml"
    plain.write_text(SECRET)
    out = json.loads(_kagiya(env, "secrets", "introspect", "--json", str(plain)).stdout)
    assert out["encrypted"] is False and out["format"] == "kubesec"


def test_introspect_json_sops(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.secrets_sops.conftest import SOPS, make_age_identity, run_sops

    if SOPS is None:
        pytest.skip("sops binary not installed")
    ident = make_age_identity(tmp_path / "age")
    path = tmp_path / "s.yaml"
    path.write_text(SECRET)
    run_sops(SOPS, "encrypt", "-i", "--age", ident.recipient, str(path), cwd=tmp_path)
    env["SOPS_AGE_KEY_FILE"] = str(ident.key_file)
    out = json.loads(_kagiya(env, "secrets", "introspect", "--json", "--verify", str(path)).stdout)
    assert out["format"] == "sops" and out["encrypted"] is True and out["verified"] is True
    assert out["recipients"] == [{"uri": f"age:{ident.recipient}"}]


def test_introspect_json_verify_plaintext(env: dict[str, str], tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(SECRET)
    res = _kagiya(env, "secrets", "introspect", "--json", "--verify", str(plain))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["encrypted"] is False


def test_exec_env_with_a_sops_file(tmp_path: Path, env: dict[str, str]) -> None:
    """A non-Secret sops file gives its top-level values, as `sops exec-env` does."""
    from tests.secrets_sops.conftest import SOPS, make_age_identity, run_sops

    if SOPS is None:
        pytest.skip("sops binary not installed")
    ident = make_age_identity(tmp_path / "age")
    path = tmp_path / "app.env.yaml"
    path.write_text("DATABASE_URL: postgres://u:sops-pw@db/app\nRETRIES: 3\nnested: {a: b}\n")
    run_sops(SOPS, "encrypt", "-i", "--age", ident.recipient, str(path), cwd=tmp_path)
    env["SOPS_AGE_KEY_FILE"] = str(ident.key_file)
    script = "import os; print(os.environ['DATABASE_URL'], os.environ['RETRIES'], 'nested' in os.environ)"
    res = _kagiya(env, "secrets", "exec-env", str(path), "--", sys.executable, "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["postgres://u:sops-pw@db/app", "3", "False"]


@pytest.mark.parametrize("no_fifo", [False, True])
def test_exec_file_sigterm_reaches_the_child_and_cleans_up(encrypted: Path, env: dict[str, str], no_fifo: bool) -> None:
    """SIGTERM to kagiya (a cancelled CI job) is passed to the child; kagiya waits, removes the FIFO's private
    directory and exits with the child's status (128+15), instead of dying and leaving both behind."""
    import signal

    child = "import sys, time; print(sys.argv[1], flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-m", "kagiya.cli", "secrets", "exec-file",
                             *(["--no-fifo"] if no_fifo else []), str(encrypted), "--", sys.executable, "-c", child,
                             "{}"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with proc:
        try:
            assert proc.stdout is not None
            path = proc.stdout.readline().strip()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
            assert proc.returncode == 128 + signal.SIGTERM, stderr
        finally:
            if proc.poll() is None:
                proc.kill()
    if not no_fifo:
        assert not Path(path).parent.exists()


def test_exec_env_reports_a_signalled_child_as_128_plus_n(encrypted: Path, env: dict[str, str]) -> None:
    res = _kagiya(env, "secrets", "exec-env", str(encrypted), "--", sys.executable, "-c",
                  "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert res.returncode == 128 + 9


def test_exec_env_with_a_sops_json_file(tmp_path: Path, env: dict[str, str]) -> None:
    """A sops JSON file (tab-indented, not YAML, once decrypted) gives its values, numbers as sops prints them."""
    from tests.secrets_sops.conftest import SOPS, make_age_identity, run_sops

    if SOPS is None:
        pytest.skip("sops binary not installed")
    ident = make_age_identity(tmp_path / "age")
    path = tmp_path / "app.env.json"
    path.write_text('{"DB_PASS": "json-pw", "PORT": 5432, "nested": {"a": "b"}}')
    run_sops(SOPS, "encrypt", "-i", "--age", ident.recipient, str(path), cwd=tmp_path)
    env["SOPS_AGE_KEY_FILE"] = str(ident.key_file)
    script = "import os; print(os.environ['DB_PASS'], os.environ['PORT'], 'nested' in os.environ)"
    res = _kagiya(env, "secrets", "exec-env", str(path), "--", sys.executable, "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["json-pw", "5432", "False"]
