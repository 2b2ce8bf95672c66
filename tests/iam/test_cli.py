"""`kagiya iam ...` against a live kagiya server (real HTTP on loopback): the whole request -> approve -> explain ->
revoke path with audit events, denials and refusals as one-line errors with their exit statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import bearer
from tests.iam.conftest import arn

ADMIN_TOKEN, DEV_TOKEN, APPROVER_TOKEN = "admin-token-0001", "dev-token-0002", "approver-token-0003"


def iam(runner: Any, server: str, token: str, *args: str) -> Any:
    return runner(["iam", "--server", server, *args], env={"KAGIYA_TOKEN": token})


def test_cli_request_approve_explain_revoke(runner: Any, live_server: str, iam_client: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"allow:\n  - cloud: aws\n    glob: '{arn('app-*')}'\napproverGroups: [approvers]\n")
    out = iam(runner, live_server, ADMIN_TOKEN, "policy", "team-a", "-f", str(policy))
    assert out.exit_code == 0, out.stderr
    assert f"allow[0]: aws glob {arn('app-*')}" in out.stdout and "approver groups: approvers" in out.stdout

    out = iam(runner, live_server, DEV_TOKEN, "request", "-n", "team-a", "--service-account", "web",
              "--role", arn("app-writer"), "--reason", "write the bucket", "-o", "json")
    assert out.exit_code == 0, out.stderr
    request = json.loads(out.stdout)
    assert request["state"] == "pending"

    out = iam(runner, live_server, DEV_TOKEN, "list", "requests", "--state", "pending")
    assert f"request {request['id']}: pending  team-a/web -> aws {arn('app-writer')}" in out.stdout

    out = iam(runner, live_server, APPROVER_TOKEN, "approve", str(request["id"]), "--reason", "reviewed")
    assert out.exit_code == 0, out.stderr
    assert f"request {request['id']}: approved" in out.stdout
    binding_id = int(out.stdout.rsplit("binding ", 1)[1])

    out = iam(runner, live_server, DEV_TOKEN, "explain", "-n", "team-a", "--pod", "web-1")
    assert out.exit_code == 0, out.stderr
    assert f"aws: {arn('app-writer')} from binding:{binding_id}, allowed by allow[0]" in out.stdout
    assert "gcp: none (no gcp binding or annotation applies to pod team-a/web-1)" in out.stdout

    out = iam(runner, live_server, DEV_TOKEN, "list")
    assert f"binding {binding_id}: active  team-a/web -> aws {arn('app-writer')}" in out.stdout

    out = iam(runner, live_server, APPROVER_TOKEN, "revoke", str(binding_id))
    assert out.exit_code == 0 and f"binding {binding_id}: revoked" in out.stdout
    out = iam(runner, live_server, DEV_TOKEN, "explain", "-n", "team-a", "--pod", "web-1", "--cloud", "aws")
    assert "aws: none" in out.stdout and "refused" not in out.stdout

    events = iam_client.get("/v1/audit?action=iam", headers=bearer(ADMIN_TOKEN)).json["items"]
    assert [(e["actor"], e["action"], e["outcome"]) for e in events] == [
        ("alice", "iam.policy.update", "success"),
        ("bob", "iam.request.create", "pending"),
        ("carol", "iam.request.approve", "approved"),
        ("carol", "iam.binding.create", "success"),
        ("carol", "iam.binding.revoke", "success"),
    ]


def test_cli_errors_are_one_line_with_exit_status(runner: Any, live_server: str, iam_client: Any) -> None:
    iam_client.put("/v1/iam/policies/team-a", json={"allow": [{"cloud": "aws", "glob": arn("app-*")}]},
                   headers=bearer(ADMIN_TOKEN))
    denied = iam(runner, live_server, DEV_TOKEN, "request", "-n", "team-a", "--service-account", "web",
                 "--role", arn("admin"))
    assert denied.exit_code == 5
    assert "denied: aws identity" in denied.stderr and "matches none of allow[0]" in denied.stderr
    assert denied.stderr.count("\n") == 1

    rid = json.loads(iam(runner, live_server, DEV_TOKEN, "request", "-n", "team-a", "--service-account", "web",
                         "--role", arn("app-x"), "-o", "json").stdout)["id"]
    own = iam(runner, live_server, DEV_TOKEN, "approve", str(rid))
    assert own.exit_code == 5 and "may not approve requests in namespace 'team-a'" in own.stderr
    missing = iam(runner, live_server, APPROVER_TOKEN, "approve", "9999")
    assert missing.exit_code == 4 and "binding request 9999 not found" in missing.stderr
    usage = iam(runner, live_server, DEV_TOKEN, "request", "-n", "team-a", "--service-account", "web")
    assert usage.exit_code == 2 and "exactly one of --role" in usage.stderr
    bad_token = iam(runner, live_server, "wrong", "list")
    assert bad_token.exit_code == 5 and "invalid bearer token" in bad_token.stderr
    no_token = runner(["iam", "--server", live_server, "list"])
    assert no_token.exit_code == 2 and "KAGIYA_TOKEN" in no_token.stderr


def test_cli_reports_an_unreachable_server(runner: Any) -> None:
    from tests.support.servers import free_port

    out = runner(["iam", "--server", f"http://127.0.0.1:{free_port()}", "list"], env={"KAGIYA_TOKEN": "x"})
    assert out.exit_code == 6 and "cannot reach kagiya at" in out.stderr


def test_server_from_environment(runner: Any, live_server: str) -> None:
    out = runner(["iam", "list", "requests"], env={"KAGIYA_SERVER": live_server, "KAGIYA_TOKEN": DEV_TOKEN})
    assert out.exit_code == 0 and out.stdout.strip() == "no requests"


def test_iam_cli_starts_without_heavy_imports() -> None:
    import subprocess
    import sys

    code = ("import sys; from kagiya.cli import main; main(['iam', '--help']); "
            "print(sorted(m for m in ('flask', 'kubernetes', 'sqlalchemy', 'boto3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={
        "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "explain" in out.stdout and "request" in out.stdout
