"""Must show (issue 16.9, 17.8): concurrent patches of one file lose no update; keygen on a disk that refuses the
write prints one line naming the path and the errno (exit 1); edit of a single key, binary values included."""

from __future__ import annotations

import base64
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  base: x\n"


def _env(keyring: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    env["KAGIYA_KEYRING"] = str(keyring)
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
def test_concurrent_patches_of_one_file_lose_no_update(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    env = _env(keyring)
    argv = [sys.executable, "-m", "kagiya.cli", "secrets", "patch", str(path)]
    for round_ in range(8):
        procs = [subprocess.Popen([*argv, "-s", f"{who}{round_}=v{round_}"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for who in ("a", "b")]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    values = yaml.safe_load(ksec("decrypt", str(path)).stdout)["stringData"]
    assert values == {"base": "x", **{f"{w}{r}": f"v{r}" for r in range(8) for w in "ab"}}


def test_lock_follows_the_replaced_file(tmp_path: Path) -> None:
    """A waiter that wakes up on the inode write_atomic replaced must lock the new file, not the old one."""
    import fcntl
    import threading

    from kagiya.atomic import locked, write_atomic

    path = tmp_path / "f"
    path.write_text("0")
    order: list[str] = []
    with locked(path):
        def other() -> None:
            with locked(path):
                order.append("other:" + path.read_text())

        thread = threading.Thread(target=other)
        thread.start()
        write_atomic(path, b"1")
        order.append("first")
    thread.join(10)
    assert order == ["first", "other:1"]
    fd = os.open(path, os.O_RDONLY)  # and nothing is left locked
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))


def test_keygen_that_cannot_write_prints_path_and_errno(tmp_path: Path) -> None:
    keyring = tmp_path / "kr" / "keyring"
    proc = subprocess.run([sys.executable, "-m", "kagiya.cli", "secrets", "keygen"], env=_env(keyring),
                          capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"kagiya: error: cannot write the keyring {keyring}: File too large (errno 27 EFBIG); nothing was changed"]
    assert not keyring.exists() and [p.name for p in keyring.parent.iterdir()] == ["keyring.lock"]


def test_keygen_where_a_file_blocks_the_directory(tmp_path: Path) -> None:
    (tmp_path / "kr").write_text("a file, not a directory")
    keyring = tmp_path / "kr" / "keyring"
    proc = subprocess.run([sys.executable, "-m", "kagiya.cli", "secrets", "keygen"], env=_env(keyring),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"kagiya: error: cannot read the keyring {keyring}: Not a directory "
                                        "(errno 20 ENOTDIR)"]


def _editor(tmp_path: Path, script: str) -> str:
    editor = tmp_path / "editor.py"
    editor.write_text(f"import sys\np = sys.argv[1]\n{script}\n")
    return f"{sys.executable} {editor}"


def test_edit_only_one_binary_key(ksec: Any, keyring: Path, tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "s.yaml"
    blob = bytes(range(256))
    path.write_text(PLAIN + f"data:\n  bin: {base64.b64encode(blob).decode()}\n")
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    before = path.read_text()
    seen = tmp_path / "seen"
    monkeypatch.setenv("EDITOR", _editor(tmp_path, f"open({str(seen)!r}, 'wb').write(open(p, 'rb').read())\n"
                                                   "open(p, 'ab').write(b'\\xff\\x00')"))
    result = ksec("edit", "--only", "bin", str(path))
    assert result.exit_code == 0, result.stderr
    assert seen.read_bytes() == blob  # the editor got the decoded bytes
    doc = yaml.safe_load(ksec("decrypt", str(path)).stdout)
    assert base64.b64decode(doc["data"]["bin"]) == blob + b"\xff\x00"
    assert doc["stringData"] == {"base": "x"}
    unchanged = [ln for ln in before.splitlines() if ln.startswith("  base:")]
    assert unchanged and unchanged[0] in path.read_text().splitlines()  # other values keep their ciphertext


def test_edit_only_string_key_and_missing_key(ksec: Any, keyring: Path, tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "open(p, 'w').write('y')"))
    assert ksec("edit", "--only", "base", str(path)).exit_code == 0
    out = ksec("decrypt", str(path)).stdout
    assert yaml.safe_load(out)["stringData"] == {"base": "y"} and "base: 'y'" in out
    result = ksec("edit", "--only", "nope", str(path))
    assert result.exit_code == 2 and "has no key 'nope'" in result.stderr


def test_edit_refuses_when_the_file_changed_meanwhile(ksec: Any, keyring: Path, tmp_path: Path,
                                                      monkeypatch: Any) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    script = (f"import subprocess\nsubprocess.run([{sys.executable!r}, '-m', 'kagiya.cli', 'secrets', 'patch', "
              f"{str(path)!r}, '-s', 'other=1'], check=True)\nopen(p, 'a').write('  more: z\\n')")
    monkeypatch.setenv("EDITOR", _editor(tmp_path, script))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = ksec("edit", str(path))
    assert result.exit_code == 2
    assert "changed while you were editing" in result.stderr and "your edit is kept at" in result.stderr
    assert yaml.safe_load(ksec("decrypt", str(path)).stdout)["stringData"] == {"base": "x", "other": "1"}
