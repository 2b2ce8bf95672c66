"""`kagiya secrets check FILES…`: the pre-commit guard's command line (the work is in checker.py)."""

from __future__ import annotations

import click

from kagiya.secrets.cli_common import key_options, secrets_settings


@click.command()
@key_options
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--fix", is_flag=True, help="Encrypt offending files in place (recipients as for encrypt).")
def check(files: tuple[str, ...], fix: bool) -> None:
    """Exit 1 if any FILE holds a plaintext Secret value (for pre-commit)."""
    from kagiya.secrets import checker

    findings = checker.run(files, fix, secrets_settings, lambda line: click.echo(line, err=True))
    for line in findings:
        click.echo(line, err=True)
    if findings:
        raise click.exceptions.Exit(1)
