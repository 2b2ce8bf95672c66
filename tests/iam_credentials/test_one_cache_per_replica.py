"""Issue 12.2: one pod index and one credential cache per replica (one process), whatever thread answers.

Through the served app (threaded HTTP server, concurrent clients) with kagiya's real watcher on the kube-apiserver
stand-in and moto_server behind a counting STS front: prefetch calls STS AssumeRole exactly once per bound pod,
the background work (watches, refresher, pod-event hook) runs once however many threads start it, and a pod whose
credentials are cached gets 20/20 answers while STS is failing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.iam_credentials.conftest import imds_credentials, make_world
from tests.iam_credentials.sts_counter import StsCounter


@pytest.fixture
def counted_world(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any) -> Iterator[tuple[Any, Any]]:
    from tests.standins.kube_apiserver import KubeApiServer

    sts = StsCounter(moto.url).start()
    with KubeApiServer() as kube:
        world = make_world(make_settings, tmp_path, moto, gcp_standin, kube=kube, sts_endpoint=sts.url)
        try:
            yield world, sts
        finally:
            world.close()
            sts.stop()


def _threads(prefix: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive())


@pytest.mark.slow
def test_prefetch_once_per_pod_and_cached_answers_survive_an_sts_outage(counted_world: tuple[Any, Any]) -> None:
    world, sts = counted_world
    # Many threads starting the background work at once (readiness probes, first requests) start nothing new:
    # this replica already runs one refresher and one watch per kind (other tests' apps may run theirs too).
    refreshers, pod_watches = _threads("kagiya-credential-refresh"), _threads("kagiya-kube-pods")
    own = world.svc.cache._thread
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: world.svc.ensure_started(), range(32)))
        list(pool.map(lambda _: world.ctx.kube_index(), range(32)))
    assert own is not None and own.is_alive() and world.svc.cache._thread is own
    assert _threads("kagiya-credential-refresh") == refreshers
    assert _threads("kagiya-kube-pods") == pod_watches

    pods = [world.add_pod("team-a", f"web-{i}", "web", f"127.0.3.{i + 1}") for i in range(12)]
    for pod in pods:
        world.wait_prefetched(pod["metadata"]["uid"])
    time.sleep(0.5)  # any duplicate prefetch would have reached STS by now
    assert sts.assume_role == {f"team-a.web-{i}": 1 for i in range(12)}

    # Readiness and many concurrent requests afterwards do not prefetch again.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda p: imds_credentials(world.url, p["status"]["podIP"]), pods))
    assert all(status == 200 for status, _ in results)
    assert sts.total == 12

    # STS fails: the cached pod is still answered, 20 times out of 20, from concurrent threads.
    sts.failing = True
    ip = pods[0]["status"]["podIP"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: imds_credentials(world.url, ip), range(20)))
    assert [status for status, _ in answers] == [200] * 20
    assert len({body["AccessKeyId"] for _, body in answers}) == 1
    # A pod that appears during the outage has nothing cached: a clear 503, never a 500.
    late = world.add_pod("team-a", "web-late", "web", "127.0.3.99")
    time.sleep(0.2)
    status, body = imds_credentials(world.url, late["status"]["podIP"])
    assert status == 503 and "AccessKeyId" not in body
