"""Pod lifecycle edges: a terminating pod no longer owns its IP; a pod replaced under the same name (new uid)."""

from __future__ import annotations

from typing import Any

from tests.iam_credentials.conftest import imds_credentials, pod_json, sts_client


def test_ip_reused_while_the_old_pod_is_terminating_never_serves_the_old_role(world: Any) -> None:
    old = world.add_pod("team-a", "web-old", "web", "127.0.0.71")
    assert imds_credentials(world.url, "127.0.0.71")[0] == 200
    # The old pod is being deleted (deletionTimestamp set, still Running), and its IP is handed to a new pod.
    world.add_pod("team-a", "web-old", "web", "127.0.0.71", uid=old["metadata"]["uid"], deleting=True, rv="2",
                  event="MODIFIED")
    status, body = imds_credentials(world.url, "127.0.0.71")
    assert status == 403 and "terminating" in body
    world.add_pod("team-b", "batch-new", "batch", "127.0.0.71")
    status, creds = imds_credentials(world.url, "127.0.0.71")
    assert status == 200, creds
    arn = sts_client(world.moto.url, creds).get_caller_identity()["Arn"]
    assert "/app-writer/" in arn and "/app-reader/" not in arn


def test_kube_index_records_deletion_timestamp() -> None:
    from kagiya.kube import PodInfo

    assert PodInfo.from_object(pod_json("ns", "p", "sa", "10.0.0.1", deleting=True)).terminating
    assert not PodInfo.from_object(pod_json("ns", "p", "sa", "10.0.0.1")).terminating


def test_relist_replacing_a_pod_by_name_with_a_new_uid_drops_the_old_uids_credentials(world: Any) -> None:
    old = world.add_pod("team-a", "web-r", "web", "127.0.0.72", uid="uid-web-r-1")
    world.wait_prefetched("uid-web-r-1")
    events: list[tuple[str, str]] = []
    world.index.subscribe(lambda event, pod: events.append((event, pod.uid)))
    fresh = pod_json("team-a", "web-r", "web", "127.0.0.72", uid="uid-web-r-2", rv="9")
    world.index.replace("pods", [fresh])
    assert ("deleted", "uid-web-r-1") in events and ("added", "uid-web-r-2") in events
    assert events.index(("deleted", "uid-web-r-1")) < events.index(("added", "uid-web-r-2"))
    assert not world.svc.cache.has("uid-web-r-1")
    world.wait_prefetched("uid-web-r-2")
    del old
