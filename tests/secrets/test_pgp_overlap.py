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
