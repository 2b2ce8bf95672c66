"""Settings section `kube:`: how kagiya reaches the Kubernetes API (kept apart from kube.py, which is heavy)."""

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
    timeout_seconds: float = 5.0
