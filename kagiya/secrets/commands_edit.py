"""`kagiya secrets edit | patch`: change values of an encrypted manifest without a plaintext file on disk.

`edit` decrypts into a private temp file (0600 in a 0700 temp dir), runs `$EDITOR`, and re-encrypts against the
opened original, so unchanged values keep their ciphertext. On any error nothing is written and the edited temp
file is kept (its path is printed), so nothing typed is lost. `patch` sets (`-d k=v`, `-s k=v`, `k=file:PATH`)
or removes (`~k`) keys by editing the plaintext text in place, then re-encrypts the same way. Both rewrite the
file under its lock (atomic.locked), so concurrent patches of one file never lose an update, and an edit whose
file changed meanwhile is refused (the edit is kept).
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import click

from kagiya.errors import KagiyaError, UsageError
from kagiya.secrets.cli_common import key_options, secrets_settings, unauthenticated_option

KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


def _open_existing(path: Path, settings: object, allow_unauthenticated: bool = False
                   ) -> tuple[object, str, list[str]]:
    """(opened or None, plaintext text, recipients) of the file to change."""
    from kagiya.secrets import envelope, manifest, ops

    src = ops.read_source(str(path), settings)
    m = manifest.parse(src.text)
    if not m.encrypted:
        return None, src.text, []
    opened = envelope.open_manifest(m, settings, allow_unauthenticated=allow_unauthenticated)
    return opened, envelope.decrypted_text(opened), opened.recipients


def _reseal(text: str, path: Path, opened: object, recipients: list[str], settings: object) -> str:
    from kagiya.secrets import envelope, manifest, ops

    m = manifest.parse(text)
    if m.encrypted:
        raise UsageError("the edited text still contains a '# kubesec:' trailer; remove it")
    if not m.secrets:
        raise UsageError("the edited text holds no kind: Secret document")
    chosen, is_default = ops.choose_recipients((), recipients, path)
    if is_default:
        ops.ensure_default_key(settings)
    return envelope.seal(m, envelope.plain_values(m), chosen, settings, previous=opened)  # type: ignore[arg-type]


def _editor_session(content: bytes, filename: str) -> tuple[bytes | None, Path]:
    """Write `content` to a private temp file (0600 in a 0700 dir), run $VISUAL/$EDITOR on it and return (the
    saved bytes, or None when nothing changed and the temp dir is gone; the temp file's path)."""
    import shlex
    import shutil
    import subprocess
    import tempfile

    from kagiya.atomic import write_atomic

    tmpdir = tempfile.mkdtemp(prefix="kagiya-edit-")
    tmp = Path(tmpdir) / (filename or "secret.yaml")
    write_atomic(tmp, content, 0o600)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        rc = subprocess.call([*shlex.split(editor), str(tmp)])
    except OSError as exc:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise UsageError(f"cannot run editor {editor!r}: {exc.strerror}") from None
    try:
        edited: bytes | None = tmp.read_bytes()
    except OSError:
        edited = None  # unreadable or gone: keep whatever is there, the user may still need it
    if rc != 0:
        if edited == content:  # nothing typed, so nothing to keep: leave no plaintext copy behind
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise UsageError(f"editor exited with status {rc}; nothing changed, nothing written")
        raise UsageError(f"editor exited with status {rc}; nothing written, your edit is kept at {tmp}")
    if edited is None:
        raise UsageError(f"cannot read the edited file; nothing written, your edit is kept at {tmp}")
    if edited == content:
        shutil.rmtree(tmpdir, ignore_errors=True)
        return None, tmp
    return edited, tmp


def _single_value(plaintext: str, key: str, name: str | None) -> tuple[str, bytes]:
    """(section, bytes to edit) of one key: a data value decoded (binary is fine), a stringData value as UTF-8."""
    from kagiya.secrets import manifest

    docs = [d for d in manifest.parse(plaintext).secrets if name is None or d.name == name]
    if len(docs) != 1:
        raise UsageError(f"pick one Secret with --name (found: {', '.join(d.identity for d in docs) or 'none'})")
    slots = [s for s in docs[0].slots if s.key == key]
    if not slots:
        raise UsageError(f"Secret {docs[0].identity} has no key {key!r} (add it with patch)")
    slot = slots[0]
    if slot.section == "data":
        return "data", base64.b64decode(slot.value)
    return "stringData", slot.value.encode("utf-8")


@click.command()
@key_options
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--only", "only_key", default=None, metavar="KEY",
              help="Edit just this key's value (a data value decoded, so binary values work).")
