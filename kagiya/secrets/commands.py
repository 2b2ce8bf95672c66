"""`kagiya secrets ...` commands."""

from __future__ import annotations

import click


@click.group(name="secrets")
def group() -> None:
    """secrets commands."""
