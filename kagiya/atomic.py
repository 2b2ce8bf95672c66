"""Atomic file rewrites: a temp file in the same directory, fsync, rename; mode 0600 by default.

The one way kagiya rewrites a file: encrypted manifests, keyrings, certificates and keys, kubeconfigs, token caches.

A reader (or a crash) sees the old file or the new one, never half of either, and a failed run never leaves
a plaintext temp file behind (it is removed on any error).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`. Raises OSError; the original is untouched on failure.

    A symlink is followed: its target is rewritten (in the target's directory) and the link stays a link, as an
    editor's save would do; renaming over the link itself would replace it with a regular file.
    """
    # os.path, not pathlib: importing pathlib costs the CLI several milliseconds
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    # O_EXCL with a random name, as tempfile.mkstemp does (importing tempfile costs the CLI ~4 ms)
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive `flock` on the file at `path` (as the keyring's read-modify-write does) while the caller
    reads, changes and `write_atomic`s it, so two concurrent read-modify-writes cannot lose one update.

    The lock is on the file itself, not a sidecar `.lock` file left in the user's repository. Because
    `write_atomic` renames a new inode into place, a waiter that wakes up holding the lock of the replaced inode
    sees that the path now names another file and locks that one instead. A missing file is not locked (there is
    nothing to lose); the caller's own read then reports it.
    """
    import fcntl

    target = os.path.realpath(path)
    while True:
        try:
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(target)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                yield
                return
        finally:
            os.close(fd)  # releases the lock
