"""An agent speaks only for pods on its own node (review finding: any agent could claim any pod IP)."""

from __future__ import annotations

from typing import Any

from tests.iam_credentials.conftest import ADMIN, AGENT_TOKEN

AGENT = {"Authorization": f"Bearer {AGENT_TOKEN}"}  # system:kagiya-agent:node-1


def _token_put(client: Any, ip: str, headers: dict[str, str] | None = None) -> Any:
    envelope = {"sourceIp": ip, "method": "PUT", "path": "/latest/api/token",
                "headers": {"X-aws-ec2-metadata-token-ttl-seconds": "60"}}
    return client.post("/iam/agent/forward", json=envelope, headers=headers or AGENT)


def test_agent_for_node_1_cannot_claim_a_pod_on_node_2(world: Any) -> None:
    world.add_pod("team-a", "web-here", "web", "127.0.0.61", node="node-1")
    world.add_pod("team-b", "batch-there", "batch", "127.0.0.62", node="node-2")
    client = world.app.test_client()

    here = _token_put(client, "127.0.0.61")
    assert here.status_code == 200 and here.get_json()["status"] == 200

    there = _token_put(client, "127.0.0.62")
    assert there.status_code == 200
    relayed = there.get_json()
    assert relayed["status"] == 403
    assert "node-1" in relayed["body"] and "batch-there" not in relayed["body"]

    events = client.get("/v1/audit", query_string={"action": "iam.agent.forward"}, headers=ADMIN).get_json()
    denied = [e for e in events["items"] if e["outcome"] == "denied"]
    assert denied, events
    assert denied[-1]["actor"] == "system:kagiya-agent:node-1"
    assert denied[-1]["details"]["sourceIp"] == "127.0.0.62"
    assert denied[-1]["details"]["podNode"] == "node-2"


def test_an_agent_identity_without_a_node_is_refused(world: Any, tmp_path: Any) -> None:
    world.add_pod("team-a", "web-x", "web", "127.0.0.63")
    tokens = world.app.extensions["kagiya.settings"].section("authn").token_file
    with open(tokens, "a", encoding="utf-8") as fh:
        fh.write('nodeless-agent-0005,some-agent,uid-na,"kagiya:agents"\n')
    client = world.app.test_client()
    r = _token_put(client, "127.0.0.63", {"Authorization": "Bearer nodeless-agent-0005"})
    assert r.status_code == 403 and "names no node" in r.get_json()["message"]


def test_agent_node_comes_from_the_identity() -> None:
    """The agent_node helper: the node-name extra wins, else the username prefix."""
    from kagiya.authn.providers.base import User
    from kagiya.iam.metadata.forward import EXTRA_NODE_NAME, agent_node

    prefix = "system:kagiya-agent:"
    assert agent_node(User("system:kagiya-agent:node-7"), prefix) == "node-7"
    assert agent_node(User("system:kagiya-agent:"), prefix) == ""
    assert agent_node(User("other", extra={EXTRA_NODE_NAME: ("node-9",)}), prefix) == "node-9"
    assert agent_node(User("other"), prefix) == ""


def test_agent_identified_by_its_own_projected_token_names_its_node(
        make_settings: Any, tmp_path: Any, moto: Any, gcp_standin: Any) -> None:
    """The DaemonSet's own pod-bound service-account token (TokenReview's node-name extra) binds the agent."""
    from tests.iam_credentials.conftest import make_world
    from tests.standins.kube_apiserver import KubeApiServer

    agent_sa = "system:serviceaccount:kagiya-system:kagiya-agent"
    with KubeApiServer() as kube:
        kube.add_namespace("kagiya-system")
        kube.add_service_account("kagiya-system", "kagiya-agent")
        world = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube, agent_service_accounts=[agent_sa])
        try:
            agent_pod = kube.add_pod("kagiya-system", "kagiya-agent-x1", ip="10.9.0.1",
                                     service_account="kagiya-agent", node="node-a", host_network=True)
            meta = agent_pod["metadata"]
            token = kube.issue_token("kagiya-system", "kagiya-agent", pod_name=meta["name"], pod_uid=meta["uid"],
                                     audiences=("kagiya-agent",))
            world.add_pod("team-a", "web-on-a", "web", "127.0.0.64", node="node-a")
            world.add_pod("team-b", "batch-on-b", "batch", "127.0.0.65", node="node-b")
            client = world.app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            assert _token_put(client, "127.0.0.64", headers).get_json()["status"] == 200
            assert _token_put(client, "127.0.0.65", headers).get_json()["status"] == 403
            # A token for another audience, or of another service account, is not an agent.
            wrong = kube.issue_token("kagiya-system", "kagiya-agent", pod_name=meta["name"], pod_uid=meta["uid"],
                                     audiences=("kagiya",))
            assert _token_put(client, "127.0.0.64", {"Authorization": f"Bearer {wrong}"}).status_code == 401
            pod_b = kube.objects["pods"][("team-b", "batch-on-b")]["metadata"]
            other = kube.issue_token("team-b", "batch", pod_name="batch-on-b", pod_uid=pod_b["uid"],
                                     audiences=("kagiya-agent",))
            assert _token_put(client, "127.0.0.65", {"Authorization": f"Bearer {other}"}).status_code == 401
        finally:
            world.close()


def test_agent_rereads_a_rotated_token_file(tmp_path: Any) -> None:
    import os

    from kagiya.iam.agent import Agent

    path = tmp_path / "token"
    path.write_text("first-token\n")
    agent = Agent("http://127.0.0.1:1", "first-token", token_file=str(path))
    path.write_text("second-token\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the kubelet's atomic swap
    agent._reload_token()
    assert agent.headers["Authorization"] == "Bearer second-token"
