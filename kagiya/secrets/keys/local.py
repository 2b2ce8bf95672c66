"""`local:NAME`: a 256-bit key in a 0600 keyring file, the zero-setup recipient (a kagiya extension).

The keyring lives at `secrets.keyring` / `KAGIYA_KEYRING`, else `${XDG_CONFIG_HOME:-~/.config}/kagiya/keyring`,
one `NAME base64(key)` line per key. Wrapping is AES-256-GCM under the keyring key with a fresh 12-byte nonce
and `kagiya local:NAME` as associated data, so a blob moved onto another key name fails to unwrap.
Blob = nonce || ciphertext || tag. kubesec does not know this scheme (docs/format.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat

from kagiya.errors import Conflict, CryptoError, KagiyaError
from kagiya.secrets.aesgcm import AESGCM
from kagiya.secrets.keys.base import DEK_BYTES, BadKeyName, KeyUnavailable
from kagiya.secrets.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NONCE = 12


def keyring_file(settings: object) -> str:
    """The keyring's path as a string (os.path: the decrypt path does not import pathlib)."""
    configured = getattr(settings, "keyring", "") or os.environ.get("KAGIYA_KEYRING", "")
    if configured:
        return os.path.normpath(os.path.expanduser(configured))
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.normpath(os.path.join(base, "kagiya", "keyring"))


def keyring_path(settings: object) -> Path:
    from pathlib import Path

    return Path(keyring_file(settings))


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadKeyName(f"local key name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return name


def read_keyring(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Name -> key. A missing file is an empty keyring; a group/world-readable one is refused."""
    try:
        st = os.stat(path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyUnavailable(f"keyring {path} is readable by others; run: chmod 600 {path}")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise _os_error("read", path, exc) from None
    keys = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, encoded = line.strip().partition(" ")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32 or not NAME_RE.match(name):
            raise KeyUnavailable(f"keyring {path} line {number} is damaged")
        keys[name] = key
    return keys


def generate(settings: object, name: str = "default", *, exist_ok: bool = False) -> tuple[Path, bool]:
    """Add a fresh key `name` to the keyring; returns (path, created). Raises Conflict if it exists.

    Several processes may create the first key at once (pre-commit runs hooks in parallel, `make -j`): the
    read-modify-write happens under an exclusive `flock` on `<keyring>.lock`, and the keyring is re-read after
    locking, so a key another process just wrote is never overwritten; the loser uses the winner's key.
    """
    check_name(name)
    path = keyring_path(settings)
    if name in read_keyring(path):  # the common case needs no lock
        if exist_ok:
            return path, False
        raise Conflict(f"local key {name!r} already exists in {path}")
    try:
        return _generate_locked(path, name, exist_ok)
    except OSError as exc:  # full disk, read-only file system, a file where the directory should be...
        raise _os_error("write", path, exc) from None


def _os_error(verb: str, path: str | os.PathLike[str], exc: Exception) -> KagiyaError:
    """One line naming the keyring, the reason and the errno (exit 1), not a traceback."""
    import errno

    number = getattr(exc, "errno", None)
    code = f" (errno {number} {errno.errorcode.get(number, '?')})" if number else ""
    reason = getattr(exc, "strerror", None) or str(exc)
    tail = "; nothing was changed" if verb == "write" else ""
    return KagiyaError(f"cannot {verb} the keyring {path}: {reason}{code}{tail}")


def _generate_locked(path: Path, name: str, exist_ok: bool) -> tuple[Path, bool]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                      0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        keys = read_keyring(path)
        if name in keys:
            if exist_ok:
                return path, False
            raise Conflict(f"local key {name!r} already exists in {path}")
        keys[name] = AESGCM.generate_key(bit_length=256)
        text = "# kagiya local keyring: keep private, back it up; losing a key loses every file only it opens\n"
        text += "".join(f"{n} {base64.b64encode(k).decode()}\n" for n, k in keys.items())
        from kagiya.atomic import write_atomic  # here: decrypt, the common case, never writes the keyring

        write_atomic(path, text.encode("utf-8"), 0o600)
    finally:
        os.close(lock_fd)  # closing the descriptor releases the lock
    return path, True


class LocalKey(Record):
    __slots__ = ("id", "path", "scheme")

    def __init__(self, id: str, path: str) -> None:  # noqa: A002 - the recipient id, as for every backend
        self.id = id
        self.path = path
        self.scheme = "local"

    @property
    def uri(self) -> str:
        return f"local:{self.id}"

    def _aead(self) -> AESGCM:
        key = read_keyring(self.path).get(self.id)
        if key is None:
            raise BadKeyName(f"local key {self.id!r} is not in keyring {self.path} "
                                 f"(create it with: kagiya secrets keygen {self.id})")
        return AESGCM(key)

    def _aad(self) -> bytes:
        return f"kagiya local:{self.id}".encode()

    def wrap(self, dek: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead().encrypt(nonce, dek, self._aad())

    def unwrap(self, blob: bytes) -> bytes:
        aead = self._aead()
        if len(blob) != NONCE + DEK_BYTES + 16:
            raise CryptoError(f"local:{self.id} wrapped key has the wrong length")
        try:
            return aead.decrypt(blob[:NONCE], blob[NONCE:], self._aad())
        except Exception as exc:  # cryptography's InvalidTag, imported only when it happens (start-up, issue 13)
            from cryptography.exceptions import InvalidTag

            if not isinstance(exc, InvalidTag):
                raise
            raise CryptoError(f"local:{self.id} cannot unwrap the data key (a different key of that name?)") from None


def open_key(key_id: str, settings: object) -> LocalKey:
    return LocalKey(check_name(key_id), keyring_file(settings))
