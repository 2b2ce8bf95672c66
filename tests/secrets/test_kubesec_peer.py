"""Must show (issue 17.1, 17.2): the real kubesec 0.9.2 binary opens kagiya files that also carry a `local:`
recipient (written as `# kagiya:local:…`, a comment kubesec ignores), its `patch` keeps the data key, and when
such a rewrite drops kagiya's line the next kagiya command says so. kagiya's decrypt of a kubesec-written file
quotes YAML 1.1 look-alikes. Skipped with a reason when the peer binaries are absent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.secrets.conftest import PGP_A

PEERS = Path(__file__).resolve().parents[2].parent / "shared" / "peers"
KUBESEC = PEERS / "kubesec"
YAML_CHECK = PEERS / "k8s-yaml-check"
pytestmark = pytest.mark.skipif(not KUBESEC.exists(), reason=f"kubesec 0.9.2 peer not found at {KUBESEC}")

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque\nstringData:\n  password: hunter2\n"


def kubesec(gpg: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GNUPGHOME": str(gpg.path)}
    return subprocess.run([str(KUBESEC), *args], capture_output=True, text=True, timeout=60, env=env)


def test_local_plus_pgp_file_opens_in_kubesec_and_survives_its_patch(ksec: Any, pgp_env: Any, keyring: Path,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("keygen", "me").exit_code == 0
    assert ksec("encrypt", "-i", "-k", f"local:me,{PGP_A}", str(path)).exit_code == 0
    encrypted = path.read_text()
    assert "# kagiya:local:me:" in encrypted and "# kubesec:local:" not in encrypted
    decrypted = kubesec(pgp_env, "decrypt", str(path))
    assert decrypted.returncode == 0, decrypted.stderr
    assert yaml.safe_load(decrypted.stdout)["stringData"]["password"] == "hunter2"

    patched = kubesec(pgp_env, "patch", "-i", str(path), "--data", "extra=more")
    assert patched.returncode == 0, patched.stderr
    assert "# kagiya:local:" not in path.read_text()  # kubesec rewrote the file and dropped our line
    # kagiya with only the local key: one line saying what happened and how to repair it
    result = ksec("decrypt", "--gnupg-home", str(tmp_path / "no-gnupg"), str(path))
    assert result.exit_code == 7
    assert "a kubesec rewrite" in result.stderr and "-k +local:NAME" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # a pgp holder adds it back; the data key stayed the same through kubesec's patch, so values are kept
    assert ksec("encrypt", "-i", "-k", "+local:me", str(path)).exit_code == 0
    result = ksec("decrypt", "--gnupg-home", str(tmp_path / "no-gnupg"), str(path))
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["stringData"]["password"] == "hunter2"
    assert kubesec(pgp_env, "decrypt", str(path)).returncode == 0


def test_old_kubesec_local_spelling_is_still_read(ksec: Any, keyring: Path, tmp_path: Path) -> None:
    """Files written before `# kagiya:` lines existed carry `# kubesec:local:` (MAC over that id): still open."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kagiya.secrets import kubesec as fmt
    from kagiya.secrets import manifest
    from kagiya.secrets.keys import local
    from kagiya.secrets.settings import SecretsSettings

    sset = SecretsSettings(keyring=str(keyring))
    local.generate(sset, "old")
    m = manifest.parse(PLAIN)
    dek = os.urandom(32)
    aead = AESGCM(dek)
    reps = [(s, fmt.encrypt_value(aead, s.key, s.value)) for s in m.slots]
    line = fmt.RecipientLine("local", "old", local.open_key("old", sset).wrap(dek))
    aad = fmt.mac_input([([], [("password", "hunter2")])], ["old"])
    text = manifest.splice(m.body, reps) + fmt.Trailer(4, [line], fmt.make_mac(aead, aad)).render()
    assert "# kubesec:local:old:" in text
    path = tmp_path / "old.yaml"
    path.write_text(text)
    assert ksec("decrypt", str(path)).stdout == PLAIN
    assert ksec("encrypt", "-i", str(path)).exit_code == 0  # re-sealing moves it to the new spelling
    assert "# kagiya:local:old:" in path.read_text() and "# kubesec:local:" not in path.read_text()
    assert ksec("decrypt", str(path)).stdout == PLAIN


def test_kubesec_written_lookalikes_decrypt_quoted(ksec: Any, pgp_env: Any, tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\nstringData:\n"
                    "  a: \"y\"\n  b: \"1e3\"\n  c: \"0x1F\"\n  d: \"2001-12-14\"\n  e: plain\n")
    enc = kubesec(pgp_env, "encrypt", "-k", PGP_A.removeprefix("pgp:"), "-i", str(path))
    assert enc.returncode == 0, enc.stderr
    result = ksec("decrypt", str(path))
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["stringData"] == {"a": "y", "b": "1e3", "c": "0x1F", "d": "2001-12-14",
                                                           "e": "plain"}
    if YAML_CHECK.exists():
        out = tmp_path / "plain.yaml"
        out.write_text(result.stdout)
        check = subprocess.run([str(YAML_CHECK), str(out)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout


TEMPLATE = ("#comment\nUSER={{ .data.user }}\n{{- range $k, $v := .stringData }}\n{{ $k }}={{ $v }}{{ end }}\n"
            "DASH={{ index .stringData \"a-b\" }} NAME={{ .metadata.name }}\n")


@pytest.mark.parametrize("cleartext", [True, False])
def test_decrypt_template_prints_what_kubesec_prints(ksec: Any, pgp_env: Any, tmp_path: Path,
                                                     cleartext: bool) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\ndata:\n  user: YWRtaW4=\n"
                    "stringData:\n  a-b: dash\n  z: \"y\"\n")
    assert kubesec(pgp_env, "encrypt", "-k", PGP_A.removeprefix("pgp:"), "-i", str(path)).returncode == 0
    flags = ["--cleartext"] if cleartext else []
    theirs = kubesec(pgp_env, "decrypt", *flags, "--template", TEMPLATE, str(path))
    assert theirs.returncode == 0, theirs.stderr
    ours = ksec("decrypt", *flags, "--template", TEMPLATE, str(path))
    assert ours.exit_code == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    missing = ksec("decrypt", "--template", "{{ .data.nope }}", str(path))
    assert missing.exit_code == 2 and "no entry for key 'nope'" in missing.stderr
    assert kubesec(pgp_env, "decrypt", "--template", "{{ .data.nope }}", str(path)).returncode != 0


def test_multi_secret_file_what_kubesec_does_with_it(ksec: Any, pgp_env: Any, tmp_path: Path) -> None:
    """docs/format.md's claim: kubesec fails the MAC of a several-Secret file, and the `--recompute-mac` it
    suggests writes back the first Secret only."""
    path = tmp_path / "two.yaml"
    path.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\nstringData:\n  x: \"1\"\n---\n"
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b\nstringData:\n  y: \"2\"\n")
    assert ksec("encrypt", "-i", "-k", PGP_A, str(path)).exit_code == 0
    decrypted = kubesec(pgp_env, "decrypt", str(path))
    assert decrypted.returncode != 0 and "MACs don't match" in decrypted.stderr
    env = {**os.environ, "GNUPGHOME": str(pgp_env.path), "EDITOR": "true"}
    subprocess.run([str(KUBESEC), "edit", "-i", "--recompute-mac", str(path)], capture_output=True, text=True,
                   timeout=60, env=env, check=True)
    assert path.read_text().count("kind: Secret") == 1
