"""`kagiya secrets encrypt | decrypt | rotate | keygen | introspect`: the file-level verbs.

Imported only when one of these verbs runs (the table in commands.py). The work modules are imported inside each
command, and recipient backends only when a file names them (keys/base.py), so no Flask or cloud SDK loads here.
"""

from __future__ import annotations

import click

from kagiya.errors import UsageError
from kagiya.secrets.cli_common import check_out, key_options, out_options, secrets_settings, unauthenticated_option


@click.command()
@key_options
@click.argument("file", default="-")
@out_options
@click.option("-k", "--key", "keys", multiple=True, metavar="[+|-]URI",
              help="Recipient: URI sets the list, +URI adds, -URI removes (local:NAME, pgp:FPR, gcp:…, aws:…).")
@click.option("--cleartext", is_flag=True, help="data values are given decoded; base64-encode them first.")
@click.option("--rotate", is_flag=True, help="Make a new data key (every value changes).")
@unauthenticated_option
def encrypt(file: str, in_place: bool, output: str | None, keys: tuple[str, ...], cleartext: bool,
            rotate: bool, allow_unauthenticated: bool) -> None:
    """Encrypt the Secrets in FILE (re-encrypting an encrypted file keeps unchanged lines)."""
    from kagiya.secrets import ops

    check_out(in_place, output)
    settings = secrets_settings()
    with ops.file_lock(file if in_place else None):
        src = ops.read_source(file, settings)
        text = ops.encrypt(src, settings, keys, rotate=rotate, cleartext=cleartext,
                           allow_unauthenticated=allow_unauthenticated)
        ops.write_result(text, src, in_place, output)


@click.command()
@key_options
@click.argument("file", default="-")
@out_options
@click.option("--cleartext", is_flag=True, help="Show data values base64-decoded.")
@click.option("--template", default=None, metavar="TEXT",
              help="Print TEXT with Go-template fields filled from the Secret, e.g. 'KEY={{ .data.KEY }}'.")
@click.option("--for-diff", is_flag=True,
              help="For git textconv: print plaintext when possible, else the file unchanged; never fail.")
@unauthenticated_option
def decrypt(file: str, in_place: bool, output: str | None, cleartext: bool, template: str | None, for_diff: bool,
            allow_unauthenticated: bool) -> None:
    """Decrypt FILE (verifying every value and the MAC)."""
    from kagiya.secrets import ops

    check_out(in_place, output)
    if for_diff:
        _for_diff(file, cleartext, allow_unauthenticated)
        return
    settings = secrets_settings()
    src = ops.read_source(file, settings)
    if template is None and "sops" in src.text:
        from kagiya.secrets.commands_sops import decrypt_other_format

        if decrypt_other_format(src, settings, in_place, output):  # a sops file
            return
    text, _ = ops.decrypt(src, settings, cleartext=cleartext, allow_unauthenticated=allow_unauthenticated)
    if template is not None:
        if in_place:
            raise UsageError("--template prints; it cannot rewrite the input (-i)")
        text = _templated(template, text)
    ops.write_result(text, src, in_place, output)


def _templated(template: str, text: str) -> str:
    """`template` once per Secret of the decrypted `text` (kubesec files hold one)."""
    import yaml

    from kagiya.secrets import template as tmpl

    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    secrets = [d for d in docs if d.get("kind") == "Secret"]
    secrets += [i for d in docs if str(d.get("kind", "")).endswith("List") for i in d.get("items") or []
                if isinstance(i, dict) and i.get("kind") == "Secret"]
    return "".join(tmpl.render(template, d) + "\n" for d in secrets)  # kubesec ends it with a newline


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
        settings = secrets_settings()
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


@click.command()
@key_options
@click.argument("file")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE instead of rewriting FILE.")
@unauthenticated_option
def rotate(file: str, output: str | None, allow_unauthenticated: bool) -> None:
    """Re-encrypt FILE under a new data key for the same recipients."""
    from kagiya.secrets import ops

    settings = secrets_settings()
    with ops.file_lock(file if output is None else None):
        src = ops.read_source(file, settings)
        text = ops.encrypt(src, settings, (), rotate=True, allow_unauthenticated=allow_unauthenticated)
        ops.write_result(text, src, output is None, output)


@click.command()
@key_options
@click.argument("name", default="default")
def keygen(name: str) -> None:
    """Create local key NAME (default: default) in the local keyring."""
    from kagiya.secrets.keys import local

    path, _ = local.generate(secrets_settings(), name)
    click.echo(f"created local:{name} in {path}")


@click.command()
@key_options
@click.argument("file", default="-")
@click.option("--verify", is_flag=True,
              help="Try every recipient held here: ok / unusable here / damaged (exit 7 if any is damaged).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts (format, recipients, keys).")
def introspect(file: str, verify: bool, as_json: bool) -> None:
    """Show FILE's format version, recipients and value names without decrypting."""
    from kagiya.secrets import envelope, manifest, ops

    if as_json:
        from kagiya.secrets.commands_sops import introspect_json

        introspect_json(file, verify)
        return

    settings = secrets_settings()
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
