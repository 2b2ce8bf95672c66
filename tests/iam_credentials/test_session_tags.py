"""Issue 12.5: STS session tags are opt-in (`credentials.aws_session_tags`), so roles whose trust policy lacks
`sts:TagSession` (kube2iam/kiam roles) keep working; seen on the wire by a counting front of moto_server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.iam_credentials.conftest import imds_credentials, make_world
from tests.iam_credentials.sts_counter import StsCounter


@pytest.fixture
def sts(moto: Any) -> Iterator[StsCounter]:
    counter = StsCounter(moto.url).start()
    yield counter
    counter.stop()


@pytest.mark.parametrize("tags", [False, True], ids=["default-off", "opt-in"])
def test_session_tags_only_when_enabled(make_settings: Any, tmp_path: Path, moto: Any, gcp_standin: Any,
                                        sts: StsCounter, tags: bool) -> None:
    extra = {"aws_session_tags": True} if tags else {}
    world = make_world(make_settings, tmp_path, moto, gcp_standin, sts_endpoint=sts.url, **extra)
    try:
        world.add_pod("team-a", "web-t", "web", "127.0.5.1")
        world.wait_prefetched("uid-team-a-web-t")
        status, creds = imds_credentials(world.url, "127.0.5.1")
        assert status == 200 and creds["Code"] == "Success"
        assert sts.assume_role["team-a.web-t"] == 1
        expected = {"kubernetes-namespace": "team-a", "kubernetes-service-account": "web",
                    "kubernetes-pod": "web-t"} if tags else {}
        assert sts.tags == [expected]
    finally:
        world.close()
