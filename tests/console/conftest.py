"""Console fixtures: an app with a token file and a namespace policy (approvers: group `approvers`), and helpers
to file binding requests through the JSON API and to sign in through the console's own form."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import bearer

ROLE = "arn:aws:iam::123456789012:role/team-a-reader"
POLICY = {"allow": [{"cloud": "aws", "glob": "arn:aws:iam::123456789012:role/team-a-*"}],
          "approverGroups": ["approvers"]}


def put_policy(client: Any) -> None:
    resp = client.put("/v1/iam/policies/team-a", json=POLICY, headers=bearer("admin-token-0001"))
    assert resp.status_code == 200, resp.get_json()


def file_request(client: Any, token: str = "dev-token-0002", sa: str = "web", reason: str = "needs S3") -> int:
    resp = client.post("/v1/iam/binding-requests", headers=bearer(token), json={
        "namespace": "team-a", "serviceAccount": sa, "cloud": "aws", "identity": ROLE, "reason": reason})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["state"] == "pending"
    return int(resp.get_json()["id"])


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: Any, token: str) -> str:
    """Sign in through the static form; returns the session's CSRF token."""
    page = client.get("/ui/signin")
    resp = client.post("/ui/signin", data={"token": token, "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return csrf_of(client.get("/ui/requests").get_data(as_text=True))


@pytest.fixture
def console_app(app: Any) -> Any:
    put_policy(app.test_client())
    return app
