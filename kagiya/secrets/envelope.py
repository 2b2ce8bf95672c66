"""Data keys: make, reuse, rotate; wrap and unwrap them through recipient keys (docs/format.md).

Stability is the point of this module: re-encrypting keeps the ciphertext of every unchanged value (same IV),
keeps the MAC line while it still verifies and keeps wrapped-DEK lines unless the DEK rotates. Adding a recipient
keeps the DEK; removing one (or replacing the set, or `rotate`) makes a new DEK, so every value changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from kagiya.errors import CryptoError, KagiyaError
from kagiya.secrets import kubesec, manifest
from kagiya.secrets.keys import base
from kagiya.secrets.manifest import Manifest, ManifestError, Slot
from kagiya.secrets.record import Record

TYPE_CHECKING = False  # typing costs start-up time; annotations only
if TYPE_CHECKING:
    from typing import Any

SlotKey = tuple[int, str, str]
_ORDER = {"pgp": 0, "gcp": 1, "aws": 1}


def slot_key(slot: Slot) -> SlotKey:
    return (slot.secret, slot.section, slot.key)


class Opened(Record):
    """An encrypted manifest whose DEK was unwrapped and whose values and MAC verified."""

    __slots__ = ("manifest", "trailer", "dek", "used", "plaintexts", "ciphers")

    def __init__(self, manifest: Manifest, trailer: kubesec.Trailer, dek: bytes, used: str,
                 plaintexts: dict[SlotKey, str], ciphers: dict[SlotKey, str]) -> None:
        self.manifest = manifest
        self.trailer = trailer
        self.dek = dek
        self.used = used
        self.plaintexts = plaintexts
        self.ciphers = ciphers

    @property
    def recipients(self) -> list[str]:
        return [r.uri for r in self.trailer.recipients]


def read_trailer(m: Manifest) -> kubesec.Trailer:
    if m.trailer_text is None:
        raise ManifestError("the file is not encrypted (no '# kubesec:v:' line)")
    return kubesec.parse_trailer(m.trailer_text, base.REGISTRY)


def start_first_unwrap(text: str, settings: object) -> Callable[[], bytes] | None:
    """_start_first_unwrap from a file's text, before its body is parsed (ops.decrypt); None on any doubt."""
    cut = kubesec.find_trailer(text)
    if cut < 0:
        return None
    try:
        trailer = kubesec.parse_trailer(text[cut:], base.REGISTRY)
    except KagiyaError:
        return None
    return _start_first_unwrap(trailer, settings)


def drain(first: Callable[[], bytes] | None) -> None:
    """Wait for an unwrap started by start_first_unwrap whose result is no longer wanted."""
    _drain([first] if first else [])


def _start_first_unwrap(trailer: kubesec.Trailer, settings: object) -> Callable[[], bytes] | None:
    """The first recipient's unwrap, started now when it runs in a background process (pgp: gpg), so that
    gpg works while the values are parsed (issue 13). None otherwise, or when it cannot start: unwrap_dek then
    meets the same error and reports it with the other recipients'."""
    if not trailer.recipients or not trailer.recipients[0].uri.startswith("pgp:"):
        return None
    line = trailer.recipients[0]
    try:
        start = getattr(base.open_key(line.uri, settings), "start_unwrap", None)
        return start(line.blob) if start is not None else None
    except KagiyaError:
        return None


def unwrap_dek(trailer: kubesec.Trailer, settings: object,
               first: Callable[[], bytes] | None = None) -> tuple[bytes, str]:
    """The DEK from the first recipient (in file order) that can unwrap it; else one error naming them all.
    `first`: the first recipient's unwrap, already started (_start_first_unwrap)."""
    reasons = []
    upstream = False
    for i, line in enumerate(trailer.recipients):
        try:
            if i == 0 and first is not None:
                dek = first()
            else:
                dek = base.open_key(line.uri, settings).unwrap(line.blob)
        except KagiyaError as exc:
            reasons.append(f"{line.uri}: {exc.message}")
            upstream = upstream or isinstance(exc, base.KeyUpstreamUnavailable)
            continue
        if len(dek) != base.DEK_BYTES:
            reasons.append(f"{line.uri}: unwrapped data key has the wrong length")
            continue
        return dek, line.uri
    names = ", ".join(r.uri for r in trailer.recipients)
    if not trailer.has_own_lines and _holds_local_keys(settings):
        reasons.append("if this file had a local: recipient, a kubesec rewrite (kubesec edit, patch or encrypt) "
                       "dropped its '# kagiya:' line; someone holding one of the recipients above can add it back "
                       "with `kagiya secrets encrypt -i -k +local:NAME FILE`")
    if upstream:  # a retry may well succeed once the upstream answers again: HTTP 503, not 400
        raise base.KeyUpstreamUnavailable(f"no recipient of this file could be used now; it is encrypted for {names} "
                                          f"({'; '.join(reasons)})")
    raise CryptoError(f"none of this file's recipients is usable here; it is encrypted for {names} "
                      f"({'; '.join(reasons)})")


