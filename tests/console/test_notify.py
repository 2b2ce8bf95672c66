"""Webhook notifications against a loopback receiver: signed, Slack-shaped, retried, never blocking a request."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from kagiya.errors import ConfigError
from tests.conftest import bearer
from tests.console.conftest import file_request, put_policy, sign_in
from tests.support.apps import kagiya_app
from tests.support.threaded import ThreadedServer

SECRET = "a-webhook-secret-of-some-length"


class Receiver:
    """Records posts; answers `fail_first` of them with 503 and may sleep `delay` seconds first."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self.delay = 0.0
        self.redirect_to = ""
        self.got = threading.Event()
        app = Flask("receiver")

        @app.route("/hook", methods=["GET", "POST"])  # GET too: a followed 302 turns the POST into a GET
        def hook() -> tuple[str, int]:
            if self.delay:
                time.sleep(self.delay)
            self.posts.append((dict(request.headers), request.get_data()))
            if self.redirect_to:
                return "", 302, {"Location": self.redirect_to}  # type: ignore[return-value]
            if len(self.posts) <= self.fail_first:
                return "busy", 503
            self.got.set()
            return "ok", 200

        self.server = ThreadedServer(app, "webhook-receiver")

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.posts) >= n, f"only {len(self.posts)} post(s) arrived"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.server.start()
    yield rec
    rec.server.stop()


@pytest.fixture
def notify_app(make_settings: Any, token_file: Path, tmp_path: Path, receiver: Receiver) -> Iterator[Any]:
    secret = tmp_path / "hook-secret"
    secret.write_text(SECRET)
    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "console": {"public_url": "https://kagiya.example.com"},
                              "notify": {"webhook_url": receiver.server.url + "/hook", "secret_file": str(secret),
                                         "backoff_seconds": 0.05, "max_attempts": 4}})
    with kagiya_app(settings) as app:
        put_policy(app.test_client())
        yield app
        app.extensions["kagiya.notify"].stop()


def _verify(headers: dict[str, str], body: bytes) -> None:
    parts = dict(p.split("=", 1) for p in headers["X-Kagiya-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(int(parts["t"]) - time.time()) < 60


def test_filed_and_decided_events_are_signed_and_link_to_the_page(notify_app: Any, receiver: Receiver) -> None:
    client = notify_app.test_client()
    rid = file_request(client, reason="nightly export")
    receiver.wait_for(1)
    headers, body = receiver.posts[0]
    _verify(headers, body)
    event = json.loads(body)
    assert event["event"] == "binding_request.filed" and headers["X-Kagiya-Event"] == "request.filed"
    assert event["request"]["id"] == rid and event["request"]["requester"] == "bob"
    assert "nightly export" in event["text"] and f"#{rid}" in event["text"]
    assert event["link"] == f"https://kagiya.example.com/ui/requests#request-{rid}" and event["link"] in event["text"]
    csrf = sign_in(client, "approver-token-0003")
    client.post(f"/ui/requests/{rid}/deny", data={"csrf_token": csrf, "comment": "use the shared role"})
    receiver.wait_for(2)
    decided = json.loads(receiver.posts[1][1])
    assert decided["event"] == "binding_request.decided"
    assert "denied by carol: use the shared role" in decided["text"]
    _verify(*receiver.posts[1])


def test_a_reason_cannot_ping_a_channel_or_forge_a_link(notify_app: Any, receiver: Receiver) -> None:
    file_request(notify_app.test_client(), reason="<!channel> urgent <https://evil.example|the console>")
    receiver.wait_for(1)
    event = json.loads(receiver.posts[0][1])
    assert "<!channel>" not in event["text"] and "<https://evil" not in event["text"]
    assert "&lt;!channel&gt; urgent &lt;https://evil.example|the console&gt;" in event["text"]
    assert event["request"]["reason"].startswith("<!channel>")  # the structured field keeps the words as given
    assert event["text"].endswith(f"<{event['link']}>")


def test_failed_posts_are_retried_with_backoff(notify_app: Any, receiver: Receiver) -> None:
    receiver.fail_first = 2
    file_request(notify_app.test_client())
    receiver.wait_for(3)
    assert receiver.got.wait(5)
    bodies = {body for _, body in receiver.posts}
    assert len(bodies) == 1  # the same event, three times
    assert notify_app.extensions["kagiya.notify"].delivered == 1


def test_a_slow_receiver_never_delays_the_request(notify_app: Any, receiver: Receiver) -> None:
    receiver.delay = 2.0
    client = notify_app.test_client()
    started = time.monotonic()
    file_request(client)
    file_request(client, sa="other")
    assert time.monotonic() - started < 1.0
    receiver.wait_for(1, timeout=10)


def test_a_redirect_is_never_followed_to_another_host(notify_app: Any, receiver: Receiver) -> None:
    """SSRF: a receiver answering 302 must not steer the service's request (nor its signature) elsewhere."""
    elsewhere = Receiver()
    elsewhere.server.start()
    try:
        receiver.redirect_to = elsewhere.server.url + "/hook"
        file_request(notify_app.test_client())
        notifier = notify_app.extensions["kagiya.notify"]
        deadline = time.monotonic() + 5
        while notifier.dropped < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert notifier.dropped == 1 and notifier.delivered == 0
        assert len(receiver.posts) == 1  # a 3xx is not retried either
        time.sleep(0.2)
        assert elsewhere.posts == []
    finally:
        elsewhere.server.stop()


def test_a_plain_http_webhook_is_refused_unless_loopback(make_settings: Any) -> None:
    with pytest.raises(ConfigError, match="https"):
        make_settings({"notify": {"webhook_url": "http://hooks.example.com/x"}})
    assert make_settings({"notify": {"webhook_url": "http://127.0.0.1:9/x"}}).section("notify").webhook_url


def test_requests_work_when_no_receiver_answers(make_settings: Any, token_file: Path) -> None:
    from tests.support.servers import free_port

    settings = make_settings({"authn": {"token_file": str(token_file)},
                              "notify": {"webhook_url": f"http://127.0.0.1:{free_port()}/gone",
                                         "backoff_seconds": 0.01, "max_attempts": 2}})
    with kagiya_app(settings) as app:
        client = app.test_client()
        put_policy(client)
        rid = file_request(client)
        assert client.get(f"/v1/iam/binding-requests/{rid}", headers=bearer("dev-token-0002")).status_code == 200
        notifier = app.extensions["kagiya.notify"]
        deadline = time.monotonic() + 5
        while notifier.dropped < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert notifier.dropped == 1 and notifier.delivered == 0
        notifier.stop()
