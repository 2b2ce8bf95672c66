"""Issue 16.7: a bounded schemathesis run against /openapi.json, in-process, as an admin and as a plain caller.

Fails on any 5xx and on any response that does not match the documented schema (status codes included), so the
description stays true and the service refuses fuzzed input with 4xx Status bodies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.iam.conftest import BASE_ARN
from tests.standins.kube_apiserver import KubeApiServer
from tests.support.apps import synced_iam_app

pytestmark = [pytest.mark.slow]

TOKENS = {"admin": "admin-token-0001", "caller": "dev-token-0002"}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from kagiya.config import load_settings

    tmp: Path = tmp_path_factory.mktemp("fuzz")
    tokens = tmp / "tokens.csv"
    tokens.write_text('admin-token-0001,alice,uid-alice,"kagiya:admins"\ndev-token-0002,bob,uid-bob,"team-a"\n')
    with KubeApiServer(bookmark_interval=0.2) as kube:
        kube.add_namespace("team-a")
        kube.add_service_account("team-a", "web")
        kube.add_pod("team-a", "web-1", ip="10.1.0.11", service_account="web", labels={"app": "web"})
        settings = load_settings(env={}, overrides={
            "data_dir": str(tmp / "data"), "log_level": "CRITICAL", "authn": {"token_file": str(tokens)},
            "iam": {"base_role_arn": BASE_ARN},
            "kube": {"mode": "url", "host": kube.url, "retry_seconds": 0.05, "max_retry_seconds": 0.2}})
        with synced_iam_app(settings, testing=False) as app:  # errors answer as Status bodies, as in production
            yield app


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)
CHECKS = [checks.not_a_server_error, checks.response_schema_conformance, checks.status_code_conformance]


def _runner(operation: Any, token: str, codes: list[int]) -> Any:
    @given(case=operation.as_strategy())
    @FUZZ
    def run(case: Any) -> None:
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        codes.append(response.status_code)

    return run


def fuzz(app: Any, token: str) -> tuple[list[str], dict[str, list[int]]]:
    """Up to 25 generated requests per operation: (one line per operation that broke a check, the status codes
    each operation answered)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures = []
    seen: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        label = f"{operation.method.upper()} {operation.path}"
        run = _runner(operation, token, seen.setdefault(label, []))

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{label}: {str(exc).strip()[:600]}")
    return failures, seen


@pytest.mark.parametrize("role", sorted(TOKENS))
def test_fuzzed_requests_get_documented_answers(fuzz_app: Any, role: str) -> None:
    failures, seen = fuzz(fuzz_app, TOKENS[role])
    assert not failures, "\n\n".join(failures)
    assert len(seen) >= 40 and sum(map(len, seen.values())) >= 400, seen
    if role == "admin":
        # the description's patterns let the generator build requests the service accepts as well-formed
        # (it then answers by policy or by state), not only 400/422 refusals
        for op in ("POST /v1/iam/binding-requests", "GET /v1/iam/binding-requests/{rid}",
                   "PUT /v1/iam/policies/{namespace}", "GET /v1/audit"):
            well_formed = [code for code in seen[op] if code not in (400, 422)]
            assert len(well_formed) * 3 >= len(seen[op]), (op, seen[op])