def _holds_local_keys(settings: object) -> bool:
    """Whether this user has a local keyring with keys (so a missing `# kagiya:local:` line may be why)."""
    from kagiya.secrets.keys import local

    try:
        return bool(local.read_keyring(local.keyring_file(settings)))
    except (KagiyaError, OSError, UnicodeDecodeError):
        return False


def open_manifest(m: Manifest, settings: object, *, allow_unauthenticated: bool = False,
                  first: Callable[[], bytes] | None = None) -> Opened:
    """Unwrap the DEK, decrypt every value and verify the MAC; raises CryptoError / FormatError naming the key.

    Versions 1 and 2 carry no MAC, and kagiya never writes them: lowering `v:3` to `v:2` is all it takes to skip
    the MAC, so such files open only with `allow_unauthenticated`. For 3 and 4 the version must match the body
    (4 exactly when there is stringData, as kubesec writes), since the MAC does not cover the version line.
    """
    try:
        trailer = read_trailer(m)
        check_version(m, trailer, allow_unauthenticated)
        if first is None:  # `first`: the first recipient's unwrap, started by the caller (ops.decrypt)
            first = _start_first_unwrap(trailer, settings)
        # format errors first: they need no key and say exactly what is wrong
        try:
            parsed = [kubesec.parse_value(slot.value, slot.label) for slot in m.slots]
        except kubesec.FormatError as exc:
            raise kubesec.FormatError(f"{exc.message} (to add or change values of an encrypted file, use "
                                      "`kagiya secrets patch` or `edit`)") from None
        from kagiya.secrets import aesgcm  # noqa: F401 - loaded while gpg (if any) still works
    except BaseException:
        _drain([first] if first else [])
        raise
    dek, used = unwrap_dek(trailer, settings, first)
    return _open_with(m, trailer, parsed, dek, used)


def _open_with(m: Manifest, trailer: kubesec.Trailer, parsed: list[kubesec.EncryptedValue], dek: bytes,
               used: str) -> Opened:
    from kagiya.secrets.aesgcm import AESGCM  # here, not at the top: `check` reads trailers without it

    aead = AESGCM(dek)
    plaintexts, ciphers = {}, {}
    for slot, value in zip(m.slots, parsed, strict=True):
        doc = m.secrets[slot.secret]
        try:
            plaintexts[slot_key(slot)] = kubesec.decrypt_value(aead, slot.key, value)
        except CryptoError as exc:
            raise CryptoError(f"Secret {doc.identity} {slot.section}: {exc.message}") from None
        ciphers[slot_key(slot)] = slot.value
    if trailer.version >= 3:
        aad = _mac_aad(m, plaintexts, trailer.mac_ids)
        if trailer.mac is None or not kubesec.verify_mac(aead, aad, trailer.mac):
            moved = " (or a value moved between Secrets or sections, or a Secret renamed)" if len(m.secrets) > 1 else ""
            raise CryptoError(f"MAC check failed: a key name, value or recipient line was changed after encryption"
                              f"{moved} (recipients: {', '.join(r.uri for r in trailer.recipients)})")
    return Opened(m, trailer, dek, used, plaintexts, ciphers)


OK, UNUSABLE, DAMAGED = "ok", "unusable here", "damaged"


def verify_recipients(m: Manifest, settings: object) -> list[tuple[str, str, str]]:
    """(uri, OK | UNUSABLE | DAMAGED, reason) for every recipient line, trying each one available here.

    Opening a file stops at the first recipient that works, so a damaged line for another recipient goes
    unnoticed until that recipient is the only one left. A line is OK only if it unwraps to a data key that
    decrypts every value and verifies the MAC (for v1/v2, which have no MAC, every value).
    """
    trailer = read_trailer(m)
    parsed = [kubesec.parse_value(slot.value, slot.label) for slot in m.slots]
    checked: dict[bytes, str] = {}  # data key -> "" when it opens the file, else why not
    out = []
    for line in trailer.recipients:
        try:
            dek = base.open_key(line.uri, settings).unwrap(line.blob)
        except CryptoError as exc:
            out.append((line.uri, DAMAGED, exc.message))
            continue
        except KagiyaError as exc:
            out.append((line.uri, UNUSABLE, exc.message))
            continue
        if len(dek) != base.DEK_BYTES:
            out.append((line.uri, DAMAGED, "unwrapped data key has the wrong length"))
            continue
        if dek not in checked:
            try:
                _open_with(m, trailer, parsed, dek, line.uri)
                checked[dek] = ""
            except CryptoError as exc:
                checked[dek] = f"its data key does not open this file: {exc.message}"
        out.append((line.uri, DAMAGED if checked[dek] else OK, checked[dek]))
    return out


