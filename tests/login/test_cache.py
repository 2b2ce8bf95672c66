"""The token cache: private files, atomic writes, and nothing trusted from a damaged or exposed file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kagiya.login.cache import TokenCache, cache_key, default_cache_dir


def test_round_trip_and_modes(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "kagiya", cache_key("oidc", "https://idp", "kube"))
    with cache.locked() as entry:
        assert entry == {}
        cache.save({"id_token": "t", "expiry": 1})
    assert cache.load() == {"id_token": "t", "expiry": 1}
    assert stat.S_IMODE((tmp_path / "kagiya").stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "kagiya").iterdir() if p.name.startswith(".tmp")] == []


def test_damaged_or_exposed_files_count_as_empty(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path, "k")
    cache.save({"id_token": "t"})
    os.chmod(cache.path, 0o644)  # someone made it readable by others: do not use it
    assert cache.load() == {}
    cache.path.write_text("{not json")
    os.chmod(cache.path, 0o600)
    assert cache.load() == {}
    cache.path.write_text("[1]")
    assert cache.load() == {}


def test_keys_differ_per_issuer_client_and_scopes() -> None:
    keys = {cache_key("oidc", i, c, s) for i in ("https://a", "https://b") for c in ("x", "y") for s in ("", "g")}
    assert len(keys) == 8


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "kagiya"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "kagiya"
