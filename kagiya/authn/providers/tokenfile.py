"""Static token file in kube-apiserver's `--token-auth-file` CSV format: `token,user,uid,"group1,group2"`.

The file is re-read when its mtime or size changes, so rotating tokens needs no restart. Lookups hash the
presented token with SHA-256 and look the digest up, so the time taken does not depend on how much of a
known token the presented one shares (the comparison never sees the token itself).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.shapes import TokenShape
from kagiya.errors import ConfigError
from kagiya.private_files import warn_if_shared

MAX_FILE_BYTES = 4 * 1024 * 1024


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_token_csv(text: str, source: str = "token file") -> dict[bytes, User]:
    """Parse the CSV; raises ConfigError naming the line for a malformed row."""
    users: dict[bytes, User] = {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ConfigError(f"{source}: not valid CSV ({exc})") from None
    for lineno, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ConfigError(f"{source} line {lineno}: expected token,user,uid[,\"groups\"]")
        token, username, uid = (c.strip() for c in row[:3])
        if not token or not username:
            raise ConfigError(f"{source} line {lineno}: token and user must not be empty")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        users[token_digest(token)] = User(username=username, uid=uid, groups=groups)
    return users


class TokenFileProvider:
    """Provider `token-auth` (Guard's name): static bearer tokens from a CSV file."""

    name = "token-auth"
    third_party = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[bytes, User] = {}
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"token file {self.path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        if st.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"token file {self.path}: larger than {MAX_FILE_BYTES} bytes")
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"token file {self.path}: not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"token file {self.path}: {exc.strerror}") from None
        users = parse_token_csv(text, str(self.path))
        warn_if_shared(self.path, "token file")  # bearer tokens: should be 0600 (hashed lookups, still credentials)
        self._users, self._stamp = users, stamp

    def lookup(self, token: str) -> User | None:
        with self._lock:
            try:
                self._load()
            except ConfigError:
                # Keep serving the last good file; a broken edit must not lock everyone out.
                if self._stamp is None:
                    raise
        return self._users.get(token_digest(token))

    def claims(self, shape: TokenShape) -> bool:
        """The tokens the file holds (a local lookup)."""
        return self.lookup(shape.token) is not None

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected:
        user = self.lookup(token)
        return user if user is not None else Rejected("invalid token")


def from_config(name: str, options: dict[str, object]) -> TokenFileProvider:
    path = options.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"authn provider token-auth/{name}: 'path' is required")
    return TokenFileProvider(path)