def check_version(m: Manifest, trailer: kubesec.Trailer, allow_unauthenticated: bool) -> None:
    """Refuse an unauthenticated (v1/v2) file unless allowed, and a v3/v4 line that disagrees with the body."""
    if trailer.version < 3:
        if not allow_unauthenticated:
            raise CryptoError(
                f"this file is kubesec v{trailer.version}, which has no MAC: values could have been swapped, moved "
                "or rolled back unnoticed, and kagiya never writes v1/v2 (a lowered version line skips the MAC). "
                "Pass --allow-unauthenticated to read it anyway, then re-encrypt it to v3/v4")
        return
    expected = 4 if m.has_string_data() else 3
    if trailer.version != expected:
        has = "has" if expected == 4 else "has no"
        raise CryptoError(f"trailer says kubesec v{trailer.version} but the file {has} stringData "
                          f"(kubesec writes v{expected}): the version line was changed")


def _mac_aad(m: Manifest, values: dict[SlotKey, str], recipient_ids: Sequence[str]) -> bytes:
    per_secret = []
    for doc in m.secrets:
        data = [(s.key, values[slot_key(s)]) for s in doc.slots if s.section == "data"]
        string_data = [(s.key, values[slot_key(s)]) for s in doc.slots if s.section == "stringData"]
        per_secret.append((data, string_data))
    tags = [f"{doc.ordinal}:{doc.namespace}/{doc.name}" for doc in m.secrets]
    return kubesec.mac_input(per_secret, recipient_ids, tags)


def decrypted_text(opened: Opened) -> str:
    """The manifest with plaintext values and no trailer; layout otherwise unchanged."""
    m = opened.manifest
    reps = [(s, manifest.render_plain(s, opened.plaintexts[slot_key(s)], m.newline)) for s in m.slots]
    return manifest.splice(m.body, reps)


def order_recipients(uris: Sequence[str]) -> list[str]:
    """kubesec's trailer order: pgp first, then gcp/aws, then kagiya-only schemes; stable otherwise."""
    seen: list[str] = []
    for uri in uris:
        norm = base.normalize_uri(uri)
        if norm not in seen:
            seen.append(norm)
    return sorted(seen, key=lambda u: _ORDER.get(u.partition(":")[0], 2))


def seal(
    m: Manifest,
    values: dict[SlotKey, str],
    recipients: Sequence[str],
    settings: object,
    previous: Opened | None = None,
    rotate: bool = False,
    started: Started | None = None,
) -> str:
    """Encrypt `values` into `m`'s slots and append a trailer for `recipients`.

    `started` (start_wraps, for a file with no previous trailer): a DEK and wraps of it already under way; the
    wraps used are taken out of it, and its DEK is used when `previous` is None.

    With `previous` (the same file, opened), the DEK, unchanged values' ciphertexts, recipient lines and the MAC
    are kept where the rules above allow. Raises ManifestError for values kubesec cannot carry, KeyUnavailable
    when a recipient cannot wrap.
    """
    if not recipients:
        raise ManifestError("no recipients: pass -k URI, add a .kagiya.yaml creation rule, or keep the file's trailer")
    wanted = order_recipients(recipients)
    validate_values(m, values)
    old_lines = {base.normalize_uri(r.uri): r for r in previous.trailer.recipients} if previous else {}
    keep_dek = previous is not None and not rotate and set(old_lines) <= set(wanted)
    from kagiya.secrets.aesgcm import AESGCM

    if keep_dek and previous:
        dek = previous.dek
    elif started is not None and previous is None:
        dek = started.dek
    else:
        started, dek = None, AESGCM.generate_key(bit_length=256)
    aead = AESGCM(dek)
    lines: list[kubesec.RecipientLine] = []
    # keys that wrap in a background process (pgp: gpg) start now and are collected after the values are
    # encrypted, so the gpg process and the AES work overlap (issue 13)
    pending: list[tuple[int, Any, Callable[[], bytes]]] = []
    try:
        for uri in wanted:
            if keep_dek and uri in old_lines:  # an old `# kubesec:local:` line moves to kagiya's own spelling
                old = old_lines[uri]
                lines.append(kubesec.RecipientLine(old.scheme, old.id, old.blob,
                                                   old.scheme not in base.KUBESEC_SCHEMES))
                continue
            if started is not None and uri in started.wraps:
                key, finish = started.wraps.pop(uri)
                pending.append((len(lines), key, finish))
                lines.append(kubesec.RecipientLine(key.scheme, key.id, b"", False))  # its blob comes below
                continue
            key = base.open_key(uri, settings)
            start = getattr(key, "start_wrap", None)
            if start is not None:
                pending.append((len(lines), key, start(dek)))
                lines.append(kubesec.RecipientLine(key.scheme, key.id, b"", False))  # its blob comes below
            else:
                lines.append(kubesec.RecipientLine(key.scheme, key.id, key.wrap(dek),
                                                   key.scheme not in base.KUBESEC_SCHEMES))
        reps = []
        old_styles = {slot_key(s): s.style for s in previous.manifest.slots} if previous else {}
        for slot in m.slots:
            k = slot_key(slot)
            value = values[k]
            if keep_dek and previous and previous.plaintexts.get(k) == value and k in previous.ciphers:
                cipher = previous.ciphers[k]
            else:
                cipher = kubesec.encrypt_value(aead, slot.key, value, os.urandom(kubesec.IV_BYTES))
            reps.append((slot, manifest.render_cipher(slot, cipher, old_styles.get(k))))
        while pending:
            at, key, finish = pending.pop(0)
            lines[at] = kubesec.RecipientLine(key.scheme, key.id, finish(), key.scheme not in base.KUBESEC_SCHEMES)
    except BaseException:
        _drain([finish for _, _, finish in pending])
        raise
    aad = _mac_aad(m, values, [r.id for r in lines if not r.own])
    old_mac = previous.trailer.mac if keep_dek and previous else None
    mac = old_mac if old_mac and kubesec.verify_mac(aead, aad, old_mac) else kubesec.make_mac(aead, aad)
    body = manifest.splice(m.body, reps)
    if body and not body.endswith("\n"):
        body += m.newline
    version = 4 if m.has_string_data() else 3
    return body + kubesec.Trailer(version, lines, mac).render(m.newline)


