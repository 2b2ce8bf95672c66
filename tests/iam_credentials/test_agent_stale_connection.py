"""Review of issue 12.4: the agent's keep-alive pool and a central service that closed a pooled connection (a
restart, an idle timeout racing the next request). The request sent on the dead connection is retried once on a
new connection and answered, not turned into a 503 for the pod; a service that is really down is still a fast 503.
And the agent's reply cache never answers a request carrying X-Forwarded-For (the central service refuses those)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

REPLY = json.dumps({"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "role-x"}).encode()


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return True


class FlakyCentral:
    """A central service stand-in speaking HTTP/1.1: each connection answers its first request with keep-alive, then
    reads the next request on it and closes without answering (what a restarting or idle-closing server does)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            if not _read_request(conn):
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                         b"Content-Length: " + str(len(REPLY)).encode() + b"\r\n\r\n" + REPLY)
            _read_request(conn)  # the next request on this connection: dropped unanswered

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def central() -> Iterator[FlakyCentral]:
    server = FlakyCentral()
    yield server
    server.close()


def test_a_request_on_a_connection_the_server_dropped_is_retried_once(central: FlakyCentral) -> None:
    from kagiya.iam.agent import Agent

    agent = Agent(central.url, "agent-token", timeout=2)
    for _ in range(3):
        status, _, body = agent.handle("GET", "/computeMetadata/v1/instance/", "", {"Metadata-Flavor": "Google"},
                                       "127.0.9.1")
        assert (status, body) == (200, "role-x")
    assert central.connections >= 3  # each later request found its pooled connection dead and opened a new one


def test_a_central_service_that_is_down_is_a_fast_503() -> None:
    import time

    from kagiya.iam.agent import Agent

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    agent = Agent(f"http://127.0.0.1:{port}", "agent-token", timeout=0.9)
    started = time.monotonic()
    status, _, _ = agent.handle("GET", "/computeMetadata/v1/instance/", "", {"Metadata-Flavor": "Google"}, "127.0.9.1")
    assert status == 503 and time.monotonic() - started < 0.9


class CredentialCentral(FlakyCentral):
    """Answers every relayed request as kagiya's container-credentials view does: 403 for a request carrying
    X-Forwarded-For, else 200 with a credential body valid for an hour. Counts the envelopes it saw."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, object]] = []
        super().__init__()

    def _one(self, conn: socket.socket) -> None:
        import datetime as dt

        with conn:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(body) < length:
                    body += conn.recv(65536)
                envelope = json.loads(body)
                self.envelopes.append(envelope)
                expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                if any(k.lower() == "x-forwarded-for" for k in envelope.get("headers", {})):
                    reply = {"status": 403, "headers": {}, "body": "requests carrying X-Forwarded-For are refused"}
                else:
                    reply = {"status": 200, "headers": {"Content-Type": "application/json"},
                             "body": json.dumps({"AccessKeyId": "AKIA", "Expiration": expiry})}
                out = json.dumps(reply).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(out)).encode() + b"\r\n\r\n" + out)


def test_a_request_carrying_x_forwarded_for_is_never_answered_from_the_cache() -> None:
    from kagiya.iam.agent import Agent

    central = CredentialCentral()
    try:
        agent = Agent(central.url, "agent-token", timeout=2)
        headers = {"Authorization": "pod-token"}
        assert agent.handle("GET", "/v1/credentials", "", headers, "127.0.9.2")[0] == 200
        assert agent.handle("GET", "/v1/credentials", "", headers, "127.0.9.2")[0] == 200
        assert agent.cache.hits == 1  # the pod's own repeat is a cache hit
        # An SSRF through a proxy in the pod (X-Forwarded-For) gets the central service's refusal, not the cache.
        status, _, _ = agent.handle("GET", "/v1/credentials", "", {**headers, "X-Forwarded-For": "10.9.9.9"},
                                    "127.0.9.2")
        assert status == 403
    finally:
        central.close()


def test_a_session_token_with_non_ascii_bytes_is_a_401_not_a_crash() -> None:
    """http.server decodes header bytes as latin-1: a token with byte 0xE9 must be refused like any bad token."""
    from kagiya.iam.agent import Agent

    agent = Agent("http://127.0.0.1:9", "agent-token", timeout=0.2)  # never reached: refused on the node
    for token in ("9999999999.n.\u00e9", "9999999999.\u00e9.abc", "\u00e9"):
        status, _, _ = agent.handle("GET", "/latest/meta-data/iam/security-credentials/", "",
                                    {"X-aws-ec2-metadata-token": token}, "127.0.9.3")
        assert status == 401, token


def test_a_content_length_that_is_not_ascii_digits_is_a_400() -> None:
    """Byte 0xB2 is "²" in latin-1, which str.isdigit() accepts and int() refuses: still a 400 answer."""
    from kagiya.iam.agent import Agent, AgentServer

    agent = Agent("http://127.0.0.1:9", "agent-token", timeout=0.2)
    httpd = AgentServer("127.0.0.1", 0, agent)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(httpd.server_address[:2], timeout=5) as sock:
            sock.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n")
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:60]
    finally:
        httpd.shutdown()
        httpd.server_close()
