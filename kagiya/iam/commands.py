"""`kagiya iam ...` commands."""

from __future__ import annotations

import click


@click.group(name="iam")
def group() -> None:
    """iam commands."""
