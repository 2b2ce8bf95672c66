"""`kagiya login`: kubectl exec credential plugin."""

from __future__ import annotations

import click


@click.group(name="login")
def command() -> None:
    """kubectl credential plugin: print an ExecCredential."""
