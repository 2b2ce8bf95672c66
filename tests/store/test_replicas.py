"""Two `kagiya serve` replicas sharing one real PostgreSQL: they agree, their audit events form one ordered log,
and killing one in the middle of requests loses nothing that was acknowledged and leaves no half-written change."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.postgres import reset_database
from tests.support.servers import VENV_BIN, ServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE_ARN = "arn:aws:iam::123456789012:role/"
ADMIN, DEV, APPROVER = "admin-token-0001", "dev-token-0002", "approver-token-0003"
POLICY = {"allow": [{"cloud": "aws", "glob": BASE_ARN + "app-*"}], "approverGroups": ["approvers"]}


def call(url: str, method: str = "GET", body: Any = None, token: str = DEV, request_id: str = "") -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.fixture
def replicas(postgres_url: str, token_file: Path, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    reset_database(postgres_url)
    servers = []
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {
                "KAGIYA_DATABASE_URL": postgres_url, "KAGIYA_AUTHN_TOKEN_FILE": str(token_file),
                "KAGIYA_IAM_BASE_ROLE_ARN": BASE_ARN, "KAGIYA_DATA_DIR": str(tmp_path / name),
                "KAGIYA_LOG_LEVEL": "WARNING",
            }
            argv = [str(VENV_BIN / "kagiya"), "serve", "--port", str(port)]
            servers.append(ServerProcess(argv, port=port, env=env, log_path=tmp_path / f"{name}.log").start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def request_binding(url: str, name: str, request_id: str = "") -> tuple[int, Any]:
    body = {"namespace": "team-a", "serviceAccount": name, "cloud": "aws", "identity": BASE_ARN + "app-" + name}
    return call(f"{url}/v1/iam/binding-requests", "POST", body, DEV, request_id)


def test_replicas_share_state_and_one_audit_log(replicas: list[ServerProcess]) -> None:
    a, b = (s.url for s in replicas)
    assert call(f"{a}/v1/iam/policies/team-a", "PUT", POLICY, ADMIN, "a-policy")[0] == 200

    status, req = request_binding(a, "web", "a-request")
    assert status == 201 and req["state"] == "pending"
    status, approved = call(f"{b}/v1/iam/binding-requests/{req['id']}/approve", "POST", {}, APPROVER, "b-approve")
    assert status == 200 and approved["state"] == "approved", approved

    status, explained = call(f"{a}/v1/iam/explain?namespace=team-a&serviceAccount=web&cloud=aws")
    assert status == 200
    assert explained["results"][0]["allowed"] is True
    assert explained["results"][0]["identity"]["identity"] == BASE_ARN + "app-web"

    # Both replicas decide the same request at once: exactly one wins, the other gets a clear conflict.
    _, second = request_binding(b, "api")
    results: list[int] = []
    barrier = threading.Barrier(2)

    def approve(url: str) -> None:
        barrier.wait()
        results.append(call(f"{url}/v1/iam/binding-requests/{second['id']}/approve", "POST", {}, APPROVER)[0])

    threads = [threading.Thread(target=approve, args=(u,)) for u in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]

    events_a = call(f"{a}/v1/audit?limit=500", token=ADMIN)[1]["items"]
    events_b = call(f"{b}/v1/audit?limit=500", token=ADMIN)[1]["items"]
    assert events_a == events_b, "both replicas read one log"
    by_request = [e["requestId"] for e in events_a if e["requestId"] in {"a-policy", "a-request", "b-approve"}]
    assert by_request[0] == "a-policy" and by_request[1] == "a-request" and "b-approve" in by_request[2:]


def test_killing_a_replica_mid_requests_loses_nothing_acknowledged(
    replicas: list[ServerProcess], postgres_url: str
) -> None:
    a, b = replicas
    assert call(f"{a.url}/v1/iam/policies/team-a", "PUT", POLICY, ADMIN)[0] == 200
    acknowledged: list[int] = []
    failed = 0
    lock = threading.Lock()
    killed = threading.Event()

    def worker(i: int) -> None:
        nonlocal failed
        for j in range(40):
            try:
                status, body = request_binding(a.url, f"w{i}-{j}")
            except OSError:
                with lock:
                    failed += 1
                return
            if status == 201:
                with lock:
                    acknowledged.append(body["id"])
                    if len(acknowledged) == 25:
                        assert a.proc is not None
                        os.killpg(a.proc.pid, signal.SIGKILL)
                        killed.set()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert killed.is_set() and failed > 0, "the replica should have died with requests in flight"

    listed = call(f"{b.url}/v1/iam/binding-requests?limit=500")[1]["items"]
    listed_ids = {r["id"] for r in listed}
    assert set(acknowledged) <= listed_ids, "every acknowledged request survives the crash"

    # No half-written change: each stored request has exactly its audit event, and nothing else.
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT target FROM audit_events WHERE action = 'iam.request.create'")).scalars().all()
    engine.dispose()
    assert sorted(rows) == sorted(f"iam/binding-requests/{rid}" for rid in listed_ids)


def test_sigterm_lets_the_in_flight_request_finish(replicas: list[ServerProcess]) -> None:
    import socket
    import time

    a = replicas[0]
    assert call(f"{a.url}/v1/iam/policies/team-a", "PUT", POLICY, ADMIN)[0] == 200
    body = json.dumps({"namespace": "team-a", "serviceAccount": "slow", "cloud": "aws",
                       "identity": BASE_ARN + "app-slow"}).encode()
    head = (f"POST /v1/iam/binding-requests HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEV}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", a.port), timeout=20) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.3)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)  # graceful stop: the front finishes requests already being read
        time.sleep(0.5)
        sock.sendall(body[10:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
    assert a.proc.wait(timeout=30) == 0
    status, listed = call(f"{replicas[1].url}/v1/iam/binding-requests?limit=500")
    assert "slow" in {r["serviceAccount"] for r in listed["items"]}
