"""A TCP proxy that can go silent: the "packets dropped, no RST" partition of an API server, without iptables.

`StallProxy(target_port)` forwards 127.0.0.1:port to the target. `stall()`: bytes already in flight and new ones
are held (nothing is forwarded either way, no connection is closed or reset), and new connections are accepted
and then never answered. `resume()`: forwarding starts again, as when a partition heals.
`stall(watches_only=True)` holds only connections that carried a watch request (`watch=true`): a long-lived
connection that died silently while the API server still answers new requests (TokenReviews, lists).
`stall(watches_only=True, path="/api/v1/namespaces?")` holds only the watches whose latest request line carries
`path`: one kind's watch goes silent while the others stay healthy.
"""

from __future__ import annotations

import socket
import threading
from typing import Any


class StallProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._watches_only = False
        self._watch_conns: set[int] = set()
        self._path = b""
        self._last_request: dict[int, bytes] = {}
        threading.Thread(target=self._accept, name="stall-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self, watches_only: bool = False, path: str = "") -> None:
        self._watches_only = watches_only
        self._path = path.encode()
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._sock.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if not self._watches_only:
            self._flowing.wait()  # a stalled proxy accepted the connection but never answers
        if self._closed.is_set():
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._conns += [client, upstream]
        key = id(client)
        threading.Thread(target=self._pump, args=(upstream, client, key), daemon=True).start()
        self._pump(client, upstream, key, requests=True)

    def _pump(self, src: socket.socket, dst: socket.socket, key: int, requests: bool = False) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if requests and data[:4] in (b"GET ", b"POST", b"PUT "):
                    self._last_request[key] = data.split(b"\r\n", 1)[0]
                if requests and b"watch=true" in data:
                    self._watch_conns.add(key)
                if not self._watches_only or (key in self._watch_conns
                                              and self._path in self._last_request.get(key, b"")):
                    self._flowing.wait()  # held, not dropped: TCP would retransmit once the partition heals
                if self._closed.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _shutdown(s)


def _shutdown(s: Any) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
