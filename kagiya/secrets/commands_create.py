"""`kagiya secrets create NAME`: write a new encrypted Secret, as `kubesec create` does.

Like kubesec, an existing output file is never replaced without `--force`; metadata comes from `-n`, `-a`
(annotations), `-l` (labels) and `-m` (other metadata fields). Every value is written so that kubectl's YAML 1.1
reader takes it as the same string (manifest.render_plain / render_key).
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from kagiya.errors import UsageError
from kagiya.secrets.cli_common import key_options, secrets_settings
from kagiya.secrets.commands_edit import apply_changes, parse_assignments, write_result

_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_META_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


def _pairs(items: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.match(_META_KEY, key):
            raise UsageError(f"{what} {item!r}: expected KEY=VALUE with a valid Kubernetes key")
        out.append((key, value))
    return out


def _scalar(value: str, indent: int) -> str:
    from kagiya.secrets import manifest

    return manifest.render_plain(manifest.Slot(0, "", "", "", 0, 0, "", False, indent), value, "\n")


def metadata_lines(name: str, namespace: str | None, annotations: list[tuple[str, str]],
                   labels: list[tuple[str, str]], extra: list[tuple[str, str]]) -> list[str]:
    from kagiya.secrets import manifest

    fields = dict([("name", name)] + ([("namespace", namespace)] if namespace else []))
    for key, value in extra:
        if key in ("annotations", "labels"):
            raise UsageError(f"-m {key}=…: use -a / -l for {key}")
        fields[key] = value
    for label, value in (("name", fields["name"]), ("namespace", fields.get("namespace") or "x")):
        if not re.match(_NAME, value):
            raise UsageError(f"{value!r} is not a valid Kubernetes {label}")
    lines = ["metadata:"] + [f"  {manifest.render_key(k)}: {_scalar(v, 4)}" for k, v in fields.items()]
    for section, pairs in (("annotations", annotations), ("labels", labels)):
        if pairs:
            lines.append(f"  {section}:")
            lines += [f"    {manifest.render_key(k)}: {_scalar(v, 6)}" for k, v in pairs]
    return lines


@click.command()
@key_options
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="metadata.namespace.")
@click.option("-d", "--data", "data", multiple=True, metavar="K=V", help="data K (base64-encoded for you).")
@click.option("-s", "--string-data", "string_data", multiple=True, metavar="K=V", help="stringData K.")
@click.option("-a", "--annotation", "annotations", multiple=True, metavar="K=V", help="metadata.annotations K.")
@click.option("-l", "--label", "labels", multiple=True, metavar="K=V", help="metadata.labels K.")
@click.option("-m", "--metadata", "metadata", multiple=True, metavar="K=V", help="Another metadata field K.")
@click.option("--type", "secret_type", default="Opaque", show_default=True)
@click.option("-k", "--key", "keys", multiple=True, metavar="URI",
              help="Recipient (default: rules, else local:default).")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write to FILE (atomically, 0600) instead of stdout.")
@click.option("-f", "--force", is_flag=True, help="Replace FILE if it exists.")
def create(name: str, namespace: str | None, data: tuple[str, ...], string_data: tuple[str, ...],
           annotations: tuple[str, ...], labels: tuple[str, ...], metadata: tuple[str, ...], secret_type: str,
           keys: tuple[str, ...], output: str | None, force: bool) -> None:
    """Write a new encrypted Secret NAME."""
    from kagiya.secrets import ops

    out_path = Path(output) if output and output != "-" else None
    if out_path is not None and not force and (out_path.exists() or out_path.is_symlink()):
        raise UsageError(f"{output} exists (use --force/-f to replace it)")
    lines = ["apiVersion: v1", "kind: Secret"]
    lines += metadata_lines(name, namespace, _pairs(annotations, "-a"), _pairs(labels, "-l"), _pairs(metadata, "-m"))
    lines.append(f"type: {_scalar(secret_type, 2)}")
    text = "\n".join(lines) + "\n"
    changes = parse_assignments(data, "data") + parse_assignments(string_data, "stringData")
    if any(v is None for _, _, v in changes):
        raise UsageError("create takes K=V values only")
    text = apply_changes(text, changes, None)
    encrypted = ops.encrypt(ops.Source(text, out_path), secrets_settings(), keys)
    write_result(encrypted, None, output or "-")
