"""`kagiya authn ...` commands."""

from __future__ import annotations

import click


@click.group(name="authn")
def group() -> None:
    """authn commands."""
