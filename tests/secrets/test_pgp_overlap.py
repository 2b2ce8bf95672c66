"""Issue 13: with a pgp recipient, gpg runs while kagiya parses and encrypts values. The results and the errors
must be those of the sequential order: a malformed value is still reported as such, and a key gpg cannot use
still falls through to the next recipient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.secrets.conftest import PGP_A

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ndata:\n" + "".join(
    f"  k{i}: aHVudGVyMg==\n" for i in range(50))


def test_pgp_round_trip_with_many_values(ksec: Any, pgp_env: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", "-k", PGP_A, str(path)).exit_code == 0
    assert "aHVudGVyMg==" not in path.read_text()
    assert ksec("decrypt", str(path)).stdout == PLAIN


def test_a_malformed_value_is_reported_while_gpg_runs(ksec: Any, pgp_env: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    ksec("encrypt", "-i", "-k", PGP_A, str(path))
    text = path.read_text()
    start = text.index("  k7: ") + len("  k7: ")
    path.write_text(text[:start] + "not-a-kubesec-value" + text[text.index("\n", start):])
    result = ksec("decrypt", str(path))
    assert result.exit_code != 0
    assert "k7" in result.stderr and "not an encrypted kubesec value" in result.stderr


def test_a_bad_value_is_reported_though_gpg_already_started(ksec: Any, pgp_env: Any, tmp_path: Path) -> None:
    """With -k pgp:… on a plaintext file, gpg wraps the data key before the file is parsed; an invalid file
    still gets its own error, and is left as it was."""
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN.replace("  k3: aHVudGVyMg==", "  k3: not base64!"))
    before = path.read_text()
    result = ksec("encrypt", "-i", "-k", PGP_A, str(path))
    assert result.exit_code != 0 and "data.k3 is not valid base64" in result.stderr
    assert path.read_text() == before


def test_prestarted_wrap_opens_with_the_data_key_it_wrapped(ksec: Any, pgp_env: Any, keyring: Path,
                                                            tmp_path: Path, monkeypatch: Any) -> None:
    """Two recipients, pgp started early and local wrapped in seal: both must hold the same data key."""
    ksec("keygen", "mine")
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    assert ksec("encrypt", "-i", "-k", f"local:mine,{PGP_A}", str(path)).exit_code == 0
    assert ksec("decrypt", str(path)).stdout == PLAIN  # through pgp, the first line
    monkeypatch.setenv("KAGIYA_SECRETS_GNUPG_HOME", str(tmp_path / "empty-gnupg"))
    assert ksec("decrypt", str(path)).stdout == PLAIN  # through local
