"""IMDSv2 session tokens work across replicas: the HMAC key is shared (store or key file) and named by a key id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.iam_credentials.conftest import ACCOUNT, ADMIN, pod_json

TTL = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
POD_IP = "127.0.0.81"


def _replica(settings: Any) -> Any:
    from kagiya.iam.context import iam_context
    from kagiya.kube import KubeIndex
    from kagiya.web import create_app

    app = create_app(settings)
    index = KubeIndex()
    index.replace("namespaces", [{"metadata": {"name": "team-a"}}])
    index.replace("serviceaccounts", [])
    index.replace("pods", [pod_json("team-a", "web-1", "web", POD_IP)])
    iam_context(app).kube = index
    return app


@pytest.fixture
def replicas(make_settings: Any, tmp_path: Path) -> Iterator[Any]:
    """Build two apps (two replicas / workers) on one store, from settings overrides."""
    made: list[Any] = []

    def make(**credentials: Any) -> tuple[Any, Any]:
        tokens = tmp_path / "tokens.csv"
        tokens.write_text('admin-token-0001,alice,uid-alice,"kagiya:admins"\n')
        settings = make_settings({"authn": {"token_file": str(tokens)},
                                  "credentials": {"prefetch": False, **credentials}})
        one, two = _replica(settings), _replica(settings)
        made.extend((one, two))
        c = one.test_client()
        policy = {"allow": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"}],
                  "autoApprove": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"}]}
        if c.get("/v1/iam/bindings", headers=ADMIN).get_json()["items"] == []:
            assert c.put("/v1/iam/policies/team-a", json=policy, headers=ADMIN).status_code == 200
            r = c.post("/v1/iam/binding-requests", headers=ADMIN, json={
                "namespace": "team-a", "serviceAccount": "web", "cloud": "aws",
                "identity": f"arn:aws:iam::{ACCOUNT}:role/app-reader"})
            assert r.status_code == 201
        return one, two

    yield make
    for app in made:
        from kagiya.iam.metadata.service import service_of

        service_of(app).stop()
        app.extensions["kagiya.store"].dispose()


def _put(app: Any) -> str:
    r = app.test_client().put("/latest/api/token", headers=TTL, environ_base={"REMOTE_ADDR": POD_IP})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_data(as_text=True)


def _role(app: Any, token: str) -> Any:
    return app.test_client().get("/latest/meta-data/iam/security-credentials/",
                                 headers={"X-aws-ec2-metadata-token": token}, environ_base={"REMOTE_ADDR": POD_IP})


def test_token_put_on_one_replica_is_accepted_by_another(replicas: Any) -> None:
    one, two = replicas()
    r = _role(two, _put(one))
    assert r.status_code == 200 and r.get_data(as_text=True) == "app-reader"
    r = _role(one, _put(two))
    assert r.status_code == 200


def test_session_key_file_is_shared_and_rotates(replicas: Any, tmp_path: Path) -> None:
    old_key, new_key = "o" * 40, "n" * 40
    keys = tmp_path / "session-keys"
    keys.write_text(old_key + "\n")
    keys.chmod(0o600)  # key files readable by others are refused
    one, _ = replicas(session_key_file=str(keys))
    issued_with_old = _put(one)
    # Rotation: the new key first (signs), the old one still listed (verifies) until old tokens have expired.
    keys.write_text(f"{new_key}\n{old_key}\n")
    two, three = replicas(session_key_file=str(keys))
    assert _role(two, issued_with_old).status_code == 200
    assert _role(three, _put(two)).status_code == 200
    assert _put(two).split(".")[0] != issued_with_old.split(".")[0]  # a different key id signs now
    keys.write_text(new_key + "\n")
    four, _ = replicas(session_key_file=str(keys))
    assert _role(four, issued_with_old).status_code == 401


def test_a_short_or_missing_key_file_is_a_config_error(replicas: Any, tmp_path: Path) -> None:
    from kagiya.errors import ConfigError

    short = tmp_path / "short"
    short.write_text("tooshort\n")
    with pytest.raises(ConfigError, match="at least 32"):
        replicas(session_key_file=str(short))
    with pytest.raises(ConfigError, match="cannot read"):
        replicas(session_key_file=str(tmp_path / "absent"))
