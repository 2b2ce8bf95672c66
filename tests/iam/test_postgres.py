"""The binding lifecycle on a real PostgreSQL server (the production store): portable SQL, and two replicas
(two engines) approving the same request at once -> exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kagiya.authn.providers.base import User
from kagiya.errors import Conflict
from tests.iam.conftest import BASE_ARN, arn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = User("alice", groups=("kagiya:admins",))
BOB = User("bob", groups=("team-a",))
CAROL = User("carol", groups=("approvers",))


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    from tests.support.postgres import pg_bindir, postgres_server

    if pg_bindir() is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/install-system-deps.sh)")
    with postgres_server() as url:
        yield url


def replica(pg_url: str, tmp_path: Path) -> Any:
    from kagiya.config import load_settings
    from kagiya.iam.context import IamContext
    from kagiya.store import Store

    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "database_url": pg_url,
                                                "iam": {"base_role_arn": BASE_ARN}})
    store = Store(settings.sqlalchemy_url)
    store.migrate()
    return IamContext.build(settings, store)


def test_lifecycle_and_racing_approvals_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from kagiya import audit
    from kagiya.iam import bindings
    from kagiya.iam.policy import save_policy
    from kagiya.iam.resolve import resolve_workload

    one, two = replica(pg_url, tmp_path), replica(pg_url, tmp_path)
    try:
        save_policy(one, "team-a", {"allow": [{"cloud": "aws", "glob": arn("app-*")}],
                                    "approverGroups": ["approvers"]}, "alice", "")
        for round_ in range(5):
            spec = bindings.parse_request({"namespace": "team-a", "serviceAccount": f"sa-{round_}", "cloud": "aws",
                                           "identity": arn(f"app-{round_}"), "ttlSeconds": 3600}, 0)
            rid = bindings.create_request(one, BOB, spec)["id"]
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def approve(ctx: Any, who: User, rid: int = rid, barrier: threading.Barrier = barrier,
                        outcomes: list[str] = outcomes) -> None:
                barrier.wait()
                try:
                    bindings.decide(ctx, who, rid, "approved")
                    outcomes.append("won")
                except Conflict:
                    outcomes.append("conflict")

            threads = [threading.Thread(target=approve, args=a) for a in ((one, ALICE), (two, CAROL))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes) == ["conflict", "won"]
            res = resolve_workload(two, "team-a", f"sa-{round_}", None, cloud="aws")
            assert res.allowed and res.identity is not None and res.identity.identity == arn(f"app-{round_}")
        items, _ = bindings.list_bindings(two, {"namespace": "team-a"}, 0, 100)
        assert len(items) == 5 and all(b["expiresAt"] for b in items)
        bindings.revoke(two, CAROL, items[0]["id"])
        assert not resolve_workload(one, "team-a", "sa-0", None, cloud="aws").allowed
        events, _ = audit.query(one.store, audit.AuditQuery(action="iam.request.approve", limit=50))
        assert len(events) == 5
    finally:
        one.store.dispose()
        two.store.dispose()


def test_racing_approvals_of_two_identities_make_one_binding_on_postgres(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas approving conflicting requests (same pods, different roles) at once: the conflict check and the
    insert are serialised across replicas, so one wins and the other is 409, never two active bindings."""
    from kagiya.iam import bindings, conflicts
    from kagiya.iam.policy import save_policy

    one, two = replica(pg_url, tmp_path), replica(pg_url, tmp_path)
    real = conflicts.check_no_conflict
    barrier = threading.Barrier(2, timeout=1.0)

    def slow_check(*args: Any) -> None:  # both wait after checking, unless the second is held before its check
        real(*args)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(conflicts, "check_no_conflict", slow_check)
    try:
        save_policy(one, "team-r", {"allow": [{"cloud": "aws", "glob": arn("app-*")}],
                                    "approverGroups": ["approvers"]}, "alice", "")
        rids = [bindings.create_request(one, BOB, bindings.parse_request(
            {"namespace": "team-r", "serviceAccount": "svc", "cloud": "aws", "identity": arn(role)}, 0))["id"]
            for role in ("app-x", "app-y")]
        outcomes: list[str] = []

        def approve(ctx: Any, who: User, rid: int) -> None:
            try:
                bindings.decide(ctx, who, rid, "approved")
                outcomes.append("won")
            except Conflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=approve, args=a) for a in ((one, ALICE, rids[0]), (two, CAROL, rids[1]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["conflict", "won"]
        items, _ = bindings.list_bindings(two, {"namespace": "team-r"}, 0, 100)
        assert len([b for b in items if b["state"] == "active"]) == 1
    finally:
        one.store.dispose()
        two.store.dispose()
