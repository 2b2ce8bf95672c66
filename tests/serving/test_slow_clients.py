"""Issue 16.1: hundreds of clients trickling headers or bodies hold sockets, never handler threads; /healthz and
the TokenReview webhook keep answering quickly on the real `kagiya serve` process."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.servers import VENV_BIN, ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SLOW = 300
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "dev-token-0002"}}


def test_three_hundred_trickling_clients_do_not_stall_the_replica(tmp_path: Path, token_file: Path) -> None:
    config = tmp_path / "kagiya.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data"), "log_level": "WARNING",
                                  "authn": {"token_file": str(token_file)}}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    server = ServerProcess([str(VENV_BIN / "kagiya"), "--config", str(config), "serve", "--port", str(port)],
                           port=port, env=env, log_path=tmp_path / "serve.log", timeout=60)
    server.env = env
    with server, requests.Session() as session:
        url = f"http://127.0.0.1:{port}"
        # three source addresses, 100 each: below the default per-source cap, as from a few busy nodes
        slow = [socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.0.{2 + i % 3}", 0))
                for i in range(SLOW)]
        for i, s in enumerate(slow):
            # half stop inside the headers, half announce a body and trickle it
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                      b"POST /authn/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for i, s in enumerate(slow):
                    try:
                        s.sendall(b"X" if i % 2 else b" ")
                    except OSError:
                        pass
                stop.wait(0.5)

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            time.sleep(1.0)  # every slow connection is open and sending before the probes start
            latencies = {"healthz": [], "review": []}
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                assert session.get(f"{url}/healthz", timeout=3).status_code == 200
                latencies["healthz"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                resp = session.post(f"{url}/authn/tokenreviews", json=REVIEW, timeout=3)
                latencies["review"].append(time.perf_counter() - t0)
                assert resp.json()["status"]["user"]["username"] == "bob"
                time.sleep(0.05)
            still_open = 0
            for s in slow:
                s.setblocking(False)
                try:
                    s.recv(1)  # an answer or a close: the server gave up on this client early
                except BlockingIOError:
                    still_open += 1  # nothing answered yet: the server holds it, still waiting for the rest
                except OSError:
                    pass
        finally:
            stop.set()
            trickler.join(5)
            for s in slow:
                s.close()
    assert still_open == SLOW, "the slow connections were dropped before their deadlines"
    for name, values in latencies.items():
        assert len(values) >= 10, name
        assert max(values) < 1.0, (name, sorted(values)[-5:])
