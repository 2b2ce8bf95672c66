"""Recipient URIs are compared in canonical form: `pgp:<lower-case fingerprint>` (or with gpg's spaces) names the
same key as the upper-case one kubesec writes, so adding it again changes nothing and removing it works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kagiya.secrets import envelope
from kagiya.secrets.keys import base
from tests.support.gpg import TEST_KEY_A_FPR

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"
SPACED = " ".join(TEST_KEY_A_FPR[i:i + 4] for i in range(0, 40, 4))


@pytest.mark.parametrize("spelling", [TEST_KEY_A_FPR.lower(), f" {TEST_KEY_A_FPR} ", SPACED])
def test_normalize_uri(spelling: str) -> None:
    assert base.normalize_uri(f"pgp:{spelling}") == f"pgp:{TEST_KEY_A_FPR}"


def test_order_recipients_drops_case_duplicates() -> None:
    assert envelope.order_recipients(["local:a", f"pgp:{TEST_KEY_A_FPR}", f"pgp:{TEST_KEY_A_FPR.lower()}"]) == [
        f"pgp:{TEST_KEY_A_FPR}", "local:a"]
    assert envelope.order_recipients(["local:A", "local:a"]) == ["local:A", "local:a"]  # local names keep case


def test_adding_and_removing_lower_case_pgp(ksec: Any, pgp_env: Any, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(PLAIN)
    assert ksec("keygen").exit_code == 0
    assert ksec("encrypt", "-k", f"local:default,pgp:{TEST_KEY_A_FPR}", "-i", str(f)).exit_code == 0
    sealed = f.read_text()
    result = ksec("encrypt", "-k", f"+pgp:{TEST_KEY_A_FPR.lower()}", "-i", str(f))
    assert result.exit_code == 0, result.stderr
    assert f.read_text() == sealed  # already a recipient: nothing changes, no second line
    assert sealed.count("# kubesec:pgp:") == 1
    result = ksec("encrypt", "-k", f"-pgp:{TEST_KEY_A_FPR.lower()}", "-i", str(f))
    assert result.exit_code == 0, result.stderr
    assert "# kubesec:pgp:" not in f.read_text()
    assert ksec("decrypt", str(f)).stdout == PLAIN
