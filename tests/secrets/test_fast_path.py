"""Must show (issue 13): the hot verbs run without click and give exactly what the click commands give; `kagiya
--help` printed without click equals click's; anything unusual still reaches click (help, usage errors)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n  b: y\n"


def _run(entry: Any, args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = entry(list(args))
    return code, out.getvalue(), err.getvalue()


def test_fast_path_matches_click(keyring: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kagiya import cli, cli_app

    plain = tmp_path / "p.yaml"
    plain.write_text(PLAIN)
    enc = tmp_path / "e.yaml"
    assert _run(cli.main, ["secrets", "encrypt", "-o", str(enc), str(plain)])[0] == 0
    monkeypatch.chdir(tmp_path)
    cases = [["decrypt", str(enc)], ["decrypt", "--cleartext", str(enc)], ["decrypt", "-i", "-o", "x", str(enc)],
             ["decrypt", str(tmp_path / "missing")], ["check", str(plain), str(enc)], ["check", str(enc)],
             ["encrypt", "-k", "vault:x", str(plain)], ["encrypt", "--key=local:nosuch", str(plain)],
             ["decrypt", str(plain)], ["decrypt", "--output", str(tmp_path / "o1"), str(enc)]]
    for case in cases:
        fast = _run(cli.main, ["secrets", *case])
        slow = _run(cli_app.main, ["secrets", *case])
        assert fast == slow, case
    assert (tmp_path / "o1").read_text() == PLAIN.replace("b: y", "b: 'y'")


@pytest.mark.parametrize("args", [["decrypt", "--help"], ["decrypt", "--nosuch", "f"], ["decrypt", "a", "b"],
                                  ["encrypt", "-o"], ["decrypt", "--for-diff", "f"], ["check", "--", "f"]])
def test_unusual_arguments_go_to_click(args: list[str]) -> None:
    from kagiya.secrets import fast

    assert fast.run(args) is None


def test_root_help_without_click_equals_clicks() -> None:
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(REPO)}
    outs = [subprocess.run([sys.executable, "-c", f"import sys; from kagiya.{mod} import main; main(['--help'])"],
                           env=env, capture_output=True, text=True, timeout=60).stdout for mod in ("cli", "cli_app")]
    assert outs[0] == outs[1] and "Commands:" in outs[0]


SCRIPT = """
import contextlib, io, json, sys
from kagiya.cli import main
codes = []
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    codes.append(main(["secrets", "encrypt", "-i", sys.argv[1]]))
    codes.append(main(["secrets", "decrypt", sys.argv[1]]))
    codes.append(main(["secrets", "check", sys.argv[1]]))
    codes.append(main(["--help"]))
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_hot_verbs_import_no_click_and_no_config(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    env["KAGIYA_KEYRING"] = str(tmp_path / "keyring")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0]
    assert [m for m in report["modules"] if m.split(".")[0] in ("click", "flask", "boto3", "google", "kubernetes")
            or m in ("kagiya.config", "kagiya.cli_app")] == []


def test_shell_completion_reaches_click(tmp_path: Path) -> None:
    env = {**os.environ, "_KAGIYA_COMPLETE": "bash_complete", "COMP_WORDS": "kagiya secrets de", "COMP_CWORD": "2",
           "PYTHONPATH": str(REPO)}
    code = "import sys; sys.argv[0] = 'kagiya'; from kagiya.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,decrypt" in proc.stdout.splitlines()
    del tmp_path


def test_fast_path_defaults_equal_the_settings_section() -> None:
    import dataclasses

    from kagiya.secrets.fast import DefaultSettings
    from kagiya.secrets.settings import SecretsSettings

    fast = DefaultSettings("/k")
    for f in dataclasses.fields(SecretsSettings):
        expected = "/k" if f.name == "keyring" else getattr(SecretsSettings(), f.name)
        assert getattr(fast, f.name) == expected, f.name


def test_decrypt_of_a_plain_file_imports_no_yaml_parser(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(path)).exit_code == 0
    code = ("import sys, io, contextlib\nfrom kagiya.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    rc = main(['secrets', 'decrypt', sys.argv[1]])\n"
            "print(rc, out.getvalue() == sys.argv[2], sorted(m for m in sys.modules if m.split('.')[0] in "
            "('yaml', 'click', 'dataclasses', 'kagiya')))")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}, "KAGIYA_KEYRING": str(keyring)}
    proc = subprocess.run([sys.executable, "-c", code, str(path), PLAIN.replace("b: y", "b: 'y'")], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.stdout.startswith("0 True "), proc.stdout + proc.stderr
    assert "yaml" not in proc.stdout and "click" not in proc.stdout and "dataclasses" not in proc.stdout
    assert "kagiya.secrets.scan" in proc.stdout
