"""kubesec v1/v2 files carry no MAC, and kagiya never writes them, so lowering `v:3` to `v:2` would skip the MAC.
Reading one needs `--allow-unauthenticated`; re-sealing one (encrypt -i, rotate, patch, edit) too, since that would
bless its content with a fresh MAC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

PLAIN = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: hunter2\n"


@pytest.fixture
def v2_file(ksec: Any, tmp_path: Path) -> Path:
    f = tmp_path / "s.yaml"
    f.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(f)).exit_code == 0
    text = f.read_text().replace("# kubesec:v:4", "# kubesec:v:2")
    f.write_text("".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("# kubesec:mac:")))
    return f


def test_decrypt_of_v2_needs_the_flag(ksec: Any, v2_file: Path) -> None:
    result = ksec("decrypt", str(v2_file))
    assert result.exit_code != 0
    assert "kubesec v2, which has no MAC" in result.stderr and "--allow-unauthenticated" in result.stderr
    assert "hunter2" not in result.stdout
    ok = ksec("decrypt", "--allow-unauthenticated", str(v2_file))
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout == PLAIN


@pytest.mark.parametrize("command", [
    ["encrypt", "-i"], ["rotate"], ["patch", "-s", "other=x"], ["encrypt", "-k", "+local:second", "-i"],
])
def test_resealing_v2_needs_the_flag(ksec: Any, v2_file: Path, command: list[str]) -> None:
    before = v2_file.read_text()
    result = ksec(*command, str(v2_file))
    assert result.exit_code != 0
    assert "--allow-unauthenticated" in result.stderr
    assert v2_file.read_text() == before
    if "+local:second" in command:
        assert ksec("keygen", "second").exit_code == 0
    ok = ksec(*command[:1], "--allow-unauthenticated", *command[1:], str(v2_file))
    assert ok.exit_code == 0, ok.stderr
    after = v2_file.read_text()
    assert "# kubesec:v:4\n" in after and "# kubesec:mac:" in after
    assert ksec("decrypt", str(v2_file)).exit_code == 0


def test_edit_of_v2_needs_the_flag(ksec: Any, v2_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", "true")
    before = v2_file.read_text()
    result = ksec("edit", str(v2_file))
    assert result.exit_code != 0 and "--allow-unauthenticated" in result.stderr
    assert v2_file.read_text() == before


def test_version_line_must_match_the_body(ksec: Any, tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(PLAIN)
    assert ksec("encrypt", "-i", str(f)).exit_code == 0
    f.write_text(f.read_text().replace("# kubesec:v:4", "# kubesec:v:3"))
    result = ksec("decrypt", str(f))
    assert result.exit_code != 0 and "version line was changed" in result.stderr


def test_http_decrypt_refuses_v2(make_settings: Any, token_file: Path, tmp_path: Path, v2_file: Path,
                                 keyring: Path) -> None:
    from tests.conftest import bearer
    from tests.support.apps import kagiya_app

    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "secrets": {"keyring": str(keyring), "decrypt_groups": ["team-a"]}})
    with kagiya_app(settings) as app:
        reply = app.test_client().post("/v1/secrets/decrypt", data=v2_file.read_text(),
                                       headers={**bearer("approver-token-0003"), "Content-Type": "application/yaml"})
    assert reply.status_code == 400
    assert "no MAC" in reply.json["message"]
    assert "hunter2" not in reply.text
