"""`kagiya authz ...` commands."""

from __future__ import annotations

import click


@click.group(name="authz")
def group() -> None:
    """Check and explain the SubjectAccessReview policy."""
