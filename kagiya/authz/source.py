"""The live SubjectAccessReview policy: loaded at start, reloaded when the file changes.

A bad file at start-up stops the service (fail closed, one clear line). A bad edit later keeps the last good
policy serving (an authorization outage is worse than a stale rule) and is reported three ways: a warning in the
log, `kagiya_authz_policy_reloads_total{outcome="error"}`, and the `authz-policy` readiness check, which names
the file, the line and what is wrong until a good file replaces it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kagiya.authz.policy import Policy
from kagiya.authz.policy_file import PolicyError, load_policy_file

log = logging.getLogger("kagiya.authz")

Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicySource:
    """Holds the current policy; `current()` re-checks the file at most every `interval` seconds."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self.clock = clock
        self.on_reload = on_reload or (lambda outcome: None)
        self._lock = threading.Lock()
        self._stamp = _stamp(self.path)
        self._policy = load_policy_file(self.path)  # raises PolicyError: start-up fails closed
        self._checked = clock()
        self.error = ""
        self.loaded_at = time.time()

    def current(self) -> Policy:
        now = self.clock()
        if now - self._checked >= self.interval:
            with self._lock:
                if now - self._checked >= self.interval:
                    self._checked = now
                    self._maybe_reload()
        return self._policy

    def _maybe_reload(self) -> None:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            if stamp is None:
                raise PolicyError(f"policy file {self.path}: missing")
            policy = load_policy_file(self.path)
        except PolicyError as exc:
            self._reload_failed(exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - any failure to load keeps the old policy and is reported
            self._reload_failed(f"policy file {self.path}: cannot be loaded ({type(exc).__name__})")
            return
        self._policy = policy
        self.error = ""
        self.loaded_at = time.time()
        counts = policy.counts()
        log.info("authz policy reloaded from %s: %d allow, %d deny rules", self.path, counts["allow"], counts["deny"])
        self.on_reload("success")

    def _reload_failed(self, message: str) -> None:
        self.error = message
        log.warning("authz policy not reloaded, keeping the previous one: %s", message)
        self.on_reload("error")

    def check_ready(self) -> None:
        """Readiness: raise while the file on disk is broken (the previous policy is still serving)."""
        self.current()
        if self.error:
            loaded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))
            raise PolicyError(f"{self.error}; still serving the policy loaded at {loaded}")
