"""`kagiya authn ...`: mutual-TLS certificates for the TokenReview webhook and the apiserver's kubeconfig.

Heavy imports (cryptography, yaml) happen inside the commands, so `kagiya --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from kagiya.cli import get_settings


def _pki_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    settings = get_settings()
    configured = settings.section("authn").pki_dir
    return Path(configured) if configured else Path(settings.data_dir) / "pki"


pki_option = click.option("--pki-dir", default=None, type=click.Path(file_okay=False),
                          help="Certificate directory (default: authn.pki_dir, else <data_dir>/pki).")
force_option = click.option("--force", is_flag=True, help="Replace existing files.")


@click.group(name="authn")
def group() -> None:
    """Webhook certificates, configs and provider checks."""


@group.group(name="init")
def init() -> None:
    """Create the CA, the server certificate and client certificates (keys are written 0600)."""


@init.command(name="ca")
@pki_option
@force_option
@click.option("--common-name", default="kagiya-ca", show_default=True)
def init_ca(pki_dir: str | None, force: bool, common_name: str) -> None:
    """Create the certificate authority."""
    from kagiya.tls import pki

    out = pki.init_ca(_pki_dir(pki_dir), common_name=common_name, force=force)
    click.echo(f"wrote {out.cert} and {out.key}")


@init.command(name="server")
@pki_option
@force_option
@click.option("--ip", "ips", multiple=True, help="IP address SAN (repeatable).")
@click.option("--dns", "dns", multiple=True, help="DNS name SAN (repeatable).")
def init_server(pki_dir: str | None, force: bool, ips: tuple[str, ...], dns: tuple[str, ...]) -> None:
    """Create kagiya's serving certificate, signed by the CA."""
    from kagiya.tls import pki

    out = pki.init_server(_pki_dir(pki_dir), ips=ips, dns=dns, force=force)
    click.echo(f"wrote {out.cert} and {out.key}")


@init.command(name="client")
@pki_option
@force_option
@click.argument("name")
@click.option("--provider", required=True,
              help="Provider type, written as the certificate's O= (Guard's routing); `agent` for a node agent; "
                   "`default`: the default chain.")
@click.option("--org", default="", help="Provider name (org, domain, tenant...), written as the CN= "
              "(required, except for --provider agent: default NAME).")
def init_client(pki_dir: str | None, force: bool, name: str, provider: str, org: str) -> None:
    """Create a client certificate: for a kube-apiserver (O=<provider>, CN=<org>), or for the node agent
    (`--provider agent`: O=agent, CN=<org or NAME>; the TokenReview webhook refuses it)."""
    from kagiya.authn.providers import REGISTRY
    from kagiya.authn.routing import AGENT_ORGANIZATION
    from kagiya.errors import UsageError
    from kagiya.tls import pki

    if provider == AGENT_ORGANIZATION:
        org = org or name
    elif provider not in REGISTRY and provider != pki.DEFAULT_CHAIN:
        raise UsageError(f"--provider must be one of {', '.join([*REGISTRY, AGENT_ORGANIZATION, pki.DEFAULT_CHAIN])}")
    out = pki.init_client(_pki_dir(pki_dir), name, provider=provider, org=org, force=force)
    click.echo(f"wrote {out.cert} and {out.key}")


@group.command(name="webhook-config")
@pki_option
@click.option("--server", required=True, help="Webhook URL as the apiserver reaches it, e.g. https://10.0.0.5:8443/authn/tokenreviews.")
@click.option("--client", "client", required=True, help="Client certificate name given to `init client`.")
@click.option("--embed/--no-embed", default=True, show_default=True, help="Embed certificates or refer to files.")
def webhook_config(pki_dir: str | None, server: str, client: str, embed: bool) -> None:
    """Print the kubeconfig for kube-apiserver's --authentication-token-webhook-config-file."""
    import yaml

    from kagiya.tls import pki

    config = pki.webhook_kubeconfig(_pki_dir(pki_dir), server=server, client=client, embed=embed)
    click.echo(yaml.safe_dump(config, sort_keys=False), nl=False)


@group.command(name="check")
@click.option("--provider", "provider", default=None, metavar="TYPE/NAME",
              help="Ask this configured provider (the token file is still tried first); default: the default chain.")
@click.option("--audience", "audiences", multiple=True, help="Requested audience (repeatable), as in spec.audiences.")
def check(provider: str | None, audiences: tuple[str, ...]) -> None:
    """Review a token read from stdin with the configured providers, as the webhook would.

    Prints the user (username, uid, groups) and exits 0, or prints the rejection and exits 1; an unreachable
    identity provider exits 6. The token is read from stdin so it never appears in shell history or `ps`.
    """
    import sys

    from kagiya.authn import routing
    from kagiya.authn.providers.base import User
    from kagiya.errors import ExitCode, UsageError

    token = sys.stdin.readline().strip()
    if not token:
        raise UsageError("give the token on stdin, e.g. `kagiya authn check < token.txt`")
    authn = get_settings().section("authn")
    authenticator = routing.Authenticator(routing.ProviderSet.from_settings(authn), authn)
    try:
        if provider:
            ptype, sep, name = provider.partition("/")
            if not sep:
                raise UsageError("--provider takes TYPE/NAME, e.g. oidc/corp")
            route = authenticator.providers.path_route(ptype, name)
        else:
            route = authenticator.providers.default_route()
        decision = authenticator.review(route, token, audiences, source="cli").decision
    finally:
        authenticator.close(wait=False)
    result = decision.result
    if isinstance(result, User):
        click.echo(f"authenticated by {decision.provider}: username={result.username} uid={result.uid} "
                   f"groups={','.join(result.groups)}")
        return
    click.echo(f"rejected by {decision.provider}: {result.reason}")
    raise click.exceptions.Exit(int(ExitCode.FINDINGS))
