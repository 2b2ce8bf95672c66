"""`kagiya login`'s token cache: one 0600 JSON file per issuer/client (or static/LDAP profile), with a lock.

Like kubelogin, the cache lives under `${XDG_CACHE_HOME:-~/.cache}/kagiya/` (override with `--cache-dir`), in a
0700 directory. Each file is named by a hash of what identifies the login (issuer, client id, scopes), so two
clusters that share an issuer share tokens and two issuers never do. A sibling `.lock` file is held with
`fcntl.flock` for the whole get-or-login, so parallel kubectl calls (kubectl runs the plugin once per process)
wait for one login instead of opening several browsers. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kagiya.errors import ConfigError

MAX_CACHE_BYTES = 256 * 1024


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kagiya"


def cache_key(*parts: str) -> str:
    """A file-name-safe key for a login profile; the parts are hashed so no URL or user name shows in `ls`."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


class TokenCache:
    """`with cache.locked() as entry: ...; cache.save(new)` (entry is {} when nothing is cached)."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = directory
        self.path = directory / f"{key}.json"
        self.lock_path = directory / f"{key}.lock"

    def _ensure_dir(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"token cache directory {self.directory}: {exc.strerror}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Hold the profile's lock and yield its cached entry ({} if none or unreadable)."""
        self._ensure_dir()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self.load()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def load(self) -> dict[str, Any]:
        """The cached entry; a corrupt, oversized or foreign-readable file counts as empty (and is replaced)."""
        try:
            st = self.path.stat()
            if st.st_size > MAX_CACHE_BYTES or st.st_mode & 0o077:
                return {}
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, entry: dict[str, Any]) -> None:
        """Atomically replace the entry; the file is 0600 from the moment it exists."""
        from kagiya.atomic import write_atomic

        self._ensure_dir()
        write_atomic(self.path, json.dumps(entry).encode("utf-8"), 0o600)

    def clear(self) -> bool:
        """Remove the cached entry; True if there was one."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False
