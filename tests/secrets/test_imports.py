"""The CLI path must start fast: `kagiya secrets` never imports Flask or a cloud SDK (STYLE.md habit 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("flask", "werkzeug", "boto3", "botocore", "google", "kubernetes", "gnupg", "sqlalchemy")

SCRIPT = """
import contextlib, io, json, sys
from kagiya.cli import main
codes = []
with contextlib.redirect_stdout(io.StringIO()):
    codes.append(main(["secrets", "--help"]))
    codes.append(main(["secrets", "encrypt", "-i", sys.argv[1]]))
    codes.append(main(["secrets", "decrypt", sys.argv[1]]))
    codes.append(main(["secrets", "check", sys.argv[1]]))
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_secrets_cli_imports_no_heavy_module(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("kind: Secret\nmetadata:\n  name: s\nstringData:\n  a: b\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    env["KAGIYA_KEYRING"] = str(tmp_path / "keyring")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0]
    loaded = [m for m in report["modules"] if m.split(".")[0] in HEAVY]
    assert loaded == []
    assert "kagiya.secrets.keys.local" in report["modules"]
