"""`kagiya iam ...`: HTTP client commands for bindings, requests, policy and explain (docs/iam.md).

They talk to a running kagiya service (`--server`, env `KAGIYA_SERVER`, default `http://HOST:PORT` from the settings)
with a bearer token (`--token`, env `KAGIYA_TOKEN`, or `--token-file`); an `https://` server is verified against
the system CAs, or only against `--ca-file` / `KAGIYA_CA_FILE` (kagiya's own CA). Only the standard library is used
(`urllib.request`): the CLI stays fast and needs no extra runtime dependency. Service errors (Kubernetes `Status`
bodies) become one line on stderr and the matching exit status.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from kagiya.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    KagiyaError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamUnavailable,
    UsageError,
)

ERRORS: dict[int, type[KagiyaError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                        409: Conflict, 413: PayloadTooLarge, 422: Invalid}


class Client:
    """A tiny JSON-over-HTTP client for the kagiya API."""

    def __init__(self, server: str, token: str, timeout: float = 30.0, context: ssl.SSLContext | None = None) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = context

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        params = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        url = self.server + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked in make_client
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpstreamUnavailable(f"cannot reach kagiya at {self.server}: {reason}") from None


def _error_from(exc: urllib.error.HTTPError) -> KagiyaError:
    try:
        body = json.loads(exc.read() or b"{}")
        message = body.get("message") or exc.reason
    except (ValueError, AttributeError):
        message = str(exc.reason)
    cls = ERRORS.get(exc.code, UpstreamUnavailable if exc.code >= 500 else BadRequest)
    return cls(f"{message} (HTTP {exc.code})")


def make_client(ctx: click.Context) -> Client:
    obj = ctx.find_object(dict) or {}
    server = obj.get("server") or os.environ.get("KAGIYA_SERVER", "")
    if not server:
        from kagiya.cli import get_settings

        settings = get_settings(ctx)
        server = f"http://{settings.host}:{settings.port}"
    if not server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, got {server!r}")
    token = obj.get("token") or os.environ.get("KAGIYA_TOKEN", "")
    if obj.get("token_file"):
        try:
            with open(obj["token_file"], encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {obj['token_file']}: {exc.strerror}") from None
    if not token:
        raise UsageError("a bearer token is required: pass --token, --token-file or set KAGIYA_TOKEN")
    ca_file = obj.get("ca_file") or os.environ.get("KAGIYA_CA_FILE", "")
    return Client(server, token, context=tls_context(ca_file) if ca_file else None)


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Verify the server against `ca_file` only (kagiya's own CA), host name included."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise UsageError(f"--ca-file {ca_file}: no such file") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise UsageError(f"--ca-file {ca_file}: not a readable PEM CA bundle ({exc})") from None


def emit(data: Any, output: str, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if output == "json" else text)


output_option = click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Output format.")


@click.group(name="iam")
@click.option("--server", envvar="KAGIYA_SERVER", default="", help="kagiya URL (also KAGIYA_SERVER).")
@click.option("--token", default="", help="Bearer token (also KAGIYA_TOKEN; prefer --token-file).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None, help="File holding the bearer token.")
@click.option("--ca-file", envvar="KAGIYA_CA_FILE", default="",
              help="PEM CA bundle that verifies an https:// server instead of the system CAs (also KAGIYA_CA_FILE).")
@click.pass_context
def group(ctx: click.Context, server: str, token: str, token_file: str | None, ca_file: str) -> None:
    """Pod-to-cloud-identity bindings, requests and policy."""
    ctx.ensure_object(dict)
    ctx.obj.update(server=server, token=token, token_file=token_file, ca_file=ca_file)


def _request_line(r: dict[str, Any]) -> str:
    sel = ",".join(f"{k}={v}" for k, v in ((r.get("podSelector") or {}).get("matchLabels") or {}).items())
    where = f"{r['namespace']}/{r['serviceAccount']}" + (f" [{sel}]" if sel else "")
    head = f"request {r['id']}: {r['state']}  {where} -> {r['cloud']} {r['identity']}"
    return f"{head}  (by {r['requester']}; {r['rule']})"


def _binding_line(b: dict[str, Any]) -> str:
    sel = ",".join(f"{k}={v}" for k, v in ((b.get("podSelector") or {}).get("matchLabels") or {}).items())
    where = f"{b['namespace']}/{b['serviceAccount']}" + (f" [{sel}]" if sel else "")
    expiry = f" expires {b['expiresAt']}" if b.get("expiresAt") else ""
    return f"binding {b['id']}: {b['state']}  {where} -> {b['cloud']} {b['identity']}{expiry}  ({b['source']})"


@group.command()
@click.option("-n", "--namespace", required=True)
@click.option("--service-account", "service_account", required=True)
@click.option("--role", help="AWS IAM role ARN.")
@click.option("--gcp-service-account", "gcp_sa", help="Google service-account email.")
@click.option("--azure-client-id", "azure_client", help="Azure managed identity client id.")
@click.option("--azure-tenant", default="", help="Azure tenant id (default: iam.azure_tenant_id on the server).")
@click.option("--selector", default="", help="Narrow to pods with these labels: key=value[,key=value].")
@click.option("--external-id", default="", help="STS ExternalId for AWS.")
@click.option("--ttl", type=click.IntRange(60), default=None, help="Binding lifetime in seconds (default: no expiry).")
@click.option("--reason", default="", help="Why this workload needs the identity (shown to approvers).")
@output_option
@click.pass_context
def request(ctx: click.Context, namespace: str, service_account: str, role: str | None, gcp_sa: str | None,
            azure_client: str | None, azure_tenant: str, selector: str, external_id: str, ttl: int | None,
            reason: str, output: str) -> None:
    """Ask for a binding; prints approved, pending, or fails with the denying rule."""
    chosen = [(c, v) for c, v in (("aws", role), ("gcp", gcp_sa), ("azure", azure_client)) if v]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --role, --gcp-service-account, --azure-client-id")
    cloud, identity = chosen[0]
    body: dict[str, Any] = {"namespace": namespace, "serviceAccount": service_account, "cloud": cloud,
                            "identity": identity, "reason": reason}
    if selector:
        body["podSelector"] = selector
    if azure_tenant:
        body["tenant"] = azure_tenant
    if external_id:
        body["externalId"] = external_id
    if ttl:
        body["ttlSeconds"] = ttl
    result = make_client(ctx).call("POST", "/v1/iam/binding-requests", body)
    emit(result, output, _request_line(result))


def _decide(ctx: click.Context, request_id: int, verb: str, reason: str, output: str) -> None:
    result = make_client(ctx).call("POST", f"/v1/iam/binding-requests/{request_id}/{verb}", {"reason": reason})
    emit(result, output, _request_line(result) + (f"  binding {result['bindingId']}" if result.get("bindingId")
                                                 else ""))


@group.command()
@click.argument("request_id", type=int)
@click.option("--reason", default="")
@output_option
@click.pass_context
def approve(ctx: click.Context, request_id: int, reason: str, output: str) -> None:
    """Approve a pending binding request."""
    _decide(ctx, request_id, "approve", reason, output)


@group.command()
@click.argument("request_id", type=int)
@click.option("--reason", default="")
@output_option
@click.pass_context
def deny(ctx: click.Context, request_id: int, reason: str, output: str) -> None:
    """Deny a pending binding request."""
    _decide(ctx, request_id, "deny", reason, output)


@group.command()
@click.argument("binding_id", type=int)
@click.option("--reason", default="")
@output_option
@click.pass_context
def revoke(ctx: click.Context, binding_id: int, reason: str, output: str) -> None:
    """Revoke a binding."""
    result = make_client(ctx).call("DELETE", f"/v1/iam/bindings/{binding_id}", query={"reason": reason})
    emit(result, output, _binding_line(result))


@group.command(name="list")
@click.argument("what", type=click.Choice(["bindings", "requests"]), default="bindings")
@click.option("-n", "--namespace", default="")
@click.option("--service-account", "service_account", default="")
@click.option("--state", default="", help="requests: pending|approved|denied; bindings: active|expired|revoked.")
@click.option("--limit", type=click.IntRange(1, 500), default=100)
@output_option
@click.pass_context
def list_(ctx: click.Context, what: str, namespace: str, service_account: str, state: str, limit: int,
          output: str) -> None:
    """List bindings (default) or binding requests, following pages."""
    client = make_client(ctx)
    path = "/v1/iam/bindings" if what == "bindings" else "/v1/iam/binding-requests"
    items: list[dict[str, Any]] = []
    cont = ""
    while True:
        page = client.call("GET", path, query={"namespace": namespace, "serviceAccount": service_account,
                                               "state": state, "limit": limit, "continue": cont})
        items.extend(page["items"])
        cont = page["metadata"].get("continue", "")
        if not cont:
            break
    line = _binding_line if what == "bindings" else _request_line
    emit(items, output, "\n".join(line(i) for i in items) if items else f"no {what}")


@group.command()
@click.argument("namespace")
@click.option("-f", "--file", "file", type=click.File("r"), default=None,
              help="Set the stored policy from this YAML/JSON file ('-' for stdin); without it, print the policy.")
@click.option("--delete", is_flag=True, help="Delete the stored policy (annotation rules remain).")
@output_option
@click.pass_context
def policy(ctx: click.Context, namespace: str, file: Any, delete: bool, output: str) -> None:
    """Show, set (-f) or delete a namespace's policy."""
    client = make_client(ctx)
    path = f"/v1/iam/policies/{urllib.parse.quote(namespace, safe='')}"
    if delete:
        client.call("DELETE", path)
        click.echo(f"policy of namespace {namespace} deleted")
        return
    if file is not None:
        import yaml

        try:
            body = yaml.safe_load(file.read())
        except yaml.YAMLError:
            raise UsageError("policy file is not valid YAML or JSON") from None
        if not isinstance(body, dict):
            raise UsageError("policy file must hold a mapping")
        result = client.call("PUT", path, body)
    else:
        result = client.call("GET", path)
    emit(result, output, _policy_text(result))


