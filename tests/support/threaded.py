"""Serve a WSGI app in-process on a loopback port, in a daemon thread (specs/test-infrastructure.md).

Every stand-in under `tests/standins/` and the fixtures that serve kagiya's own app over real HTTP use this one
helper, so start/stop behave the same everywhere:

    server = ThreadedServer(app, "cloudkms-standin").start()      # a free port; or start(port) for a fixed one
    server.url                                                   # http://127.0.0.1:PORT (https with ssl_context)
    server.stop()                                                # the port closes: "upstream down"
    server.start()                                               # back on the same port, so clients still reach it

- `serve_forever(poll_interval=0.05)`: `stop()` returns within ~50 ms instead of werkzeug's default 0.5 s.
- `release` is set on `stop()`, so a handler that waits `release.wait(delay)` (a slow upstream) returns at once.
- `Serving` is the mixin a stand-in uses to be started, stopped and used as a context manager through the
  `ThreadedServer` it keeps in `self._server`, with `port` and `url` (a stand-in overrides `url` to add a path).
- Requests are not logged (`QuietHandler`): test output stays readable and query strings carrying codes or tokens
  never reach it.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's signature
        """No request lines in test output (they could carry codes or tokens in query strings)."""


class ThreadedServer:
    """A WSGI app on `host:port` served by werkzeug (a thread per connection) in a daemon thread."""

    def __init__(self, app: Any, name: str = "threaded-server", *, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.name = name
        self.host = host
        self.ssl_context = ssl_context
        self.release = threading.Event()  # set on stop so delayed handlers return at once
        self._port = port  # the bound port, kept after stop() so a restart comes back where clients point
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int | None = None) -> ThreadedServer:
        """Listen on `port` (0: a free one; None: the last bound port, or the constructor's) and serve."""
        if port is not None:
            self._port = port
        self.release.clear()
        self._server = make_server(self.host, self._port, self.app, threaded=True, request_handler=QuietHandler,
                                   ssl_context=self.ssl_context)
        self._port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port; safe to call twice or before start()."""
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (0 before the first start)."""
        return self._port

    @property
    def url(self) -> str:
        assert self._port, "server not started"
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"


class Serving:
    """Mixin: the lifecycle of a stand-in that serves its app through `self._server` (a `ThreadedServer`)."""

    _server: ThreadedServer

    def start(self, port: int | None = None) -> Self:
        """Listen (0: a free port; None: the port it had before, so a restarted stand-in is found again)."""
        self._server.start(port)
        return self

    def stop(self) -> None:
        """The port closes: clients see the upstream down."""
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server.port, "stand-in not started"
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url
