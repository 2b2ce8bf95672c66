"""The audit spill file: an append-only JSON-lines file under `data_dir` holding events the store could not take.

One line per event (its store row, with a unique `event_uid`). The writer appends whole batches and fsyncs once
per batch; a reader position (`offset`) marks how far the file has been replayed into the store. When the
whole file has been replayed it is truncated to zero. Replay may repeat lines after a crash (the offset lives in
memory only), which is harmless: the store ignores an `event_uid` it already holds, so each event lands once.

The file is created 0600 and locked with `flock`, so two processes sharing a data dir never write one file: the
second takes `audit-spill.1.jsonl`, and so on. Files left by a previous process are adopted at start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("kagiya.audit")

BASENAME = "audit-spill"
MAX_FILES = 16
READ_CHUNK_BYTES = 1 << 20


def encode(row: dict[str, Any]) -> bytes:
    doc = dict(row)
    doc["time"] = row["time"].astimezone(dt.UTC).isoformat()
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    doc = json.loads(line)
    doc["time"] = dt.datetime.fromisoformat(doc["time"])
    return doc


def _name(index: int) -> str:
    return f"{BASENAME}.jsonl" if index == 0 else f"{BASENAME}.{index}.jsonl"


class SpillFile:
    """One locked spill file. Not thread-safe by itself: the writer serialises access with its own lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = -1
        self.path = directory / _name(0)
        for index in range(MAX_FILES):
            path = directory / _name(index)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):  # a device (a test's /dev/full) is nobody's to lock
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.fd, self.path = fd, path
            break
        else:
            raise OSError(errno.EBUSY, f"all {MAX_FILES} audit spill files in {directory} are in use")
        if stat.S_ISREG(os.fstat(self.fd).st_mode):  # never chmod a device someone pointed the path at
            os.fchmod(self.fd, 0o600)
        self.offset = 0
        self.dirty = False
        self._drop_torn_tail()
        self._adopt_leftovers()

    # --- writing ---------------------------------------------------------------------------------------------
    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append `rows` (no fsync yet). On failure the file is cut back to its old size and OSError raised."""
        if not rows:
            return
        data = b"".join(encode(r) for r in rows)
        start = self.size()
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)
            raise
        self.dirty = True

    def sync(self) -> None:
        """fsync what was appended since the last sync (the batch boundary)."""
        if self.dirty:
            self.dirty = False
            with contextlib.suppress(OSError):  # a character device (tests use /dev/full) cannot be synced
                os.fsync(self.fd)

    # --- replaying -------------------------------------------------------------------------------------------
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    @property
    def pending(self) -> bool:
        return self.size() > self.offset

    def read(self, max_rows: int) -> tuple[list[dict[str, Any]], int]:
        """Up to `max_rows` whole events after `offset`, and the offset just past them (not yet committed)."""
        data = os.pread(self.fd, READ_CHUNK_BYTES, self.offset)
        rows: list[dict[str, Any]] = []
        end = self.offset
        pos = 0
        while len(rows) < max_rows:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            line = data[pos:nl]
            pos = nl + 1
            end = self.offset + pos
            try:
                rows.append(decode(line))
            except (ValueError, KeyError, TypeError):
                log.error("skipping an unreadable line in the audit spill file %s at byte %d", self.path, end)
        if not rows and end == self.offset and len(data) == READ_CHUNK_BYTES:
            # one line longer than the read window cannot be an event we wrote: skip it
            end = self.offset + len(data)
        return rows, end

    def reset(self) -> None:
        """Everything was replayed: empty the file."""
        os.ftruncate(self.fd, 0)
        self.offset = 0
        with contextlib.suppress(OSError):
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            self.sync()
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    # --- start-up --------------------------------------------------------------------------------------------
    def _drop_torn_tail(self) -> None:
        """A crash mid-append can leave half a line: cut it so the next append starts on a fresh line."""
        size = self.size()
        if size == 0:
            return
        window = min(size, READ_CHUNK_BYTES)
        tail = os.pread(self.fd, window, size - window)
        keep = tail.rfind(b"\n")
        new_size = size - window + keep + 1 if keep >= 0 else (0 if window == size else size)
        if new_size != size:
            log.warning("audit spill file %s ended in a partial line (a crash); %d bytes dropped",
                        self.path, size - new_size)
            os.ftruncate(self.fd, new_size)

    def _adopt_leftovers(self) -> None:
        """Move events from spill files no live process holds (a previous run with more processes) into ours."""
        for other in self._unlocked_others():
            fd = os.open(other, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                data = _read_all(fd)
                cut = data.rfind(b"\n") + 1
                if cut:
                    self._append_raw(data[:cut])
                    self.sync()
                os.ftruncate(fd, 0)
                log.info("adopted %d bytes of audit events from %s", cut, other)
            finally:
                os.close(fd)

    def _unlocked_others(self) -> Iterable[Path]:
        for index in range(MAX_FILES):
            path = self.directory / _name(index)
            if path != self.path and path.is_file() and path.stat().st_size > 0:
                yield path

    def _append_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.dirty = True


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, READ_CHUNK_BYTES, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
