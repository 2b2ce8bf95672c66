"""Several processes creating the first local key at once (pre-commit runs hooks in parallel): every file they
encrypt must open afterwards, so no process may overwrite a key another one already wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kagiya.secrets import envelope, manifest
from kagiya.secrets.settings import SecretsSettings

N = 8
#: Each child imports everything first, then waits for the gate file, so all of them hit the empty keyring together.
CHILD = """
import os, sys, time
from kagiya.cli import main
from kagiya.secrets import ops, envelope, manifest  # noqa: F401  (imported before the gate opens)
from kagiya.secrets.keys import local  # noqa: F401
gate = sys.argv[1]
while not os.path.exists(gate):
    time.sleep(0.001)
sys.exit(main(["secrets", "encrypt", "-i", sys.argv[2]]))
"""


def test_parallel_first_use_loses_no_key(tmp_path: Path, keyring: Path) -> None:
    files = []
    for i in range(N):
        f = tmp_path / f"s{i}.yaml"
        f.write_text(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{i}\nstringData:\n  password: pw-{i}\n")
        files.append(f)
    gate = tmp_path / "gate"
    env = {**os.environ, "KAGIYA_KEYRING": str(keyring)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(gate), str(f)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for f in files]
    import time
    time.sleep(1.5)  # let every child finish importing
    gate.write_text("go")
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    sett = SecretsSettings(keyring=str(keyring))
    for i, f in enumerate(files):
        opened = envelope.open_manifest(manifest.parse(f.read_text()), sett)
        assert list(opened.plaintexts.values()) == [f"pw-{i}"]
    assert keyring.read_text().count("\ndefault ") == 1
