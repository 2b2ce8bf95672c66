"""At-rest permissions: the data dir is 0700, the files in it 0600, and secrets never load from shared files.

Why: the SQLite database holds the audit-fingerprint HMAC key and the IMDS session key, the spill file holds
audit events; anyone who can read them can test token guesses offline or forge session tokens. The rule is the
keyring's (kagiya/secrets/keys/local.py): a key file that group or others can access is refused, with the
`chmod` that fixes it. A static token file (hashed lookups, but still credentials) only warns.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from kagiya.errors import ConfigError

log = logging.getLogger("kagiya.store")

SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


def ensure_private_dir(path: Path) -> None:
    """Create `path` 0700, and every missing parent 0700 too (a `<data_dir>/pki` made first must not leave the data
    dir at the umask's 0755); warn when an existing one is open to group or others."""
    if not path.exists():
        missing = []
        step = path
        while not step.exists() and step != step.parent:
            missing.append(step)
            step = step.parent
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                continue  # made meanwhile by someone else: theirs to set
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        return
    mode = path.stat().st_mode
    if mode & SHARED_BITS:
        log.warning("data directory %s is accessible by group or others (mode %o); run: chmod 700 %s",
                    path, stat.S_IMODE(mode), path)


def private_file(path: Path, create: bool = True) -> None:
    """Create `path` empty with mode 0600 if missing (unless `create` is false: then a missing file is left
    missing); tighten it to 0600 (with a warning) if it is shared."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        return
    except OSError as exc:  # a read-only mount or another owner: the database layer reports what matters
        log.debug("cannot open %s to check its mode: %s", path, exc.strerror)
        return
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_mode & SHARED_BITS:
            try:
                os.fchmod(fd, 0o600)
            except OSError as exc:
                log.warning("%s is accessible by group or others (mode %o) and cannot be changed (%s); "
                            "run: chmod 600 %s", path, stat.S_IMODE(st.st_mode), exc.strerror, path)
                return
            log.warning("%s was accessible by group or others (mode %o); changed to 0600",
                        path, stat.S_IMODE(st.st_mode))
    finally:
        os.close(fd)


def require_private(path: str | os.PathLike[str], what: str) -> None:
    """Raise ConfigError when `path` (holding secret keys) is accessible by group or others."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if mode & SHARED_BITS:
        raise ConfigError(f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
                          f"run: chmod 600 {path}")


def warn_if_shared(path: str | os.PathLike[str], what: str) -> bool:
    """Log a warning when `path` is readable by group or others; True if it warned."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        log.warning("%s %s is readable by group or others (mode %o); run: chmod 600 %s",
                    what, path, stat.S_IMODE(mode), path)
        return True
    return False
