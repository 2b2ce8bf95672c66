"""The IMDSv2 TTL header takes ASCII digits only: other Unicode digits are a 400, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

TTL = "X-aws-ec2-metadata-token-ttl-seconds"


@pytest.mark.parametrize("bad", ["\u00b2", "6\u00b9", "\u0660\u0661", "1" * 40, "60 60", "+60"])
def test_non_ascii_or_odd_digit_strings_are_a_clear_400(world: Any, bad: str) -> None:
    world.add_pod("team-a", "web-ttl", "web", "127.0.0.95")
    client = world.app.test_client()
    r = client.put("/latest/api/token", headers={TTL: bad}, environ_base={"REMOTE_ADDR": "127.0.0.95"})
    assert r.status_code == 400, r.get_data(as_text=True)
    assert TTL in r.get_json()["message"]


def test_surrounding_blanks_are_tolerated(world: Any) -> None:
    world.add_pod("team-a", "web-ttl2", "web", "127.0.0.96")
    r = world.app.test_client().put("/latest/api/token", headers={TTL: " 60 "},
                                    environ_base={"REMOTE_ADDR": "127.0.0.96"})
    assert r.status_code == 200 and r.headers[TTL] == "60"
