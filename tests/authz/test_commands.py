"""`kagiya authz check` explains which rule decided; `kagiya authz validate` names the bad line."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_check_allowed_names_the_rule(runner: Any, policy_file: Path) -> None:
    r = runner(["authz", "check", "--policy", str(policy_file), "--user", "dave", "--group", "oidc:dev-web",
                "--verb", "get", "--resource", "pods", "-n", "dev"])
    assert r.exit_code == 0, r.stderr
    assert "request: dave get pods in dev groups=oidc:dev-web" in r.stdout
    assert f"decision: allowed by allow rule 'devs-read-pods' (line 9) in {policy_file}" in r.stdout


def test_check_denied_shows_the_overridden_allow(runner: Any, policy_file: Path) -> None:
    r = runner(["authz", "check", "--policy", str(policy_file), "-u", "eve", "-g", "oidc:dev-web", "-g", "contractors",
                "--verb", "get", "--resource", "secrets", "-n", "dev"])
    assert r.exit_code == 5
    assert "decision: denied by deny rule 'no-secrets-for-contractors' (line 4)" in r.stdout
    assert "overridden (deny wins): allow rule 'devs-read-secrets' (line 16)" in r.stdout


def test_check_subresource_and_non_resource(runner: Any, policy_file: Path) -> None:
    r = runner(["authz", "check", "--policy", str(policy_file), "-u", "x", "--verb", "create", "--resource",
                "pods/exec", "-n", "dev"])
    assert r.exit_code == 5 and "no-exec-anywhere" in r.stdout
    r = runner(["authz", "check", "--policy", str(policy_file), "-u", "x", "-g", "system:authenticated",
                "--verb", "get", "--path", "/metrics"])
    assert r.exit_code == 1 and "decision: no opinion (no rule matched; RBAC decides)" in r.stdout


def test_check_uses_the_configured_policy(runner: Any, policy_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "kagiya.yaml"
    config.write_text(f"authz:\n  policy_file: {policy_file}\n")
    r = runner(["--config", str(config), "authz", "check", "-u", "ops-bot", "--verb", "get", "--resource", "nodes"])
    assert r.exit_code == 0 and "ops-nodes" in r.stdout
    r = runner(["authz", "check", "-u", "ops-bot", "--verb", "get", "--resource", "nodes"])
    assert r.exit_code == 1 and "no policy configured" in r.stdout


def test_check_usage_errors(runner: Any, policy_file: Path) -> None:
    r = runner(["authz", "check", "--policy", str(policy_file), "-u", "x", "--verb", "get"])
    assert r.exit_code == 2 and "either --resource" in r.stderr


def test_validate(runner: Any, policy_file: Path, tmp_path: Path) -> None:
    r = runner(["authz", "validate", str(policy_file)])
    assert r.exit_code == 0 and "ok, 8 rules (5 allow, 3 deny)" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n    effect: allow\n    users: [x]\n    verbs: [get]\n    resource: [pods]\n")
    r = runner(["authz", "validate", str(bad)])
    assert r.exit_code == 3
    assert r.stderr.strip() == (f"kagiya: error: {bad} line 6: unknown key rules[0].resource (known: apiGroups, "
                                "effect, groups, name, namespaces, nonResourceURLs, resourceNames, resources, "
                                "users, verbs)")


def test_validate_a_deeply_nested_file_is_one_line(runner: Any, tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("rules:\n  - " + "[" * 10000 + "]" * 10000 + "\n")
    r = runner(["authz", "validate", str(deep)])
    assert r.exit_code == 3
    assert r.stderr.strip() == (f"kagiya: error: {deep} line 2: nested more than 32 levels deep "
                                "(a policy needs 4 at most)")
    assert "Traceback" not in r.stderr + r.stdout
