"""`kagiya secrets convert` (sops <-> kagiya), `updatekeys`, sops files in `decrypt`, `introspect --json`.

Listed in the `secrets` verb table (commands.py); the hooks `decrypt_other_format` and `introspect_json` are
called from commands_crypt.py and fast.py so the kubesec commands keep one implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kagiya.errors import UsageError


def _settings() -> object:
    from kagiya.secrets.cli_common import secrets_settings

    return secrets_settings()


def decrypt_other_format(src: Any, settings: object, in_place: bool, output: str | None) -> bool:
    """`kagiya secrets decrypt` of a sops file: print (or write) its verified plaintext; False for kubesec files."""
    from kagiya.secrets import formats, ops

    if formats.detect(src.text) != formats.SOPS:
        return False
    plain = formats.decrypt(src.text, settings, path=src.path)
    ops.write_result(plain.text, src, in_place, output)
    return True


@click.command()
@click.argument("file")
@click.option("--from", "source", type=click.Choice(["sops", "kubesec"]), default=None,
              help="Format of FILE (default: sops, or kubesec with --to sops).")
@click.option("--to", "target", type=click.Choice(["kubesec", "sops"]), default=None,
              help="Format to write (default: the other one).")
@click.option("-k", "--key", "keys", multiple=True, metavar="URI",
              help="Recipients of the result (default: the file's own age/pgp keys).")
@click.option("-i", "--in-place", is_flag=True, help="Rewrite FILE atomically.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE (atomically, mode 0600).")
def convert(file: str, source: str | None, target: str | None, keys: tuple[str, ...], in_place: bool,
            output: str | None) -> None:
    """Rewrite a sops FILE in kagiya's (kubesec) format keeping comments and key order, or (--to sops) a kagiya
    FILE as a sops file the sops binary opens.

    FILE is opened and verified first; its plaintext is then encrypted for the same age/pgp recipients (or -k).
    Nothing is written unless every step succeeded.
    """
    from kagiya.secrets import formats, ops

    if in_place and output:
        raise UsageError("use either -i or -o, not both")
    source = source or ("kubesec" if target == "sops" else "sops")
    target = target or ("sops" if source == "kubesec" else "kubesec")
    if source == target:
        raise UsageError(f"--from and --to are both {source}")
    settings = _settings()
    src = ops.read_source(file, settings)
    if formats.detect(src.text) != source:
        raise UsageError(f"{src.name} is not a {source} file")
    plain = formats.decrypt(src.text, settings, path=src.path)
    if target == "sops":
        from kagiya.secrets.formats import sops_write

        recipients = list(keys) or [u for u in plain.recipients if u.startswith(("age:", "pgp:"))]
        text = sops_write.encrypt_yaml(plain.text, recipients, settings)
    else:
        recipients = list(keys) or plain.recipients  # sops' age/pgp keys are kagiya's age:/pgp: URIs as they are
        text = ops.encrypt(ops.Source(plain.text, src.path), settings, recipients)
    ops.write_result(text, src, in_place, output)


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Only say what would change; exit 1 if anything would.")
def updatekeys(files: tuple[str, ...], dry_run: bool) -> None:
    """Re-apply the .kagiya.yaml creation rules to each FILE's recipients.

    Re-encrypting keeps a file's own recipients; after a rule changes (a key added or retired), this makes each
    file match it: an added key gets the same data key, a removed one forces a new data key (every value changes).
    """
    from kagiya.secrets import envelope, formats, manifest, ops, rules

    settings = _settings()
    pending = False
    for file in files:
        src = ops.read_source(file, settings)
        if formats.detect(src.text) == formats.SOPS:
            raise UsageError(f"{file}: a sops file; convert it first (kagiya secrets convert --from sops)")
        m = manifest.parse(src.text)
        if not m.encrypted:
            raise UsageError(f"{file}: not encrypted")
        current = [r.uri for r in envelope.read_trailer(m).recipients]
        wanted, config = rules.recipients_for(Path(file))
        if not wanted:
            raise UsageError(f"{file}: no .kagiya.yaml creation rule matches it"
                             + (f" in {config}" if config else " (no .kagiya.yaml found)"))
        wanted = envelope.order_recipients(wanted)
        if wanted == envelope.order_recipients(current):
            click.echo(f"{file}: recipients already match {config}", err=True)
            continue
        added = [u for u in wanted if u not in current]
        removed = [u for u in current if u not in wanted]
        click.echo(f"{file}: " + ", ".join([f"+{u}" for u in added] + [f"-{u}" for u in removed]), err=True)
        pending = True
        if not dry_run:
            text = ops.encrypt(src, settings, wanted)
            ops.write_result(text, src, True, None)
    if dry_run and pending:
        raise click.exceptions.Exit(1)


def introspect_json(file: str, verify: bool) -> None:
    """`introspect --json`: one JSON object for scripts, in the spirit of `sops filestatus` (no decryption
    unless --verify; never a value)."""
    import json

    from kagiya.secrets import envelope, formats, manifest, ops

    settings = _settings()
    src = ops.read_source(file, settings)
    out: dict[str, Any] = {"file": src.name}
    if formats.detect(src.text) == formats.SOPS:
        import yaml

        from kagiya.secrets.formats import sops

        data = json.loads(src.text) if src.text.lstrip().startswith("{") else next(
            (d for d in yaml.safe_load_all(src.text) if isinstance(d, dict) and "sops" in d), {})
        meta = sops.parse_metadata(data.get("sops"))
        out.update(format="sops", encrypted=True, version=str(meta.raw.get("version", "")), mac=True,
                   recipients=[{"uri": u} for u in meta.recipients])
        if verify:
            try:
                formats.decrypt(src.text, settings)
                out["verified"] = True
            except Exception as exc:  # noqa: BLE001 - reported as data, the command still answers
                out.update(verified=False, error=getattr(exc, "message", type(exc).__name__))
        click.echo(json.dumps(out, indent=2))
        return
    m = manifest.parse(src.text)
    out.update(format="kubesec", encrypted=m.encrypted)
    results: dict[str, tuple[str, str]] = {}
    if m.encrypted:
        trailer = envelope.read_trailer(m)
        if verify:
            results = {uri: (status, reason) for uri, status, reason in envelope.verify_recipients(m, settings)}
        out.update(version=trailer.version, mac=trailer.mac is not None, recipients=[])
        for r in trailer.recipients:
            entry: dict[str, Any] = {"uri": r.uri}
            if r.uri in results:
                entry.update(status=results[r.uri][0], reason=results[r.uri][1])
            out["recipients"].append(entry)
    out["secrets"] = [{"namespace": d.namespace, "name": d.name, "keys": [s.label for s in d.slots]}
                      for d in m.secrets]
    click.echo(json.dumps(out, indent=2))
    if any(status == envelope.DAMAGED for status, _ in results.values()):
        from kagiya.errors import ExitCode

        raise click.exceptions.Exit(int(ExitCode.CRYPTO))
