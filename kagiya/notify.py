"""Webhook notifications for binding requests: a small JSON event when a request is filed and when it is decided.

The body carries a Slack-compatible `text` field (an incoming-webhook URL can take it as is), the request's public
fields and a link to the console page. With `notify.secret_file`, each post is signed like Stripe / GitHub webhooks:
`X-Kagiya-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, so a receiver can check both origin
and freshness.

Delivery never blocks the request that caused it: events go to a bounded queue served by one daemon thread per
process (started on first use, restarted after a fork), retried with exponential backoff on connection errors, 429
and 5xx. A full queue drops the event with a warning: a binding decision must never wait on a chat server.
Redirects are never followed: a 3xx answer is a failed delivery (not retried), so a receiver cannot steer the
service's requests to another host (an internal address, a metadata endpoint) or to plain http.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kagiya.config import is_loopback

log = logging.getLogger("kagiya.notify")
SIGNATURE_HEADER = "X-Kagiya-Signature"
EVENT_HEADER = "X-Kagiya-Event"
MAX_BACKOFF_SECONDS = 60.0
#: Request fields a notification may carry (never the external id; reasons are the requester's own words).
PUBLIC_FIELDS = ("id", "namespace", "serviceAccount", "cloud", "identity", "requester", "state", "reason", "rule",
                 "decidedBy", "decisionReason", "createdAt", "decidedAt", "bindingId")


@dataclass(frozen=True)
class NotifySettings:
    """Settings section `notify:` (docs/console.md)."""

    #: Where events are POSTed; empty disables notifications. https, or http to a loopback address only.
    webhook_url: str = ""
    #: A file holding the HMAC secret for `X-Kagiya-Signature` (a mounted Secret); empty: posts are not signed.
    secret_file: str = ""
    timeout_seconds: float = 5.0
    #: Tries per event (the first post included) before it is dropped with a warning.
    max_attempts: int = 5
    #: Wait before the first retry; doubled after each failure, capped at 60 s.
    backoff_seconds: float = 1.0
    #: Events waiting for delivery per process; past it new events are dropped (and logged).
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if self.webhook_url:
            url = urllib.parse.urlsplit(self.webhook_url)
            if url.scheme not in ("https", "http") or not url.hostname:
                raise ValueError("webhook_url must be an http(s) URL")
            if url.scheme == "http" and not is_loopback(url.hostname):
                raise ValueError("webhook_url must use https (plain http only to a loopback address)")
        if not 0 < self.timeout_seconds <= 60:
            raise ValueError("timeout_seconds must be more than 0 and at most 60")
        if not 1 <= self.max_attempts <= 20:
            raise ValueError("max_attempts must be from 1 to 20")
        if not 0 <= self.backoff_seconds <= MAX_BACKOFF_SECONDS:
            raise ValueError("backoff_seconds must be from 0 to 60")
        if not 1 <= self.queue_size <= 100_000:
            raise ValueError("queue_size must be from 1 to 100000")


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp` (receivers recompute and compare)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def slack_escape(value: Any) -> str:
    """Slack's control characters escaped, so a requester's words cannot ping `<!channel>` or forge a link."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def event_body(event: str, request: Mapping[str, Any], link: str) -> dict[str, Any]:
    """The JSON posted for one event; `text` is what Slack (and most chat webhooks) display."""
    fields = {k: request.get(k) for k in PUBLIC_FIELDS}
    shown = {k: slack_escape(v) if isinstance(v, str) else v for k, v in fields.items()}
    who = f"{shown['namespace']}/{shown['serviceAccount']}"
    if event == "request.filed":
        text = (f"Binding request #{shown['id']} by {shown['requester']}: {who} wants {shown['cloud']} "
                f"{shown['identity']} ({shown['state']})")
        if shown["reason"]:
            text += f". Reason: {shown['reason']}"
    else:
        text = f"Binding request #{shown['id']} for {who} ({shown['identity']}) {shown['state']}"
        if shown["decidedBy"]:
            text += f" by {shown['decidedBy']}"
        if shown["decisionReason"]:
            text += f": {shown['decisionReason']}"
    if link:
        text += f" <{link}>"
    return {"event": f"binding_{event}", "text": text, "link": link or None, "request": fields}


class Notifier:
    """One delivery thread and queue per process; `submit` never blocks."""

    def __init__(self, settings: NotifySettings, public_url: str = "") -> None:
        self.settings = settings
        self.public_url = public_url.rstrip("/")
        self._secret = _read_secret(settings.secret_file)
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=settings.queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self.delivered = 0
        self.dropped = 0

    def link_for(self, request: Mapping[str, Any]) -> str:
        return f"{self.public_url}/ui/requests#request-{request.get('id')}" if self.public_url else ""

    def __call__(self, event: str, request: Mapping[str, Any]) -> None:
        """An `IamContext` listener: queue the event and return at once."""
        body = json.dumps(event_body(event, request, self.link_for(request)), sort_keys=True).encode()
        self._ensure_thread()
        try:
            self._queue.put_nowait((event, body))
        except queue.Full:
            self.dropped += 1
            log.warning("notification queue full: dropped %s for request %s", event, request.get("id"))

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            if self._pid != os.getpid():
                self._queue = queue.Queue(maxsize=self.settings.queue_size)  # a forked child's copy is not ours
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="kagiya-notify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event, body = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._deliver(event, body)

    def _deliver(self, event: str, body: bytes) -> None:
        wait = self.settings.backoff_seconds
        for attempt in range(1, self.settings.max_attempts + 1):
            outcome = self._post_once(event, body)
            if outcome == "ok":
                self.delivered += 1
                return
            if outcome == "give-up" or attempt == self.settings.max_attempts:
                break
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, MAX_BACKOFF_SECONDS)
        self.dropped += 1
        log.warning("notification %s not delivered after %d attempt(s)", event, attempt)

    def _post_once(self, event: str, body: bytes) -> str:
        """'ok', 'retry' (connection trouble, 429, 5xx) or 'give-up' (any other answer)."""
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json", "User-Agent": "kagiya-notify", EVENT_HEADER: event}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body, int(time.time()))
        req = urllib.request.Request(self.settings.webhook_url, data=body, headers=headers,  # noqa: S310
                                     method="POST")
        try:
            with _opener().open(req, timeout=self.settings.timeout_seconds) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (OSError, ValueError) as exc:
            log.info("notification %s: webhook unreachable (%s), will retry", event, type(exc).__name__)
            return "retry"
        if 200 <= status < 300:
            return "ok"
        if status == 429 or status >= 500:
            log.info("notification %s: webhook answered HTTP %d, will retry", event, status)
            return "retry"
        log.warning("notification %s: webhook answered HTTP %d, not retried", event, status)
        return "give-up"


def _opener() -> Any:
    """A urllib opener that follows no redirect (a 3xx arrives as HTTPError with its status)."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect)


def _read_secret(path: str) -> bytes:
    if not path:
        return b""
    from kagiya.errors import ConfigError

    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"notify.secret_file {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise ConfigError("notify.secret_file must hold at least 16 bytes")
    return secret


def init_app(app: Any, settings: Any) -> Notifier | None:
    """Subscribe a notifier to the app's iam binding-request events when `notify.webhook_url` is set."""
    notify: NotifySettings = settings.section("notify")
    if not notify.webhook_url:
        return None
    from kagiya.iam.context import iam_context

    notifier = Notifier(notify, settings.section("console").public_url)
    iam_context(app).listeners.append(notifier)
    app.extensions["kagiya.notify"] = notifier
    return notifier
