"""What `kagiya agent` answers by itself: IMDSv2 session tokens, and credential replies it already relayed.

Both exist so the agent adds little to a pod's request (botocore gives IMDS one attempt of 1 s):
- `LocalSessions`: `PUT /latest/api/token` is answered on the node. A token is `expiry.nonce.mac` over the pod's
  source IP, the expiry and a random nonce, HMAC'd with a random key of this agent process; a GET carrying it is
  checked here and relayed with `imdsSession: "agent"`, which the central service accepts only from an
  authenticated agent. A token is only good from the IP it was issued to.
- `ReplyCache`: a credential reply (a JSON body with an `Expiration`) is reused until `margin` seconds before that
  expiry, keyed by the pod's source IP, the path and the pod-bound secret the request carried (the agent's IMDSv2
  session token, or the projected service-account token of the container-credentials path). Requests with no such
  secret (GCE metadata, identified only by IP) are never answered from the cache: a new pod that inherits an IP
  presents its own token, so it can never be answered with the previous pod's credentials. Cached credentials are
  the same ones the SDK itself keeps until near expiry; revoking a binding never recalls credentials already issued.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_TTL = 21600


class LocalSessions:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._key = secrets.token_bytes(32)
        self.clock = clock

    def issue(self, ip: str, ttl: int) -> str:
        """A fresh token (a random nonce: two PUTs never share one, so cached replies never cross pods)."""
        expiry = str(int(self.clock()) + ttl)
        nonce = secrets.token_urlsafe(12)
        return f"{expiry}.{nonce}.{self._mac(ip, expiry, nonce)}"

    def valid(self, token: str, ip: str) -> bool:
        expiry, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12 or int(expiry) < self.clock():
            return False
        # bytes, not str: compare_digest raises TypeError on a non-ASCII str (a header may carry any latin-1 byte)
        expected = self._mac(ip, expiry, nonce).encode()
        return hmac.compare_digest(mac.encode("utf-8", "surrogatepass"), expected)

    def _mac(self, ip: str, expiry: str, nonce: str) -> str:
        message = f"{ip}|{expiry}|{nonce}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()


class ReplyCache:
    """Relayed credential replies per (source IP, path, query, pod secret), until `margin` s before expiry."""

    def __init__(self, margin: float = 300.0, max_entries: int = 20000,
                 clock: Callable[[], float] = time.time) -> None:
        self.margin = margin
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str, str], tuple[float, dict[str, Any]]] = {}
        self.hits = 0

    @staticmethod
    def key(ip: str, path: str, query: str, secret: str) -> tuple[str, str, str, str] | None:
        if not secret:
            return None
        return (ip, path, query, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest())

    def get(self, key: tuple[str, str, str, str] | None) -> dict[str, Any] | None:
        if key is None:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= self.clock():
                del self._entries[key]
                return None
            self.hits += 1
            return found[1]

    def put(self, key: tuple[str, str, str, str] | None, reply: dict[str, Any]) -> None:
        """Keep `reply` when it is a 200 credential body with an expiry far enough away."""
        if key is None or reply.get("status") != 200:
            return
        until = _expiry(reply.get("body") or "")
        if until is None:
            return
        until -= self.margin
        now = self.clock()
        if until <= now:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    return
            self._entries[key] = (until, reply)

    def __len__(self) -> int:
        return len(self._entries)


def _expiry(body: str) -> float | None:
    """Epoch seconds of a credential body's `Expiration` (IMDS and container-credentials shapes), else None."""
    if not body.startswith("{") or "Expiration" not in body:
        return None
    try:
        value = json.loads(body).get("Expiration")
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()