@click.option("--name", default=None, help="With --only: the Secret to change when FILE holds several.")
@unauthenticated_option
def edit(file: str, only_key: str | None, name: str | None, allow_unauthenticated: bool) -> None:
    """Decrypt FILE into $EDITOR and re-encrypt what you save."""
    import shutil

    from kagiya.atomic import locked, write_atomic

    settings = secrets_settings()
    path = Path(file)
    before = _read_bytes(path)
    opened, plaintext, recipients = _open_existing(path, settings, allow_unauthenticated)
    if only_key is not None:
        section, content = _single_value(plaintext, only_key, name)
    else:
        content = plaintext.encode("utf-8")
    edited, tmp = _editor_session(content, f"{only_key}.value" if only_key else path.name)
    if edited is None:
        click.echo(f"{file}: no changes", err=True)
        return
    try:
        if only_key is not None:
            value = (base64.b64encode(edited).decode("ascii") if section == "data"
                     else _utf8(edited, f"stringData.{only_key}"))
            text = apply_changes(plaintext, [(section, only_key, value)], name)
        else:
            text = _utf8(edited, "the edited file")
        text = _reseal(text, path, opened, recipients, settings)
        with locked(path):
            if _read_bytes(path) != before:
                raise UsageError(f"{file} changed while you were editing (another edit or patch)")
            write_atomic(path, text.encode("utf-8"))
    except KagiyaError as exc:
        raise type(exc)(f"{exc.message}; nothing written, your edit is kept at {tmp}") from None
    except OSError as exc:
        raise UsageError(f"cannot write {file}: {exc.strerror}; your edit is kept at {tmp}") from None
    except Exception as exc:  # noqa: BLE001 - whatever broke, the user must learn where their edit is
        raise UsageError(f"internal error {type(exc).__name__}: {exc}; nothing written, your edit is kept at {tmp}"
                         ) from exc
    shutil.rmtree(tmp.parent, ignore_errors=True)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not UTF-8 text (binary values belong in data, edited with --only)") from None


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def parse_assignments(items: tuple[str, ...], section: str) -> list[tuple[str, str, str | None]]:
    """`k=v`, `k=file:PATH`, `~k` -> (section, key, value or None for removal)."""
    out: list[tuple[str, str, str | None]] = []
    for item in items:
        if item.startswith("~"):
            key, value = item[1:], None
        else:
            key, sep, raw = item.partition("=")
            if not sep:
                raise UsageError(f"{item!r}: expected KEY=VALUE, KEY=file:PATH or ~KEY")
            if raw.startswith("file:"):
                try:
                    content = Path(raw[5:]).read_bytes()
                except OSError as exc:
                    raise UsageError(f"{raw[5:]}: {exc.strerror}") from None
            else:
                content = raw.encode("utf-8")
            if section == "data":
                value = base64.b64encode(content).decode("ascii")
            else:
                try:
                    value = content.decode("utf-8")
                except UnicodeDecodeError:
                    raise UsageError(f"{key}: stringData must be UTF-8 text; use -d for binary") from None
        if not KEY_RE.match(key):
            raise UsageError(f"{key!r} is not a valid Secret key (letters, digits, '-', '_', '.')")
        out.append((section, key, value))
    return out


