"""The `kagiya secrets` commands as a user runs them: recipients, rules, rotate, introspect, keygen, stdin/stdout."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from tests.secrets.conftest import PGP_A

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: YWFh\n  b: YmJi\nstringData:\n  c: ccc\n"


def write(tmp_path: Path, text: str = PLAIN, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def trailer(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("# kubesec:", "# kagiya:"))]


def value_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  ") and ":" in line][1:]


def keep_only(keyring: Path, name: str) -> None:
    lines = [ln for ln in keyring.read_text().splitlines() if ln.startswith(name + " ")]
    keyring.write_text("\n".join(lines) + "\n")


def test_default_recipient_is_generated_on_first_use(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = write(tmp_path)
    result = ksec("encrypt", "-i", str(path))
    assert result.exit_code == 0
    assert "created local key 'default'" in result.stderr
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert trailer(path.read_text())[2].startswith("# kagiya:local:default:")  # after kubesec's own lines
    again = ksec("encrypt", "-o", str(tmp_path / "o.yaml"), str(write(tmp_path, name="t.yaml")))
    assert again.exit_code == 0 and again.stderr == ""


def test_cli_leaves_the_garbage_collector_on(ksec: Any, tmp_path: Path) -> None:
    import gc

    assert ksec("encrypt", str(write(tmp_path))).exit_code == 0
    assert ksec("decrypt", "-", input="nonsense").exit_code != 0
    assert gc.isenabled()


def test_keygen_refuses_to_overwrite(ksec: Any, keyring: Path) -> None:
    assert ksec("keygen", "team").exit_code == 0
    before = keyring.read_bytes()
    result = ksec("keygen", "team")
    assert result.exit_code != 0 and "already exists" in result.stderr
    assert keyring.read_bytes() == before


def test_two_local_recipients_either_opens(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    ksec("keygen", "a")
    ksec("keygen", "b")
    path = write(tmp_path)
    assert ksec("encrypt", "-i", "-k", "local:a", "-k", "local:b", str(path)).exit_code == 0
    full = keyring.read_text()
    for name in ("a", "b"):
        keyring.write_text(full)
        keep_only(keyring, name)
        result = ksec("decrypt", str(path))
        assert result.exit_code == 0, result.stderr
        assert result.stdout == PLAIN


def test_pgp_and_local_recipients_either_opens(ksec: Any, keyring: Path, pgp_env: Any, tmp_path: Path,
                                               monkeypatch: Any) -> None:
    ksec("keygen", "mine")
    path = write(tmp_path)
    assert ksec("encrypt", "-i", "-k", f"local:mine,{PGP_A}", str(path)).exit_code == 0
    lines = trailer(path.read_text())
    assert lines[1].startswith(f"# kubesec:{PGP_A}:") and lines[3].startswith("# kagiya:local:mine:")  # pgp first
    saved = keyring.read_text()
    keyring.write_text("")  # only gpg left
    assert ksec("decrypt", str(path)).stdout == PLAIN
    keyring.write_text(saved)
    monkeypatch.setenv("KAGIYA_SECRETS_GNUPG_HOME", str(tmp_path / "empty-gnupg"))
    assert ksec("decrypt", str(path)).stdout == PLAIN


def test_adding_a_recipient_keeps_the_dek_removing_rotates(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    ksec("keygen", "a")
    ksec("keygen", "b")
    path = write(tmp_path)
    ksec("encrypt", "-i", "-k", "local:a", str(path))
    first = path.read_text()
    assert ksec("encrypt", "-i", "-k", "+local:b", str(path)).exit_code == 0
    added = path.read_text()
    assert value_lines(added) == value_lines(first)
    assert trailer(added)[2] == trailer(first)[2] and len(trailer(added)) == 4
    # the MAC covers the ids of `# kubesec:` lines only, as kubesec computes it; `# kagiya:` lines are bound by
    # their wrapped key (a swapped one yields another data key, which fails every value and the MAC)
    assert trailer(added)[1] == trailer(first)[1]
    assert ksec("encrypt", "-i", "-k", "-local:a", str(path)).exit_code == 0
    removed = path.read_text()
    assert [r.split(":")[2] for r in trailer(removed) if r.startswith("# kagiya:")] == ["b"]
    assert all(x != y for x, y in zip(value_lines(removed), value_lines(added), strict=True))
    result = ksec("encrypt", "-i", "-k", "-local:zzz", str(path))
    assert result.exit_code != 0 and "not a recipient" in result.stderr


def test_rotate_changes_every_value_and_keeps_plaintext(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = write(tmp_path)
    ksec("encrypt", "-i", str(path))
    before = path.read_text()
    assert ksec("rotate", str(path)).exit_code == 0
    after = path.read_text()
    assert all(x != y for x, y in zip(value_lines(before), value_lines(after), strict=True))
    assert trailer(before)[1] != trailer(after)[1]
    assert ksec("decrypt", str(path)).stdout == PLAIN


def test_introspect_lists_recipients_without_keys(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    ksec("keygen", "a")
    path = write(tmp_path)
    ksec("encrypt", "-i", "-k", "local:a", str(path))
    keyring.unlink()
    result = ksec("introspect", str(path))
    assert result.exit_code == 0
    assert "kubesec v4, MAC present" in result.stdout and "  local:a" in result.stdout
    assert "Secret default/s: data.a data.b stringData.c" in result.stdout


def test_stdin_to_stdout_and_cleartext(ksec: Any, keyring: Path) -> None:
    text = "kind: Secret\nmetadata:\n  name: s\ndata:\n  pw: hunter2\n"
    enc = ksec("encrypt", "--cleartext", "-", input=text)
    assert enc.exit_code == 0, enc.stderr
    plain = ksec("decrypt", input=enc.stdout)
    assert yaml.safe_load(plain.stdout)["data"]["pw"] == "aHVudGVyMg=="
    clear = ksec("decrypt", "--cleartext", "-", input=enc.stdout)
    assert yaml.safe_load(clear.stdout)["data"]["pw"] == "hunter2"


def test_creation_rules_pick_recipients(ksec: Any, keyring: Path, tmp_path: Path, monkeypatch: Any) -> None:
    ksec("keygen", "prod")
    ksec("keygen", "dev")
    (tmp_path / ".kagiya.yaml").write_text(
        "creation_rules:\n  - path_regex: ^prod/\n    recipients: [local:prod]\n  - recipients: local:dev\n")
    (tmp_path / "prod").mkdir()
    (tmp_path / "dev").mkdir()
    prod, dev = write(tmp_path / "prod"), write(tmp_path / "dev")
    for path, name in ((prod, "prod"), (dev, "dev")):
        assert ksec("encrypt", "-i", str(path)).exit_code == 0
        assert trailer(path.read_text())[2].startswith(f"# kagiya:local:{name}:")
    (tmp_path / ".kagiya.yaml").write_text("creation_rules:\n  - recipients: []\n")
    bad = ksec("encrypt", str(write(tmp_path, name="x.yaml")))
    assert bad.exit_code != 0 and ".kagiya.yaml" in bad.stderr


def test_create_and_patch(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    src = tmp_path / "cert.pem"
    src.write_bytes(b"\x00\x01binary")
    out = tmp_path / "new.yaml"
    result = ksec("create", "db", "-n", "prod", "-d", "user=admin", "-d", f"cert=file:{src}", "-s", "dsn=pg://x",
                  "-o", str(out))
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(ksec("decrypt", str(out)).stdout)
    assert doc["metadata"] == {"name": "db", "namespace": "prod"}
    assert doc["data"] == {"user": "YWRtaW4=", "cert": "AAFiaW5hcnk="} and doc["stringData"] == {"dsn": "pg://x"}
    before = out.read_text()
    assert ksec("patch", str(out), "-s", "~dsn", "-d", "extra=more").exit_code == 0
    after = out.read_text()
    doc = yaml.safe_load(ksec("decrypt", str(out)).stdout)
    assert "stringData" not in doc or not doc["stringData"]
    assert doc["data"] == {"user": "YWRtaW4=", "cert": "AAFiaW5hcnk=", "extra": "bW9yZQ=="}
    kept = [line for line in before.splitlines() if line.startswith(("  user:", "  cert:"))]
    assert all(line in after.splitlines() for line in kept)
    assert os.stat(out).st_mode & 0o777 == 0o600


def test_plaintext_added_to_an_encrypted_file_is_refused_with_a_hint(ksec: Any, keyring: Path,
                                                                    tmp_path: Path) -> None:
    path = write(tmp_path)
    ksec("encrypt", "-i", str(path))
    path.write_text(path.read_text().replace("stringData:\n", "stringData:\n  new: value\n"))
    before = path.read_bytes()
    result = ksec("encrypt", "-i", str(path))
    assert result.exit_code != 0 and "'stringData.new' is not an encrypted kubesec value" in result.stderr
    assert "kagiya secrets patch" in result.stderr and path.read_bytes() == before


def test_patch_picks_one_of_several_secrets_by_name(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    path = write(tmp_path, PLAIN + "---\n" + PLAIN.replace("name: s", "name: t"))
    ksec("encrypt", "-i", str(path))
    result = ksec("patch", str(path), "-s", "c=new")
    assert result.exit_code != 0 and "pick one Secret with --name (found: default/s, default/t)" in result.stderr
    assert ksec("patch", str(path), "--name", "t", "-s", "c=new").exit_code == 0
    docs = list(yaml.safe_load_all(ksec("decrypt", str(path)).stdout))
    assert [d["stringData"]["c"] for d in docs] == ["ccc", "new"]
