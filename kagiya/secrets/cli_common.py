"""Pieces every `kagiya secrets` verb module shares: settings, common options, output checks.

Verb modules (commands.py, commands_edit.py, and any new one) import this module and never each other, so a
verb can be loaded alone by the lazy command table in commands.py.
"""

from __future__ import annotations

from typing import Any

import click

FILE_HELP = "Manifest file, or - for stdin."


def secrets_settings() -> Any:
    """The `secrets:` settings section: from the full settings when a config file is in play, else from this
    section's environment variables alone (`config.load_section`), which keeps the pre-commit path fast.
    `--keyring` / `--gnupg-home` given on the command line win over both."""
    import dataclasses
    import os

    ctx = click.get_current_context()
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" in root.obj or root.obj.get("config_file") or os.environ.get("KAGIYA_CONFIG"):
        from kagiya.cli import get_settings

        section = get_settings().section("secrets")
    else:
        from kagiya.config import load_section

        section = load_section("secrets")
    overrides = root.obj.get("secrets_overrides") or {}
    return dataclasses.replace(section, **overrides) if overrides else section


def _store_override(field: str) -> Any:
    def callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            root = ctx.find_root()
            root.ensure_object(dict)
            root.obj.setdefault("secrets_overrides", {})[field] = value
        return value

    return callback


def key_options(fn: Any) -> Any:
    """`--keyring FILE` (the local keyring) and `--gnupg-home DIR` (the GnuPG home for pgp: keys)."""
    fn = click.option("--gnupg-home", default=None, metavar="DIR", expose_value=False, is_eager=True,
                      callback=_store_override("gnupg_home"),
                      help="GnuPG home for pgp: recipients (default: $GNUPGHOME or ~/.gnupg).")(fn)
    fn = click.option("--keyring", default=None, metavar="FILE", expose_value=False, is_eager=True,
                      callback=_store_override("keyring"),
                      help="Local keyring file for local: recipients (default: secrets.keyring / KAGIYA_KEYRING).")(fn)
    return fn


def unauthenticated_option(fn: Any) -> Any:
    """`--allow-unauthenticated`: read (or re-seal) a kubesec v1/v2 file, which carries no MAC."""
    return click.option("--allow-unauthenticated", "allow_unauthenticated", is_flag=True,
                        help="Accept a kubesec v1/v2 file, which has no MAC (its values are not authenticated).")(fn)


def out_options(fn: Any) -> Any:
    fn = click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE (atomically, mode 0600).")(fn)
    fn = click.option("-i", "--in-place", is_flag=True, help="Rewrite the input file atomically.")(fn)
    return fn


def check_out(in_place: bool, output: str | None) -> None:
    from kagiya.errors import UsageError

    if in_place and output:
        raise UsageError("use either -i or -o, not both")