def _policy_text(p: dict[str, Any]) -> str:
    lines = [f"namespace {p['namespace']}" + ("" if p.get("stored") else " (no stored policy)")]
    for key in ("autoApprove", "allow"):
        for r in p.get(key, []):
            kind = "glob" if "glob" in r else "regex"
            lines.append(f"  {r['name']}: {r['cloud']} {kind} {r[kind]}")
    if not p.get("allow") and not p.get("autoApprove"):
        lines.append("  no rules: default deny")
    lines.append(f"  approver groups: {', '.join(p.get('approverGroups') or []) or '(platform admins only)'}")
    lines.append(f"  auto-approved requesters: {', '.join(p.get('requesterGroups') or []) or '(the approver groups)'}")
    lines.append(f"  self-approval: {'allowed' if p.get('allowSelfApproval') else 'not allowed'}; "
                 f"max session {p.get('maxSessionSeconds')}s; annotations "
                 f"{'trusted' if p.get('trustAnnotations') else 'not trusted'}")
    lines.extend(f"  problem: {x}" for x in p.get("problems", []))
    return "\n".join(lines)


@group.command()
@click.option("-n", "--namespace", required=True)
@click.option("--pod", default="")
@click.option("--service-account", "service_account", default="")
@click.option("--cloud", type=click.Choice(["aws", "gcp", "azure"]), default=None)
@output_option
@click.pass_context
def explain(ctx: click.Context, namespace: str, pod: str, service_account: str, cloud: str | None,
            output: str) -> None:
    """Which identity a pod (or service account) gets, from which source, and which rule decided."""
    if bool(pod) == bool(service_account):
        raise UsageError("give exactly one of --pod or --service-account")
    result = make_client(ctx).call("GET", "/v1/iam/explain", query={
        "namespace": namespace, "pod": pod, "serviceAccount": service_account, "cloud": cloud})
    from kagiya.iam.explain_text import explain_lines

    lines = explain_lines({"namespace": namespace, "serviceAccount": service_account, **result})
    emit(result, output, "\n".join(lines))
