"""`kagiya secrets …`: encrypt, decrypt, edit, patch, create, introspect, rotate, keygen, check.

This path runs in pre-commit hooks and git textconv, so it imports no Flask or cloud SDK: the work modules
are imported inside each command, and recipient backends only when a file names them (keys/base.py).
Errors are `KagiyaError`s: `kagiya.cli.main` prints them as one line and exits non-zero; input files are
only ever replaced atomically after everything succeeded.
"""

from __future__ import annotations

from typing import Any

import click

from kagiya.cli import get_settings
from kagiya.secrets.commands_edit import unauthenticated_option

FILE_HELP = "Manifest file, or - for stdin."


def _secrets_settings() -> object:
    """The `secrets:` settings section: from the full settings when a config file is in play, else from this
    section's environment variables alone (`config.load_section`), which keeps the pre-commit path fast."""
    import os

    ctx = click.get_current_context()
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" in root.obj or root.obj.get("config_file") or os.environ.get("KAGIYA_CONFIG"):
        return get_settings().section("secrets")
    from kagiya.config import load_section

    return load_section("secrets")


def _out_options(fn: Any) -> Any:
    fn = click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE (atomically, mode 0600).")(fn)
    fn = click.option("-i", "--in-place", is_flag=True, help="Rewrite the input file atomically.")(fn)
    return fn


def _check_out(in_place: bool, output: str | None) -> None:
    from kagiya.errors import UsageError

    if in_place and output:
        raise UsageError("use either -i or -o, not both")


@click.group(name="secrets")
@click.pass_context
def group(ctx: click.Context) -> None:
    """Encrypt, decrypt and check Kubernetes Secret manifests (kubesec format)."""
    # A short-lived command that builds many small objects: the cyclic GC only costs time here (several ms on a
    # 1,000-key Secret); reference counting still frees everything. Re-enabled when the command ends.
    import gc

    if gc.isenabled():
        gc.disable()
        ctx.call_on_close(gc.enable)


@group.command()
@click.argument("file", default="-")
@_out_options
@click.option("-k", "--key", "keys", multiple=True, metavar="[+|-]URI",
              help="Recipient: URI sets the list, +URI adds, -URI removes (local:NAME, pgp:FPR, gcp:…, aws:…).")
@click.option("--cleartext", is_flag=True, help="data values are given decoded; base64-encode them first.")
@click.option("--rotate", is_flag=True, help="Make a new data key (every value changes).")
@unauthenticated_option
def encrypt(file: str, in_place: bool, output: str | None, keys: tuple[str, ...], cleartext: bool,
            rotate: bool, allow_unauthenticated: bool) -> None:
    """Encrypt the Secrets in FILE (re-encrypting an encrypted file keeps unchanged lines)."""
    from kagiya.secrets import ops

    _check_out(in_place, output)
    settings = _secrets_settings()
    src = ops.read_source(file, settings)
    text = ops.encrypt(src, settings, keys, rotate=rotate, cleartext=cleartext,
                       allow_unauthenticated=allow_unauthenticated)
    ops.write_result(text, src, in_place, output)


@group.command()
@click.argument("file", default="-")
@_out_options
@click.option("--cleartext", is_flag=True, help="Show data values base64-decoded.")
@click.option("--for-diff", is_flag=True,
              help="For git textconv: print plaintext when possible, else the file unchanged; never fail.")
@unauthenticated_option
def decrypt(file: str, in_place: bool, output: str | None, cleartext: bool, for_diff: bool,
            allow_unauthenticated: bool) -> None:
    """Decrypt FILE (verifying every value and the MAC)."""
    from kagiya.secrets import ops

    _check_out(in_place, output)
    if for_diff:
        _for_diff(file, cleartext, allow_unauthenticated)
        return
    settings = _secrets_settings()
    src = ops.read_source(file, settings)
    if _sops.decrypt_other_format(src, settings, in_place, output):  # a sops file (commands_sops.py)
        return
    text, _ = ops.decrypt(src, settings, cleartext=cleartext, allow_unauthenticated=allow_unauthenticated)
    ops.write_result(text, src, in_place, output)


