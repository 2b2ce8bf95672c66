"""`kagiya secrets kustomize-plugin | krm | kustomize-install`: the SecretDecryptor generator (secrets/krm.py).

Both entry points print only after every file opened and verified, so a failing build shows one error line and
no partial output; the plaintext exists only in this process and on its stdout pipe to kustomize.
"""

from __future__ import annotations

import sys

import click


def _settings() -> object:
    from kagiya.secrets.cli_common import secrets_settings

    return secrets_settings()


def _emit(text: str) -> None:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stdout (captured in tests)
        sys.stdout.write(text)
        return
    stream.write(text.encode("utf-8"))
    stream.flush()


@click.command(name="kustomize-plugin")
@click.argument("config_file")
def kustomize_plugin(config_file: str) -> None:
    """kustomize exec plugin entry: print the decrypted resources of the SecretDecryptor in CONFIG_FILE."""
    from kagiya.secrets import krm

    _emit(krm.run_exec_plugin(config_file, _settings()))


@click.command(name="krm")
def krm_function() -> None:
    """KRM function entry: read a ResourceList on stdin, append the decrypted resources, write it to stdout."""
    from kagiya.secrets import krm, ops

    settings = _settings()
    src = ops.read_source("-", settings)
    _emit(krm.run_function(src.text, settings))


@click.command(name="kustomize-install")
@click.option("--plugin-home", default=None, metavar="DIR",
              help="kustomize plugin home (default: $KUSTOMIZE_PLUGIN_HOME, else $XDG_CONFIG_HOME/kustomize/plugin).")
@click.option("--command", "command", default=None, metavar="CMD",
              help="How the plugin runs kagiya (default: this Python with -m kagiya.cli).")
def kustomize_install(plugin_home: str | None, command: str | None) -> None:
    """Install the SecretDecryptor exec plugin where `kubectl kustomize --enable-alpha-plugins` finds it."""
    import shlex
    from pathlib import Path

    from kagiya.atomic import write_atomic
    from kagiya.secrets import krm

    path = krm.plugin_path(Path(plugin_home).expanduser() if plugin_home else None)
    argv0 = shlex.split(command) if command else [sys.executable, "-m", "kagiya.cli"]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, krm.plugin_script(argv0).encode("utf-8"), 0o755)
    click.echo(f"installed {path}")


COMMANDS = (kustomize_plugin, krm_function, kustomize_install)
