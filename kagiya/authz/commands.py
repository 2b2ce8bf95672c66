"""`kagiya authz check` and `kagiya authz validate` (docs/authz.md).

`check` evaluates one request against the policy exactly as the webhook does and says which rule decided (and,
for a deny, which allow rules it overrode). Exit status: 0 allowed, 5 denied, 1 no opinion. `validate` loads a
policy file with the same validation as the service and prints the first problem with its line number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kagiya.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from kagiya.authz.policy import Policy


def _load(policy_file: str | None) -> Policy | None:
    from kagiya.authz.policy_file import load_policy_file

    if policy_file:
        return load_policy_file(policy_file)
    from kagiya.cli import get_settings

    configured = get_settings().section("authz").policy_file
    return load_policy_file(configured) if configured else None


@click.group(name="authz")
def group() -> None:
    """Check and explain the SubjectAccessReview policy."""


@group.command()
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False),
              help="Policy file (default: the configured authz.policy_file).")
@click.option("--user", "-u", default="", help="User name as the apiserver sends it (after any prefix).")
@click.option("--group", "-g", "groups", multiple=True, help="A group of the user (repeatable).")
@click.option("--verb", required=True, help="get, list, watch, create, update, patch, delete, ...")
@click.option("--resource", default="", help="Resource, e.g. pods (or pods/log for a subresource).")
@click.option("--subresource", default="", help="Subresource, e.g. log, exec, status.")
@click.option("--name", default="", help="Resource name.")
@click.option("--api-group", default="", help="API group ('' is the core group).")
@click.option("-n", "--namespace", default="", help="Namespace (omit for a cluster-scoped request).")
@click.option("--path", default="", help="Non-resource URL path, e.g. /healthz (instead of --resource).")
def check(policy_file: str | None, user: str, groups: tuple[str, ...], verb: str, resource: str, subresource: str,
          name: str, api_group: str, namespace: str, path: str) -> None:
    """Evaluate one request and explain which rule decided."""
    from kagiya.authz.policy import Attributes, evaluate

    if bool(path) == bool(resource):
        raise UsageError("give either --resource (a resource request) or --path (a non-resource request)")
    if not user and not groups:
        raise UsageError("give --user and/or --group")
    if "/" in resource:
        resource, _, sub = resource.partition("/")
        if subresource and subresource != sub:
            raise UsageError(f"--resource names subresource {sub!r} but --subresource says {subresource!r}")
        subresource = sub
    attrs = Attributes(user=user, groups=groups, verb=verb, resource_request=not path, namespace=namespace,
                       api_group=api_group, resource=resource, subresource=subresource, name=name, path=path)
    policy = _load(policy_file)
    decision = evaluate(policy, attrs)
    click.echo(f"request: {attrs.user or '(no user)'} {attrs.describe()}"
               + (f" groups={','.join(attrs.groups)}" if attrs.groups else ""))
    if policy is None:
        click.echo("decision: no opinion (no policy configured; RBAC decides)")
    elif decision.rule is None:
        click.echo("decision: no opinion (no rule matched; RBAC decides)")
    else:
        word = "allowed" if decision.allowed else "denied"
        click.echo(f"decision: {word} by {decision.rule.label} in {policy.source}")
        for other in decision.also_matched:
            note = "overridden (deny wins)" if decision.denied and other.effect == "allow" else "also matched"
            click.echo(f"  {note}: {other.label}")
    if decision.allowed:
        return
    raise click.exceptions.Exit(ExitCode.DENIED if decision.denied else ExitCode.FINDINGS)


@group.command()
@click.argument("policy_file", type=click.Path(dir_okay=False))
def validate(policy_file: str) -> None:
    """Validate a policy file; prints the first problem with its line number (exit 3) or a summary."""
    from kagiya.authz.policy_file import load_policy_file

    policy = load_policy_file(policy_file)
    counts = policy.counts()
    click.echo(f"{policy_file}: ok, {len(policy.rules)} rules ({counts['allow']} allow, {counts['deny']} deny)")
