"""`kagiya secrets …`: the verb table. Each verb lives in a small module imported only when that verb runs.

This path runs in pre-commit hooks and git textconv, so it imports no Flask or cloud SDK, and `kagiya secrets
--help` imports none of the verb modules (their one-line help is in the table).

Adding a verb: write a click command in its own module under kagiya/secrets/ (use cli_common for the shared
options and settings) and add one line to `VERBS`: `"name": ("kagiya.secrets.module:attribute", "one-line help")`.

Errors are `KagiyaError`s: `kagiya.cli.main` prints them as one line and exits with their code; input files are
only ever replaced atomically after everything succeeded.
"""

from __future__ import annotations

import click

from kagiya.cli import LazyGroup

#: verb -> ("module:attribute", one-line help shown by `kagiya secrets --help` without importing the module).
VERBS: dict[str, tuple[str, str]] = {
    "encrypt": ("kagiya.secrets.commands_crypt:encrypt", "Encrypt the Secrets in FILE."),
    "decrypt": ("kagiya.secrets.commands_crypt:decrypt", "Decrypt FILE (verifying every value and the MAC)."),
    "rotate": ("kagiya.secrets.commands_crypt:rotate", "Re-encrypt FILE under a new data key."),
    "keygen": ("kagiya.secrets.commands_crypt:keygen", "Create a local key in the local keyring."),
    "introspect": ("kagiya.secrets.commands_crypt:introspect", "Show FILE's version, recipients and value names."),
    "check": ("kagiya.secrets.commands_check:check", "Exit 1 if any FILE holds a plaintext Secret value."),
    "edit": ("kagiya.secrets.commands_edit:edit", "Decrypt FILE into $EDITOR and re-encrypt what you save."),
    "patch": ("kagiya.secrets.commands_edit:patch", "Set or remove keys of an (encrypted) Secret."),
    "create": ("kagiya.secrets.commands_create:create", "Write a new encrypted Secret NAME."),
    "convert": ("kagiya.secrets.commands_sops:convert", "Rewrite a sops file in kagiya's format, or back (--to sops)."),
    "updatekeys": ("kagiya.secrets.commands_sops:updatekeys", "Re-apply the .kagiya.yaml rules to FILES' recipients."),
    "exec-env": ("kagiya.secrets.commands_exec:exec_env", "Run CMD with FILE's values as environment variables."),
    "exec-file": ("kagiya.secrets.commands_exec:exec_file", "Run CMD with FILE as a FIFO or unlinked file {}."),
    "kustomize-plugin": ("kagiya.secrets.commands_krm:kustomize_plugin", "kustomize exec plugin: decrypted Secrets."),
    "krm": ("kagiya.secrets.commands_krm:krm_function", "KRM function: ResourceList on stdin, Secrets decrypted."),
    "kustomize-install": ("kagiya.secrets.commands_krm:kustomize_install", "Install the kustomize exec plugin file."),
}


@click.group(name="secrets", cls=LazyGroup, lazy=VERBS)
@click.pass_context
def group(ctx: click.Context) -> None:
    """Encrypt, decrypt and check Kubernetes Secret manifests (kubesec format)."""
    # A short-lived command that builds many small objects: the cyclic GC only costs time here (several ms on a
    # 1,000-key Secret); reference counting still frees everything. Re-enabled when the command ends.
    import gc

    if gc.isenabled():
        gc.disable()
        ctx.call_on_close(gc.enable)
