"""`kagiya agent`: the node-local metadata agent."""

from __future__ import annotations

import click


@click.command(name="agent")
def command() -> None:
    """Node-local metadata agent that forwards pod evidence to kagiya."""
