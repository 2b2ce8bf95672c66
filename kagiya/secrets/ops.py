"""File-level operations behind `kagiya secrets …` (and the HTTP API): read, pick recipients, encrypt, decrypt.

Kept apart from the click wiring so the HTTP views and the CLI run the same code. Heavy backends load only
when a file names them (keys/base.py). Format: docs/format.md; recipient choice: docs/secrets.md.
"""

from __future__ import annotations

import os
import sys

from kagiya.errors import PayloadTooLarge, UsageError
from kagiya.secrets import envelope, manifest
from kagiya.secrets.manifest import ManifestError
from kagiya.secrets.record import Record

TYPE_CHECKING = False  # contextlib and kagiya.atomic load only when a file is written (start-up, issue 13)
if TYPE_CHECKING:
    import contextlib

DEFAULT_RECIPIENT = "local:default"


class Source(Record):
    __slots__ = ("text", "path")

    def __init__(self, text: str, path: str | os.PathLike[str] | None) -> None:
        self.text = text
        self.path = path  # None for stdin

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<stdin>"


def decode(data: bytes, name: str, limit: int) -> str:
    if len(data) > limit:
        raise PayloadTooLarge(f"{name} is larger than {limit} bytes (secrets.max_file_bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{name} is not UTF-8 text") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_source(arg: str, settings: object) -> Source:
    limit = int(getattr(settings, "max_file_bytes", 16 << 20))
    if arg == "-":
        return Source(decode(sys.stdin.buffer.read(limit + 1), "<stdin>", limit), None)
    try:
        with open(arg, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{arg}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{arg}: {exc.strerror}") from None
    return Source(decode(data, arg, limit), arg)


def file_lock(arg: str | None) -> contextlib.AbstractContextManager[None]:
    """The lock held around a read-modify-write of file `arg` (none for stdin, or when not rewriting in place)."""
    if arg is None or arg == "-":
        return _NoLock()
    from kagiya.atomic import locked

    return locked(arg)


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def write_result(text: str, src: Source, in_place: bool, output: str | None) -> None:
    """In place or to -o atomically (0600); else to stdout, bytes as they are (CRLF kept)."""
    data = text.encode("utf-8")
    target = src.path if in_place else (output if output and output != "-" else None)
    if in_place and src.path is None:
        raise UsageError("-i needs a file, not stdin")
    if target is not None:
        from kagiya.atomic import write_atomic

        try:
            write_atomic(target, data)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    else:
        stream = getattr(sys.stdout, "buffer", None)
        if stream is None:  # a text-only stdout (captured in tests)
            sys.stdout.write(text)
            return
        sys.stdout.flush()
        stream.write(data)
        stream.flush()


def parse_key_changes(keys: tuple[str, ...] | list[str]) -> tuple[list[str], list[str], list[str]]:
    """`-k URI` (set), `-k +URI` (add), `-k -URI` (remove)."""
    explicit, add, remove = [], [], []
    for k in keys:
        for item in (p.strip() for p in k.split(",")):
            if not item:
                continue
            if item.startswith("+"):
                add.append(item[1:])
            elif item.startswith("-"):
                remove.append(item[1:])
            else:
                explicit.append(item)
    return explicit, add, remove


def choose_recipients(
    keys: tuple[str, ...] | list[str], existing: list[str], path: str | os.PathLike[str] | None
) -> tuple[list[str], bool]:
    """The recipient set and whether it is the implicit default (`local:default`)."""
    explicit, add, remove = parse_key_changes(keys)
    is_default = False
    if explicit:
        chosen = explicit
    elif existing:
        chosen = list(existing)
    else:
        from pathlib import Path

        from kagiya.secrets import rules  # only when neither -k nor the file names recipients

        chosen, _ = rules.recipients_for(None if path is None else Path(path))
        if not chosen and not add:
            chosen, is_default = [DEFAULT_RECIPIENT], True
    chosen = envelope.order_recipients(chosen + add)
    for uri in envelope.order_recipients(remove) if remove else []:
        if uri not in chosen:
            raise UsageError(f"cannot remove {uri}: not a recipient (recipients: {', '.join(chosen) or 'none'})")
        chosen.remove(uri)
    if not chosen:
        raise UsageError("removing those keys would leave the file with no recipient")
    return chosen, is_default


def ensure_default_key(settings: object) -> None:
    """Zero setup: generate `local:default` on first use, saying so on stderr."""
    from kagiya.secrets.keys import local

    path, created = local.generate(settings, "default", exist_ok=True)
    if created:
        print(f"kagiya: created local key 'default' in {path}; back it up, files encrypted only for it "
              "cannot be opened without it", file=sys.stderr)


def encrypt(src: Source, settings: object, keys: tuple[str, ...] | list[str] = (), *, rotate: bool = False,
            cleartext: bool = False, default_recipients: list[str] | None = None,
            allow_unauthenticated: bool = False) -> str:
    """Encrypt a plaintext manifest, or re-encrypt an encrypted one (keeping what is unchanged).

    Re-sealing a v1/v2 file would bless whatever it holds with a fresh MAC: it needs `allow_unauthenticated`.

    The plainest files are read by scan.py instead of PyYAML (issue 13: start-up and parsing are most of the
    time). A value the scanner missed would stay plaintext, so its result is only kept when the output passes
    `_sealed_as_scanned` (seal_check.py); otherwise the file is encrypted again through PyYAML.
    """
    started = _start_wraps(src, keys, settings)

    def run(m: manifest.Manifest, started: envelope.Started | None) -> str:
        return _encrypt(m, src, settings, keys, rotate=rotate, cleartext=cleartext,
                        default_recipients=default_recipients, allow_unauthenticated=allow_unauthenticated,
                        started=started)

    try:
        m = manifest.parse(src.text, quick=True)
        if m.scanned and not m.secrets:
            m = manifest.parse(src.text)  # "no Secret here" is PyYAML's call: it also names what it could not read
        text = run(m, started)
        if m.scanned and not _sealed_as_scanned(text, m):
            text = run(manifest.parse(src.text), None)
    finally:
        if started is not None:
            started.drain()
    return text


def _start_wraps(src: Source, keys: tuple[str, ...] | list[str], settings: object) -> envelope.Started | None:
    """For a plaintext file with recipients given by -k alone, start wrapping the data key (gpg) before the
    file is parsed: these are exactly the recipients and the fresh DEK that sealing it will use."""
    from kagiya.secrets import kubesec

    explicit, add, remove = parse_key_changes(keys)
    if not explicit or add or remove or kubesec.find_trailer(src.text) >= 0:
        return None
    return envelope.start_wraps(explicit, settings)


def _sealed_as_scanned(text: str, m: manifest.Manifest) -> bool:
    """The safety net of the scanned path: seal_check, which shares no code with scan.py, finds exactly as many
    data/stringData values in the output as were encrypted, and only ciphertext. Any doubt returns False."""
    from kagiya.secrets import kubesec, seal_check

    cut = kubesec.find_trailer(text)
    return cut >= 0 and seal_check.only_ciphertext(text[:cut], len(m.slots))


def _encrypt(m: manifest.Manifest, src: Source, settings: object, keys: tuple[str, ...] | list[str], *,
             rotate: bool, cleartext: bool, default_recipients: list[str] | None,
             allow_unauthenticated: bool, started: envelope.Started | None = None) -> str:
    if not m.secrets:
        raise ManifestError(f"{src.name}: no kind: Secret document found, nothing to encrypt")
    previous = (envelope.open_manifest(m, settings, allow_unauthenticated=allow_unauthenticated)
                if m.encrypted else None)
    existing = previous.recipients if previous else list(default_recipients or [])
    recipients, is_default = choose_recipients(keys, existing, src.path)
    values = previous.plaintexts if previous else envelope.plain_values(m, cleartext)
    envelope.validate_values(m, values)
    if is_default:
        ensure_default_key(settings)
    return envelope.seal(m, values, recipients, settings, previous=previous, rotate=rotate, started=started)


def decrypt(src: Source, settings: object, *, cleartext: bool = False,
            allow_unauthenticated: bool = False) -> tuple[str, envelope.Opened]:
    first = envelope.start_first_unwrap(src.text, settings)  # gpg (pgp) works while the body is parsed
    try:
        m = manifest.parse(src.text, quick=True)  # a wrong quick answer fails the MAC (scan.py)
    except BaseException:
        envelope.drain(first)
        raise
    opened = envelope.open_manifest(m, settings, allow_unauthenticated=allow_unauthenticated, first=first)
    if cleartext:
        opened.plaintexts = _decoded(opened)
    return envelope.decrypted_text(opened), opened


def _decoded(opened: envelope.Opened) -> dict[envelope.SlotKey, str]:
    import base64

    out = dict(opened.plaintexts)
    for key, value in opened.plaintexts.items():
        if key[1] == "data":
            try:
                out[key] = base64.b64decode(value).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise ManifestError(f"data.{key[2]} holds binary data; it cannot be shown as --cleartext") from None
    return out
