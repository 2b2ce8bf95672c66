"""At rest: data dir 0700, database (and its WAL) 0600, spill file 0600; keys refuse group/world-readable files;
a shared token file warns."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from kagiya.errors import ConfigError
from tests.support.apps import kagiya_app


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_data_dir_is_private(make_settings: Any, token_file: Path, tmp_path: Path) -> None:
    token_file.chmod(0o600)
    data = tmp_path / "fresh" / "kagiya"
    settings = make_settings({"data_dir": str(data), "authn": {"token_file": str(token_file)}})
    with kagiya_app(settings) as app:
        app.test_client().post("/authn/tokenreviews", json={"apiVersion": "authentication.k8s.io/v1",
                                                            "kind": "TokenReview", "spec": {"token": "x" * 20}})
        assert mode(data) == 0o700
        assert mode(data / "kagiya.db") == 0o600
        assert mode(data / "kagiya.db-wal") == 0o600  # SQLite gives its WAL the database's mode
        assert mode(data / "audit-spill.jsonl") == 0o600


def test_a_cli_command_creating_the_data_dir_makes_it_private(runner: Any, tmp_path: Path) -> None:
    """`kagiya authn init ca` on a fresh machine creates <data_dir>/pki: the data dir it creates on the way must be
    0700 too (the server only warns about an existing shared one, so a 0755 made here would stay)."""
    import os

    data = tmp_path / "new" / "data"
    old = os.umask(0o022)
    try:
        result = runner(["authn", "init", "ca"], env={"KAGIYA_DATA_DIR": str(data)})
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    assert mode(data) == 0o700 and mode(data / "pki") == 0o700 and mode(tmp_path / "new") == 0o700


def test_an_existing_shared_database_is_tightened(settings: Any, data_dir: Path, caplog: Any) -> None:
    db = data_dir / "kagiya.db"
    db.touch()
    db.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="kagiya.store")
    with kagiya_app(settings):
        assert mode(db) == 0o600
    assert any("changed to 0600" in r.getMessage() for r in caplog.records)


def test_wal_files_left_by_a_killed_replica_are_tightened_too(settings: Any, data_dir: Path) -> None:
    """Upgrading from a 0644 database: a replica that was killed leaves its -wal and -shm behind at 0644, and
    SQLite reuses them as they are (it gives the database's mode only to files it creates)."""
    import subprocess
    import sys

    db = data_dir / "kagiya.db"
    subprocess.run([sys.executable, "-c", "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE t (x)'); "
                    "c.execute('INSERT INTO t VALUES (1)'); c.commit(); os._exit(0)", str(db)], check=True)
    leftovers = [db, data_dir / "kagiya.db-wal", data_dir / "kagiya.db-shm"]
    for path in leftovers:
        assert path.exists(), path
        path.chmod(0o644)
    with kagiya_app(settings):
        assert [mode(p) for p in leftovers] == [0o600] * 3


def test_shared_keys_refuse_a_database_others_can_read(app: Any, data_dir: Path) -> None:
    store = app.extensions["kagiya.store"]
    assert len(store.shared_key("audit-fingerprint")) == 32
    (data_dir / "kagiya.db").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        store.shared_key("audit-fingerprint")


def test_session_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    from kagiya.iam.identity import session_keys

    keys = tmp_path / "session-keys"
    keys.write_text("k" * 40 + "\n")
    keys.chmod(0o640)
    with pytest.raises(ConfigError, match="accessible by group or others"):
        session_keys(str(keys), None)
    keys.chmod(0o600)
    assert session_keys(str(keys), None) == [b"k" * 40]


def test_a_shared_token_file_warns(make_settings: Any, token_file: Path, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="kagiya.store")
    token_file.chmod(0o644)
    with kagiya_app(make_settings({"authn": {"token_file": str(token_file)}})):
        pass
    assert any("token file" in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)
    caplog.clear()
    token_file.chmod(0o600)
    with kagiya_app(make_settings({"authn": {"token_file": str(token_file)}})):
        pass
    assert not any("token file" in r.getMessage() for r in caplog.records)
