"""The static token file behind `caller_from_request`: kube-apiserver CSV format, reload on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.providers.tokenfile import TokenFileProvider, parse_token_csv
from kagiya.errors import ConfigError


def test_parses_kube_apiserver_csv() -> None:
    users = parse_token_csv('t1,alice,uid1,"g1,g2"\nt2,bob,uid2\n# comment\n\n')
    assert sorted(u.username for u in users.values()) == ["alice", "bob"]
    alice = next(u for u in users.values() if u.username == "alice")
    assert alice == User(username="alice", uid="uid1", groups=("g1", "g2"))


@pytest.mark.parametrize("line", ["onlytoken\n", "t,,uid\n", ",user,uid\n"])
def test_malformed_rows_name_the_line(line: str) -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_token_csv("ok,user,uid\n" + line)


def test_reloads_when_file_changes_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text("t1,alice,u1\n")
    provider = TokenFileProvider(path)
    assert isinstance(provider.authenticate("t1"), User)
    path.write_text("t2,bob,u2\n")
    os.utime(path, ns=(1, 10**18))
    assert isinstance(provider.authenticate("t1"), Rejected)
    assert provider.authenticate("t2") == User("bob", "u2")
    path.write_text("broken\n")
    os.utime(path, ns=(1, 2 * 10**18))
    assert provider.authenticate("t2") == User("bob", "u2")


def test_missing_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token file"):
        TokenFileProvider(tmp_path / "absent.csv")
