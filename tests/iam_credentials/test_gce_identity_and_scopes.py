"""GCE endpoint: ID tokens are audited and counted like access tokens; a pod's distinct scope sets are capped."""

from __future__ import annotations

import threading
from typing import Any

from tests.iam_credentials.conftest import ADMIN, GSA_READER, source_session

FLAVOR = {"Metadata-Flavor": "Google"}
BASE = "/computeMetadata/v1/instance/service-accounts/default"


def test_identity_tokens_are_audited_and_counted(world: Any) -> None:
    world.add_pod("team-a", "gweb-id", "gweb", "127.0.0.91", uid="uid-gweb-id")
    s = source_session("127.0.0.91")
    r = s.get(f"{world.url}{BASE}/identity", params={"audience": "https://svc.example"}, headers=FLAVOR)
    assert r.status_code == 200 and r.text.count(".") == 2
    again = s.get(f"{world.url}{BASE}/identity", params={"audience": "https://svc.example"}, headers=FLAVOR)
    assert again.text == r.text  # reused while fresh: minted (and audited) once
    client = world.app.test_client()
    events = client.get("/v1/audit", query_string={"action": "iam.credentials.issue"}, headers=ADMIN).get_json()
    minted = [e for e in events["items"] if e["details"].get("reason") == "id-token"]
    assert len(minted) == 1, events["items"]
    event = minted[0]
    assert event["outcome"] == "success" and event["target"] == GSA_READER
    assert event["details"]["podUid"] == "uid-gweb-id" and event["details"]["audience"] == "https://svc.example"
    assert r.text not in str(event)  # never the token itself
    metrics = client.get("/metrics").text
    assert 'kagiya_iam_credentials_issued_total{cloud="gcp",outcome="success",reason="id-token"} 1.0' in metrics


def test_identity_token_cache_is_safe_under_concurrency(world: Any) -> None:
    world.add_pod("team-a", "gweb-cc", "gweb", "127.0.0.92", uid="uid-gweb-cc")
    errors: list[BaseException] = []

    def fetch(i: int) -> None:
        try:
            r = source_session("127.0.0.92").get(f"{world.url}{BASE}/identity",
                                                 params={"audience": f"https://a{i % 5}.example"}, headers=FLAVOR)
            assert r.status_code == 200
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    world.svc.drop_pod("uid-gweb-cc")
    assert not any(k[0] == "uid-gweb-cc" for k in world.svc._id_tokens)


def test_distinct_scope_sets_per_pod_are_capped(world: Any) -> None:
    world.add_pod("team-a", "gweb-sc", "gweb", "127.0.0.93", uid="uid-gweb-sc")
    world.wait_prefetched("uid-gweb-sc")  # the default scopes: one set already held
    cap = world.svc.settings.gcp_max_scope_sets_per_pod
    assert cap == 8
    s = source_session("127.0.0.93")
    for i in range(cap - 1):
        r = s.get(f"{world.url}{BASE}/token", params={"scopes": f"scope-{i}"}, headers=FLAVOR)
        assert r.status_code == 200, (i, r.text)
    r = s.get(f"{world.url}{BASE}/token", params={"scopes": "scope-one-too-many"}, headers=FLAVOR)
    assert r.status_code == 429 and "gcp_max_scope_sets_per_pod" in r.text
    assert r.headers["Metadata-Flavor"] == "Google"
    # Sets it already holds are still served; the cache did not grow.
    assert s.get(f"{world.url}{BASE}/token", params={"scopes": "scope-0"}, headers=FLAVOR).status_code == 200
    assert sum(1 for k in world.svc.cache._entries if k[0] == "uid-gweb-sc") == cap
