"""Review of issue 12.8: the one-identity-per-pod rule holds under concurrency. Two approvals of conflicting requests
racing each other must not both make a binding (the check and the insert are serialised in one transaction), and two
first `PUT /v1/iam/policies/{ns}` at once answer 200 and 409 Status, never 500."""

from __future__ import annotations

import threading
from typing import Any

from tests.iam_credentials.conftest import ACCOUNT, ADMIN, ROLE_READER, ROLE_WRITER


def _pending(client: Any, ns: str, role: str) -> dict[str, Any]:
    body = {"namespace": ns, "serviceAccount": "svc", "cloud": "aws", "identity": role}
    r = client.post("/v1/iam/binding-requests", headers=ADMIN, json=body)
    assert r.status_code in (201, 202), r.get_json()
    return r.get_json()


def test_two_concurrent_conflicting_approvals_make_one_binding(world: Any, monkeypatch: Any) -> None:
    from kagiya.iam import conflicts

    client = world.app.test_client()
    policy = {"allow": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"}], "allowSelfApproval": True}
    assert client.put("/v1/iam/policies/team-r", json=policy, headers=ADMIN).status_code == 200
    first, second = _pending(client, "team-r", ROLE_READER), _pending(client, "team-r", ROLE_WRITER)
    # Widen the race window: each approval waits (up to 1 s) after its check for the other to have checked too.
    # Serialised approvals never meet there: the second one only checks once the first has committed.
    real = conflicts.check_no_conflict
    barrier = threading.Barrier(2, timeout=1.0)

    def slow_check(*args: Any) -> None:
        real(*args)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(conflicts, "check_no_conflict", slow_check)
    statuses: list[int] = []

    def approve(req: dict[str, Any]) -> None:
        c = world.app.test_client()
        statuses.append(c.post(f"/v1/iam/binding-requests/{req['id']}/approve", headers=ADMIN, json={}).status_code)

    threads = [threading.Thread(target=approve, args=(r,)) for r in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200, 409]
    active = client.get("/v1/iam/bindings?namespace=team-r&serviceAccount=svc&cloud=aws", headers=ADMIN)
    assert len([b for b in active.get_json()["items"] if b["state"] == "active"]) == 1


def test_concurrent_first_policy_puts_never_500(world: Any, monkeypatch: Any) -> None:
    import sqlalchemy as sa

    from kagiya.iam.schema import policies

    policy = {"allow": [{"cloud": "aws", "glob": f"arn:aws:iam::{ACCOUNT}:role/app-*"}]}
    # Both writers read "no policy yet" before either inserts: the loser's insert hits the primary key.
    real_select = sa.select
    barrier = threading.Barrier(2, timeout=2.0)

    def select(*cols: Any, **kw: Any) -> Any:
        stmt = real_select(*cols, **kw)
        if len(cols) == 1 and cols[0] is policies.c.version and threading.current_thread().name.startswith("put-"):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return stmt

    monkeypatch.setattr(sa, "select", select)
    answers: list[Any] = []

    def put() -> None:
        r = world.app.test_client().put("/v1/iam/policies/team-p", json=policy, headers=ADMIN)
        answers.append((r.status_code, r.get_json()))

    threads = [threading.Thread(target=put, name=f"put-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(code for code, _ in answers)
    assert codes == [200, 409], answers
    conflict = next(body for code, body in answers if code == 409)
    assert conflict["kind"] == "Status" and conflict["reason"] == "Conflict"
