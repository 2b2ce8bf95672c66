"""The serving front in-process: kagiya's real app behind `kagiya.serving.front.Front` on a loopback port (with
its loop-side answers, as `kagiya serve` builds it), its event loop in a daemon thread, with small limits so the
tests that cross them stay fast."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kagiya.config import from_mapping
from kagiya.inline import inline_answerer
from kagiya.serving.front import Front, listen
from kagiya.serving.settings import ServingSettings


class FrontServer:
    def __init__(self, app: Any, serving: dict[str, Any], max_body_bytes: int,
                 ssl_context: Callable[[], Any] | None = None, host: str = "127.0.0.1") -> None:
        config = from_mapping(ServingSettings, serving, "serving")
        self.front = Front(app, config, max_body_bytes=max_body_bytes, ssl_context=ssl_context,
                           inline=inline_answerer(app) if config.inline_answers else None)
        self.sock = listen(host, 0)
        self.port = int(self.sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.front.start(self.sock))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="front", daemon=True)
        self.thread.start()
        assert started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.front.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def raw(self, data: bytes, *, timeout: float = 5.0, read_all: bool = True) -> bytes:
        """Send `data` on a fresh connection and return everything the server answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            return read_until_close(s) if read_all else s.recv(65536)


def read_until_close(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        out += chunk
    return out


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, headers lower-cased, JSON body) of the first response in `answer`."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    return status, headers, json.loads(body[:length]) if length else None


@pytest.fixture
def serve(app: Any) -> Iterator[Callable[..., FrontServer]]:
    """`serve(header_timeout_seconds=1, ...)`: the test's kagiya app behind a front with those serving settings."""
    servers: list[FrontServer] = []

    def make(max_body_bytes: int | None = None, ssl_context: Any = None, **serving: Any) -> FrontServer:
        limit = max_body_bytes or app.config["MAX_CONTENT_LENGTH"]
        server = FrontServer(app, serving, limit, ssl_context)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
