"""Issue 12.4: the agent adds little — keep-alive connections to the central service (no TLS handshake per
request), IMDSv2 session tokens served on the node, and credential replies reused per pod until near expiry,
never across pods that share an IP over time. The agent runs in-process against kagiya served over mutual TLS."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.iam_credentials.conftest import AGENT_TOKEN, imds_credentials, source_session
from tests.iam_credentials.test_agent import pki, tls_server  # noqa: F401 - the pki fixture
from tests.support.threaded import ThreadedServer


@pytest.fixture
def relay(world: Any, pki: Any) -> Iterator[tuple[Any, Any, Any]]:  # noqa: F811 - the imported fixture
    from kagiya.iam.agent import Agent

    central = tls_server(world.app, pki).start()
    agent = Agent(central.url, AGENT_TOKEN, cert=(str(pki["client"].cert), str(pki["client"].key)), ca=pki["ca"],
                  timeout=5)
    server = ThreadedServer(agent, "agent").start()
    try:
        yield agent, server, central
    finally:
        server.stop()
        central.stop()


class _Handshakes:
    """New connections (TCP + TLS handshakes) the agent's connection pools made to the central service."""

    def __init__(self, agent: Any, central: Any) -> None:
        self.manager = agent.pool

    @property
    def num_connections(self) -> int:
        return sum(self.manager.pools[key].num_connections for key in self.manager.pools.keys())


def _pool(agent: Any, central: Any) -> Any:
    return _Handshakes(agent, central)


def test_connections_to_the_central_service_are_kept_alive(world: Any, relay: Any) -> None:
    agent, server, central = relay
    pods = [world.add_pod("team-a", f"web-k{i}", "web", f"127.0.6.{i + 1}") for i in range(30)]
    for _ in range(3):
        status, _ = imds_credentials(server.url, "127.0.6.1")
        assert status == 200
    pool = _pool(agent, central)
    assert pool.num_connections == 1  # one TLS handshake for every sequential request
    with ThreadPoolExecutor(max_workers=30) as tp:
        results = list(tp.map(lambda p: imds_credentials(server.url, p["status"]["podIP"]), pods))
    assert [status for status, _ in results] == [200] * 30
    made = pool.num_connections
    assert made <= 31
    with ThreadPoolExecutor(max_workers=30) as tp:  # the burst's connections are reused by the next burst
        list(tp.map(lambda p: imds_credentials(server.url, p["status"]["podIP"]), pods))
    # Most of the burst's connections are reused: a few may be replaced when the central side closes an idle one
    # under load (4 of 30 seen on a loaded CI run); no reuse at all would mean 30 new connections.
    assert pool.num_connections - made <= len(pods) // 3


def test_session_tokens_are_served_on_the_node_and_bound_to_the_ip(world: Any, relay: Any) -> None:
    agent, server, central = relay
    world.add_pod("team-a", "web-s", "web", "127.0.6.40")
    s = source_session("127.0.6.40")
    central.stop()  # the PUT never needs the central service
    r = s.put(f"{server.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert r.status_code == 200 and r.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "60"
    token = r.text
    assert s.put(f"{server.url}/latest/api/token").status_code == 400  # TTL header required, as on EC2
    assert s.put(f"{server.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60",
                                                           "X-Forwarded-For": "1.2.3.4"}).status_code == 403
    central.start()
    other = source_session("127.0.6.41").get(f"{server.url}/latest/meta-data/iam/security-credentials/",
                                             headers={"X-aws-ec2-metadata-token": token})
    assert other.status_code == 401  # a token is only good from the IP it was issued to
    mine = s.get(f"{server.url}/latest/meta-data/iam/security-credentials/",
                 headers={"X-aws-ec2-metadata-token": token})
    assert mine.status_code == 200 and mine.text == "app-reader"
    # The central service accepts "checked by the agent" only from an agent.
    envelope = {"sourceIp": "127.0.6.40", "method": "GET", "path": "/latest/meta-data/iam/security-credentials/",
                "imdsSession": "agent"}
    client = world.app.test_client()
    assert client.post("/iam/agent/forward", json=envelope).status_code == 401
    direct = source_session("127.0.6.40").get(f"{world.url}/latest/meta-data/iam/security-credentials/",
                                              headers={"X-aws-ec2-metadata-token": token})
    assert direct.status_code == 401  # an agent's token means nothing to the central service itself


def test_credentials_are_reused_per_pod_until_near_expiry_never_across_ip_reuse(world: Any, relay: Any) -> None:
    agent, server, central = relay
    old = world.add_pod("team-a", "web-c", "web", "127.0.6.50")
    s = source_session("127.0.6.50")
    token = s.put(f"{server.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "600"}).text
    hdr = {"X-aws-ec2-metadata-token": token}
    url = f"{server.url}/latest/meta-data/iam/security-credentials/app-reader"
    first = s.get(url, headers=hdr)
    assert first.status_code == 200
    central.stop()  # from now on only the agent's cache can answer
    again = s.get(url, headers=hdr)
    assert again.status_code == 200 and again.json()["AccessKeyId"] == first.json()["AccessKeyId"]
    assert agent.cache.hits == 1
    # A new pod gets the IP: it asks for its own session token, so the old pod's credentials are never its answer.
    world.delete_pod(old)
    world.add_pod("team-b", "batch-c", "batch", "127.0.6.50")
    fresh = s.put(f"{server.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "600"}).text
    assert fresh != token
    assert s.get(url, headers={"X-aws-ec2-metadata-token": fresh}).status_code == 503  # central down: no guess
    central.start()
    status, creds = imds_credentials(server.url, "127.0.6.50")
    assert status == 200 and creds["AccessKeyId"] != first.json()["AccessKeyId"]


def test_reply_cache_rules() -> None:
    from kagiya.iam.agent_cache import ReplyCache

    now = [1_000_000.0]
    cache = ReplyCache(margin=300, clock=lambda: now[0])
    key = cache.key("10.0.0.1", "/latest/x", "", "tok")
    body = '{"AccessKeyId": "A", "Expiration": "1970-01-12T14:00:00Z"}'  # 1_000_800 s after the epoch
    cache.put(key, {"status": 200, "body": body})
    assert cache.get(key) is not None
    now[0] += 501  # within 300 s of expiry: no longer served
    assert cache.get(key) is None
    assert cache.key("10.0.0.1", "/computeMetadata/v1/x", "", "") is None  # no pod secret: never cached
    cache.put(key, {"status": 503, "body": body})
    assert cache.get(key) is None