def apply_changes(text: str, changes: list[tuple[str, str, str | None]], name: str | None) -> str:
    """Set or remove keys of one Secret in plaintext manifest `text`, keeping the rest of the layout."""
    from kagiya.secrets import manifest

    for section, key, value in changes:
        m = manifest.parse(text)
        docs = [d for d in m.secrets if name is None or d.name == name]
        if len(docs) != 1:
            found = ", ".join(d.identity for d in m.secrets) or "none"
            raise UsageError(f"pick one Secret with --name (found: {found})")
        doc = docs[0]
        slots = [s for s in doc.slots if s.section == section]
        current = next((s for s in slots if s.key == key), None)
        if value is None:
            if current is None:
                raise UsageError(f"Secret {doc.identity} has no {section}.{key} to remove")
            text = _remove_line(text, current)
        elif current is not None:
            text = manifest.splice(text, [(current, manifest.render_plain(current, value, m.newline))])
        else:
            text = _insert(text, m, doc, section, slots, key, value)
    return text


def _remove_line(text: str, slot: object) -> str:
    start = text.rfind("\n", 0, slot.key_start) + 1  # type: ignore[attr-defined]
    if text[start:slot.key_start].strip() or slot.flow:  # type: ignore[attr-defined]
        raise UsageError("cannot remove a key from a flow-style mapping; use edit")
    end = text.find("\n", slot.end)  # type: ignore[attr-defined]
    return text[:start] + ("" if end < 0 else text[end + 1:])


def _insert(text: str, m: object, doc: object, section: str, slots: list, key: str, value: str) -> str:
    from kagiya.secrets import manifest

    nl = m.newline  # type: ignore[attr-defined]
    if slots:
        last = max(slots, key=lambda s: s.end)
        if last.flow:
            raise UsageError("cannot add a key to a flow-style mapping; use edit")
        indent = last.indent - 2
        at = text.find("\n", last.end)
        at = len(text) if at < 0 else at + 1
    else:
        if doc.flow:  # type: ignore[attr-defined]
            raise UsageError("cannot add to a flow-style Secret; use edit")
        indent = doc.column + 2  # type: ignore[attr-defined]
        at = doc.insert_at  # type: ignore[attr-defined]
        if re.search(rf"(?m)^{' ' * doc.column}{section}:\s*(\{{\}})?\s*$", text[:at]):  # type: ignore[attr-defined]
            raise UsageError(f"{section} is empty or in flow style; use edit")
    probe = manifest.Slot(0, section, key, "", 0, 0, "", False, indent + 2)
    line = f"{' ' * indent}{manifest.render_key(key)}: {manifest.render_plain(probe, value, nl)}{nl}"
    if not slots:
        line = f"{' ' * (indent - 2)}{section}:{nl}{line}"
    if at > 0 and not text[:at].endswith("\n"):
        line = nl + line
    return text[:at] + line + text[at:]


def write_result(text: str, path: Path | None, output: str | None) -> None:
    from kagiya.secrets import ops

    ops.write_result(text, ops.Source("", path), in_place=output is None and path is not None, output=output)


@click.command()
@key_options
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-d", "--data", "data", multiple=True, metavar="K=V|~K", help="Set data K (base64-encoded for you).")
@click.option("-s", "--string-data", "string_data", multiple=True, metavar="K=V|~K", help="Set stringData K.")
@click.option("--name", default=None, help="The Secret to change when FILE holds several.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE instead of rewriting FILE.")
@unauthenticated_option
def patch(file: str, data: tuple[str, ...], string_data: tuple[str, ...], name: str | None,
          output: str | None, allow_unauthenticated: bool) -> None:
    """Set or remove keys of an (encrypted) Secret; unchanged values stay byte-identical."""
    settings = secrets_settings()
    changes = parse_assignments(data, "data") + parse_assignments(string_data, "stringData")
    if not changes:
        raise UsageError("nothing to do: pass -d K=V, -s K=V or ~K")
    path = Path(file)
    from kagiya.secrets import ops

    # read-modify-write under the file's lock: two patches of one file must not lose one update
    with ops.file_lock(file if output is None else None):
        opened, plaintext, recipients = _open_existing(path, settings, allow_unauthenticated)
        text = apply_changes(plaintext, changes, name)
        write_result(_reseal(text, path, opened, recipients, settings), path, output)
