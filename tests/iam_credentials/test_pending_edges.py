"""Review of issue 12.7: serving Pending pods with an IP keeps every IP rule. A Pending pod being deleted is not
served; a Pending hostNetwork pod (its IP is the node's) is never identified by IP; a finished pod's IP given to a
new Pending pod answers for the new pod only."""

from __future__ import annotations

from typing import Any

from tests.iam_credentials.conftest import imds_credentials, sts_client


def test_pending_pod_being_deleted_is_not_served(world: Any) -> None:
    world.add_pod("team-a", "web-pd", "web", "127.0.0.81", phase="Pending", deleting=True)
    status, body = imds_credentials(world.url, "127.0.0.81")
    assert status == 403 and "terminating" in str(body)


def test_pending_host_network_pod_is_never_identified_by_ip(world: Any) -> None:
    world.add_pod("team-a", "web-hn", "web", "127.0.0.82", phase="Pending", host_network=True)
    status, body = imds_credentials(world.url, "127.0.0.82")
    assert status == 403 and "hostNetwork" in str(body)


def test_finished_pods_ip_reused_by_a_pending_pod_answers_for_the_new_pod(world: Any) -> None:
    world.add_pod("team-a", "web-done", "web", "127.0.0.83", phase="Succeeded")
    world.add_pod("team-b", "batch-new", "batch", "127.0.0.83", phase="Pending")
    status, creds = imds_credentials(world.url, "127.0.0.83")
    assert status == 200
    assert "/app-writer/" in sts_client(world.moto.url, creds).get_caller_identity()["Arn"]
    world.add_pod("team-a", "web-failed", "web", "127.0.0.84", phase="Failed")
    assert imds_credentials(world.url, "127.0.0.84")[0] == 404  # a finished pod alone: no pod at that IP
