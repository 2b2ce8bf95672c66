"""Settings section `kube:`: how kagiya reaches the Kubernetes API (light: no kubernetes import).

`mode: url` takes `host` (`https://...`, or `http://127.0.0.1:PORT` for a local stand-in), an optional bearer
`token_file` and `ca_file`. `watch_seconds` bounds each watch request (the server ends it, the indexer resumes from
the last resourceVersion); after a disconnect the indexer waits `retry_seconds` (doubling up to `max_retry_seconds`).

Freshness: a watch shows life by every event, every BOOKMARK (asked for with `allowWatchBookmarks`), every
stream the server ends on time and every watch request it accepts again (and every relist). Bookmarks cannot be
relied on: a real kube-apiserver sends none on a kind that does not change (none in 150 s measured). So each watch
request asks the server to end it after `watch_period_seconds` = `min(watch_seconds, watch_stale_after_seconds / 2)`
whole seconds (at least 1: `timeoutSeconds` is an integer), and a quiet but healthy watch shows life at least that
often, well inside the bound; reads time out after twice that period, so a silently dropped connection is noticed
and re-opened. With the defaults (300, 30) each watch request lasts 15 s. A watch with no sign of life for
`watch_stale_after_seconds` is stale: identification by source IP fails closed (503) and /readyz names the watch,
until it shows life again. The bound must be at least 1.5 s so a quiet watch (1 s requests) never trips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class KubeSettings:
    #: `off` (no API server), `incluster`, `kubeconfig`, or `url` (host/token/ca below).
    mode: Literal["off", "incluster", "kubeconfig", "url"] = "off"
    kubeconfig: str = ""
    context: str = ""
    host: str = ""
    token_file: str = ""
    ca_file: str = ""
    #: Skip TLS verification of the API server (only for a loopback test server; never in production).
    insecure_skip_tls_verify: bool = False
    timeout_seconds: float = 5.0
    #: Server-side timeout of one watch request; the indexer then resumes from its resourceVersion.
    watch_seconds: int = 300
    #: Objects per list page when (re)listing.
    list_page_size: int = 500
    retry_seconds: float = 0.5
    max_retry_seconds: float = 30.0
    #: Past this many seconds without a sign of life from a watch, answers derived from it fail closed (503).
    watch_stale_after_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.watch_seconds <= 0:
            raise ValueError("kube.watch_seconds must be positive")
        if self.watch_stale_after_seconds < 1.5:
            raise ValueError("kube.watch_stale_after_seconds must be at least 1.5 (a watch request lasts at least "
                             "1 s, and a quiet healthy watch shows life only when one ends)")
        if self.timeout_seconds <= 0 or self.retry_seconds <= 0 or self.max_retry_seconds < self.retry_seconds:
            raise ValueError("kube timeouts must be positive and max_retry_seconds at least retry_seconds")

    @property
    def watch_period_seconds(self) -> int:
        """How long each watch request may run (`timeoutSeconds`, whole seconds): the server ends it (a sign of life)
        inside half the stale bound, so a quiet cluster that sends no bookmark never looks stale."""
        return max(1, int(min(float(self.watch_seconds), self.watch_stale_after_seconds / 2)))

    @property
    def watch_read_timeout_seconds(self) -> float:
        """Read timeout of a watch stream: twice its period, so a silent connection is abandoned and re-opened."""
        return 2 * self.watch_period_seconds