def _for_diff(file: str, cleartext: bool, allow_unauthenticated: bool) -> None:
    """git textconv: the plaintext when this machine can open the file, else its bytes exactly as they are (not
    UTF-8, too large, no key, damaged...), with one note on stderr. Never fails: a failing textconv breaks
    `git diff`, `git log -p` and every GUI built on them."""
    import sys
    from pathlib import Path

    from kagiya.secrets import ops

    raw = b""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        settings = _secrets_settings()
        limit = int(getattr(settings, "max_file_bytes", 16 << 20))
        src = ops.Source(ops.decode(raw, file, limit), None if file == "-" else Path(file))
        text, _ = ops.decrypt(src, settings, cleartext=cleartext, allow_unauthenticated=allow_unauthenticated)
        ops.write_result(text, src, False, None)
        return
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the diff must still show something
        message = getattr(exc, "message", None) or getattr(exc, "strerror", None) or type(exc).__name__
        if b"# kubesec:v:" in raw:
            click.echo(f"kagiya: {file}: shown encrypted: {message}", err=True)
        elif not raw:
            click.echo(f"kagiya: {file}: {message}", err=True)
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stdout (captured in tests)
        sys.stdout.write(raw.decode("utf-8", "replace"))
        return
    sys.stdout.flush()
    stream.write(raw)
    stream.flush()


@group.command()
@click.argument("file")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE instead of rewriting FILE.")
@unauthenticated_option
def rotate(file: str, output: str | None, allow_unauthenticated: bool) -> None:
    """Re-encrypt FILE under a new data key for the same recipients."""
    from kagiya.secrets import ops

    settings = _secrets_settings()
    src = ops.read_source(file, settings)
    text = ops.encrypt(src, settings, (), rotate=True, allow_unauthenticated=allow_unauthenticated)
    ops.write_result(text, src, output is None, output)


@group.command()
@click.argument("name", default="default")
def keygen(name: str) -> None:
    """Create local key NAME (default: default) in the local keyring."""
    from kagiya.secrets.keys import local

    path, _ = local.generate(_secrets_settings(), name)
    click.echo(f"created local:{name} in {path}")


@group.command()
@click.argument("file", default="-")
@click.option("--verify", is_flag=True,
              help="Try every recipient held here: ok / unusable here / damaged (exit 7 if any is damaged).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts (format, recipients, keys).")
def introspect(file: str, verify: bool, as_json: bool) -> None:
    """Show FILE's format version, recipients and value names without decrypting."""
    from kagiya.secrets import envelope, manifest, ops

    if as_json:  # commands_sops.py
        _sops.introspect_json(file, verify)
        return

    settings = _secrets_settings()
    src = ops.read_source(file, settings)
    m = manifest.parse(src.text)
    results = {}
    if not m.encrypted:
        click.echo(f"{src.name}: not encrypted")
    else:
        trailer = envelope.read_trailer(m)
        click.echo(f"{src.name}: kubesec v{trailer.version}, MAC {'present' if trailer.mac else 'absent'}")
        if verify:
            results = {uri: (status, reason) for uri, status, reason in envelope.verify_recipients(m, settings)}
        click.echo("recipients:")
        for r in trailer.recipients:
            status, reason = results.get(r.uri, ("", ""))
            click.echo(f"  {r.uri}" + (f": {status}" if status else "") + (f" ({reason})" if reason else ""))
    for doc in m.secrets:
        click.echo(f"Secret {doc.identity}: {' '.join(s.label for s in doc.slots) or '(no values)'}")
    if any(status == envelope.DAMAGED for status, _ in results.values()):
        from kagiya.errors import ExitCode

        click.echo(f"kagiya: {src.name}: a wrapped data key is damaged; while another recipient still opens the "
                   f"file, `kagiya secrets rotate {src.name}` wraps a new data key for every recipient", err=True)
        raise click.exceptions.Exit(int(ExitCode.CRYPTO))


@group.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--fix", is_flag=True, help="Encrypt offending files in place (recipients as for encrypt).")
def check(files: tuple[str, ...], fix: bool) -> None:
    """Exit 1 if any FILE holds a plaintext Secret value (for pre-commit)."""
    from kagiya.secrets import checker

    findings = checker.run(files, fix, _secrets_settings)
    for line in findings:
        click.echo(line, err=True)
    if findings:
        raise click.exceptions.Exit(1)


from kagiya.secrets import commands_edit as _edit  # noqa: E402  (registers edit, patch, create)

_edit.register(group)

from kagiya.secrets import commands_sops as _sops  # noqa: E402  (convert, updatekeys, exec-*, kustomize plugin)

_sops.register(group)
