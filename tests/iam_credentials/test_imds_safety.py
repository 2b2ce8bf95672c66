"""IMDS wire rules and the source-IP safety rules, with raw HTTP clients bound to distinct 127.0.0.x addresses."""

from __future__ import annotations

import json
from typing import Any

from tests.iam_credentials.conftest import ADMIN, imds_credentials, source_session, sts_client

TTL = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}


def test_token_put_ttl_header_rules(world: Any) -> None:
    world.add_pod("team-a", "web-1", "web", "127.0.0.2")
    s = source_session("127.0.0.2")
    url = f"{world.url}/latest/api/token"
    assert s.put(url).status_code == 400
    for bad in ("0", "21601", "ten", "-5"):
        assert s.put(url, headers={"X-aws-ec2-metadata-token-ttl-seconds": bad}).status_code == 400
    ok = s.put(url, headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    assert ok.status_code == 200 and ok.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    forwarded = s.put(url, headers={**TTL, "X-Forwarded-For": "10.0.0.1"})
    assert forwarded.status_code == 403
    tok = {"X-aws-ec2-metadata-token": ok.text}
    creds_path = f"{world.url}/latest/meta-data/iam/security-credentials/"
    assert s.get(creds_path).status_code == 401  # IMDSv1 is off by default
    assert s.get(creds_path, headers={"X-aws-ec2-metadata-token": "garbage"}).status_code == 401
    assert s.get(creds_path, headers={**tok, "X-Forwarded-For": "1.2.3.4"}).status_code == 403
    assert s.get(f"{world.url}/latest/meta-data/instance-id", headers=tok).status_code == 404
    assert s.get(f"{world.url}/latest/user-data", headers=tok).status_code == 404
    info = s.get(f"{world.url}/latest/meta-data/iam/info", headers=tok)
    assert info.status_code == 200
    assert info.json()["InstanceProfileArn"].endswith(":instance-profile/app-reader")


def test_ip_reuse_never_hands_over_the_old_pods_role(world: Any) -> None:
    a = world.add_pod("team-a", "web-a", "web", "127.0.0.5")
    s = source_session("127.0.0.5")
    token_a = s.put(f"{world.url}/latest/api/token", headers=TTL).text
    status, creds_a = imds_credentials(world.url, "127.0.0.5")
    assert status == 200
    assert "/app-reader/" in sts_client(world.moto.url, creds_a).get_caller_identity()["Arn"]
    # The index lags: pod B already reports A's IP while A is still listed -> ambiguous, refused.
    b = world.add_pod("team-b", "batch-b", "batch", "127.0.0.5")
    status, body = imds_credentials(world.url, "127.0.0.5")
    assert status == 403 and "several" in body and "app-reader" not in body
    world.delete_pod(a)
    assert not world.svc.cache.has(a["metadata"]["uid"])
    # A's session token is bound to A's uid: useless to B.
    r = s.get(f"{world.url}/latest/meta-data/iam/security-credentials/", headers={"X-aws-ec2-metadata-token": token_a})
    assert r.status_code == 401
    status, creds_b = imds_credentials(world.url, "127.0.0.5")
    assert status == 200 and creds_b["AccessKeyId"] != creds_a["AccessKeyId"]
    assert "/app-writer/" in sts_client(world.moto.url, creds_b).get_caller_identity()["Arn"]
    # And an unbound pod C taking the IP after B gets a refusal, not B's (or A's) role.
    world.delete_pod(b)
    world.add_pod("team-c", "other", "default", "127.0.0.5")
    status, body = imds_credentials(world.url, "127.0.0.5")
    assert status == 404 and "app-" not in body


def test_ip_taken_over_during_a_watch_gap_serves_the_new_owner_only(world: Any) -> None:
    """A relist after a watch gap (410) shows B at A's IP and A gone: B gets B's role, A's cache is dropped."""
    a = world.add_pod("team-a", "web-x", "web", "127.0.0.6")
    status, creds_a = imds_credentials(world.url, "127.0.0.6")
    assert status == 200 and world.svc.cache.has(a["metadata"]["uid"])
    from tests.iam_credentials.conftest import pod_json

    world.index.replace("pods", [pod_json("team-b", "batch-x", "batch", "127.0.0.6")])
    assert not world.svc.cache.has(a["metadata"]["uid"])
    status, creds = imds_credentials(world.url, "127.0.0.6")
    assert status == 200 and creds["AccessKeyId"] != creds_a["AccessKeyId"]
    assert "/app-writer/" in sts_client(world.moto.url, creds).get_caller_identity()["Arn"]


def test_host_network_and_not_running_pods_are_refused(world: Any) -> None:
    world.add_pod("team-a", "node-agent", "web", "127.0.0.7", host_network=True)
    status, body = imds_credentials(world.url, "127.0.0.7")
    assert status == 403 and "hostNetwork" in body
    world.add_pod("team-a", "lost", "web", "127.0.0.8", phase="Unknown")
    status, body = imds_credentials(world.url, "127.0.0.8")
    assert status == 403 and "not running" in body
    metrics = world.app.test_client().get("/metrics").text
    assert 'kagiya_iam_metadata_refusals_total{endpoint="imds",reason="host-network"}' in metrics
    assert 'kagiya_iam_metadata_refusals_total{endpoint="imds",reason="not-running"}' in metrics


def test_prefetch_answers_the_first_request_from_cache_and_everything_is_audited(world: Any) -> None:
    pod = world.add_pod("team-a", "web-p", "web", "127.0.0.9")
    world.wait_prefetched(pod["metadata"]["uid"])
    cache = world.svc.cache
    minted_before = cache.stats["prefetch"] + cache.stats["refresh"]
    misses_before = cache.stats["miss"]
    status, creds = imds_credentials(world.url, "127.0.0.9")
    assert status == 200
    assert cache.stats["miss"] == misses_before  # no inline mint: answered from the prefetched entry
    assert cache.stats["prefetch"] + cache.stats["refresh"] == minted_before
    client = world.app.test_client()
    metrics = client.get("/metrics").text
    assert 'kagiya_iam_credentials_issued_total{cloud="aws",outcome="success",reason="prefetch"}' in metrics
    assert 'kagiya_iam_credential_cache_total{result="hit"}' in metrics
    events = client.get("/v1/audit?action=iam.credentials.issue", headers=ADMIN).get_json()["items"]
    mine = [e for e in events if e["details"].get("podUid") == pod["metadata"]["uid"]]
    assert mine and mine[0]["outcome"] == "success"
    assert mine[0]["actor"] == "system:serviceaccount:team-a:web"
    assert mine[0]["target"].endswith(":role/app-reader") and mine[0]["details"]["expiry"].endswith("Z")
    dump = json.dumps(events)
    for secret in (creds["SecretAccessKey"], creds["Token"], creds["AccessKeyId"]):
        assert secret not in dump


def test_allow_listed_paths_and_imds_v1_switch(make_settings: Any, tmp_path: Any, moto: Any, gcp_standin: Any) -> None:
    from tests.iam_credentials.conftest import make_world

    w = make_world(make_settings, tmp_path, moto, gcp_standin, imds_v1=True,
                   imds_allowed_paths=["/latest/meta-data/instance-id"])
    try:
        w.add_pod("team-a", "web-v1", "web", "127.0.0.30")
        s = source_session("127.0.0.30")
        assert s.get(f"{w.url}/latest/meta-data/instance-id").status_code == 200
        assert s.get(f"{w.url}/latest/meta-data/hostname").status_code == 404
        r = s.get(f"{w.url}/latest/meta-data/iam/security-credentials/")  # IMDSv1: no session token
        assert r.status_code == 200 and r.text == "app-reader"
    finally:
        w.close()


def test_revoked_binding_stops_serving_at_once_and_drops_the_cache(world: Any) -> None:
    pod = world.add_pod("team-b", "batch-r", "batch", "127.0.0.31")
    assert imds_credentials(world.url, "127.0.0.31")[0] == 200
    client = world.app.test_client()
    items = client.get("/v1/iam/bindings?namespace=team-b", headers=ADMIN).get_json()["items"]
    (binding,) = [b for b in items if b["serviceAccount"] == "batch"]
    assert client.delete(f"/v1/iam/bindings/{binding['id']}", headers=ADMIN).status_code == 200
    status, body = imds_credentials(world.url, "127.0.0.31")
    assert status == 404 and "app-writer" not in body
    assert not world.svc.cache.has(pod["metadata"]["uid"])