class Started(Record):
    """A fresh DEK and its wraps for some recipients, started before the file is even parsed (start_wraps)."""

    __slots__ = ("dek", "wraps")

    def __init__(self, dek: bytes, wraps: dict[str, tuple[Any, Callable[[], bytes]]]) -> None:
        self.dek = dek
        self.wraps = wraps

    def drain(self) -> None:
        """Wait for the wraps nobody took (an error came first), so no gpg process outlives the command."""
        _drain([finish for _, finish in self.wraps.values()])
        self.wraps.clear()


def start_wraps(uris: Sequence[str], settings: object) -> Started | None:
    """Start wrapping a fresh DEK for the `uris` that wrap in a background process (pgp: gpg), so gpg works
    while the file is parsed and its values encrypted (issue 13). None when there is none, or on any error:
    seal then wraps as usual and reports it."""
    wanted = [uri for uri in order_recipients(uris) if uri.startswith("pgp:")]
    if not wanted:
        return None
    started = Started(os.urandom(base.DEK_BYTES), {})  # what AESGCM.generate_key(bit_length=256) returns
    try:
        for uri in wanted:
            key = base.open_key(uri, settings)
            started.wraps[uri] = (key, key.start_wrap(started.dek))  # type: ignore[attr-defined]
    except KagiyaError:
        started.drain()
        return None
    return started


def _drain(pending: Sequence[Callable[[], object]]) -> None:
    """Wait for background key operations whose result is no longer wanted (an error came first), so no gpg
    process outlives the command."""
    for finish in pending:
        try:
            finish()
        except Exception:  # noqa: BLE001, S110 - the first error is the one reported
            pass


def validate_values(m: Manifest, values: dict[SlotKey, str]) -> None:
    """Refuse values kubesec cannot carry, before any key is touched. Raises ManifestError naming the key."""
    for slot in m.slots:
        value = values[slot_key(slot)]
        if slot.section == "data" and not manifest.valid_base64(value):
            doc = m.secrets[slot.secret]
            raise ManifestError(f"Secret {doc.identity}: data.{slot.key} is not valid base64 "
                                "(use stringData for plain text, or --cleartext)")
        if "\0" in value:
            raise ManifestError(f"{slot.label} contains a NUL character, which kubesec cannot carry")


def plain_values(m: Manifest, cleartext: bool = False) -> dict[SlotKey, str]:
    """Values of a plaintext manifest; with `cleartext`, data values are given decoded and get base64-encoded."""
    import base64

    out = {}
    for slot in m.slots:
        value = slot.value
        if cleartext and slot.section == "data":
            value = base64.b64encode(value.encode("utf-8")).decode("ascii")
        out[slot_key(slot)] = value
    return out
