"""Settings section `kube:`: how kagiya reaches the Kubernetes API (light: no kubernetes import).

`mode: url` takes `host` (`https://...`, or `http://127.0.0.1:PORT` for a local stand-in), an optional bearer
`token_file` and `ca_file`. `watch_seconds` bounds each watch request (the server ends it, the indexer resumes from
the last resourceVersion); after a disconnect the indexer waits `retry_seconds` (doubling up to `max_retry_seconds`).
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
