"""`kagiya secrets check` (the pre-commit guard) accepts sops-encrypted Secrets without any key, so a repository
can hold both formats during a migration, and still flags a plaintext value slipped into a sops file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.secrets_sops.conftest import AgeIdentity, run_sops

SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2\n  user: app\n"


def test_sops_files_pass_and_slipped_plaintext_is_found(sops_bin: str, age_id: AgeIdentity, tmp_path: Path,
                                                        cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    regex = tmp_path / "regex.yaml"
    everything = tmp_path / "all.yaml"
    as_json = tmp_path / "s.json"
    regex.write_text(SECRET)
    everything.write_text(SECRET)
    as_json.write_text(json.dumps(yaml.safe_load(SECRET)))
    run_sops(sops_bin, "encrypt", "-i", "--age", age_id.recipient, "--encrypted-regex", "^(data|stringData)$",
             str(regex), cwd=tmp_path)
    for path in (everything, as_json):
        run_sops(sops_bin, "encrypt", "-i", "--age", age_id.recipient, str(path), cwd=tmp_path)
    monkeypatch.delenv("KAGIYA_AGE_KEY_FILE")  # the guard needs no key
    res = cli(["secrets", "check", str(regex), str(everything), str(as_json)])
    assert res.exit_code == 0, res.stderr
    lines = regex.read_text().splitlines(keepends=True)
    edited = ["    user: admin\n" if line.lstrip().startswith("user:") else line for line in lines]
    assert edited != lines
    regex.write_text("".join(edited))
    data = json.loads(as_json.read_text())
    data["stringData"]["password"] = "typed-in-later"
    as_json.write_text(json.dumps(data))
    res = cli(["secrets", "check", str(regex), str(everything), str(as_json)])
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [f"{regex}: stringData.user is plaintext in a sops file",
                                       f"{as_json}: stringData.password is plaintext in a sops file"]
    assert "admin" not in res.stderr and "typed-in-later" not in res.stderr
