"""`age:age1…`: the data key wrapped for an age X25519 recipient (age-encryption.org/v1), through pyrage.

The blob is a binary age file whose payload is the 32-byte data key, so `age -d -i keys.txt` opens it and a key
made by `age-keygen` opens what we wrap; sops stores the same payload, ASCII-armoured (formats/sops.py).
Wrapping needs only the public recipient. Unwrapping needs an identity (`AGE-SECRET-KEY-1…`), looked up as sops
does, first match wins per identity but all sources are read:

1. `secrets.age_key_file` / `KAGIYA_AGE_KEY_FILE`
2. `SOPS_AGE_KEY_FILE`, and `SOPS_AGE_KEY` (identities inline, as sops reads them)
3. `${XDG_CONFIG_HOME:-~/.config}/sops/age/keys.txt` (sops' and age-keygen users' usual place)

A key file readable by group or others is refused, like the local keyring. Holding no identity for the recipient
is `KeyUnavailable`; holding it while the blob does not open is `CryptoError` (damaged, or made for another key).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import DEK_BYTES, KeyUnavailable

#: An age file of one X25519 stanza around 32 bytes is ~200 bytes; anything far larger is not ours.
MAX_BLOB = 64 * 1024


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError:  # pragma: no cover - pyrage is a pinned runtime dependency
        raise KeyUnavailable("age keys need the pyrage package (pip install 'kagiya[age]')") from None
    return pyrage


def key_files(settings: object) -> list[Path]:
    """The identity files to read, in order (missing ones are skipped when read)."""
    paths = []
    for configured in (getattr(settings, "age_key_file", "") or os.environ.get("KAGIYA_AGE_KEY_FILE", ""),
                       os.environ.get("SOPS_AGE_KEY_FILE", "")):
        if configured:
            paths.append(Path(configured).expanduser())
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(base) / "sops" / "age" / "keys.txt")
    return paths


def _parse_identities(text: str, where: str) -> list[Any]:
    pyrage = _pyrage()
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise KeyUnavailable(f"{where} line {number} is not an age identity (AGE-SECRET-KEY-1…)") from None
    return out


def load_identities(settings: object) -> list[Any]:
    """Every age identity held here. Raises KeyUnavailable for an unreadable or too-open key file."""
    identities: list[Any] = []
    for path in key_files(settings):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyUnavailable(f"age key file {path} is readable by others; run: chmod 600 {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise KeyUnavailable(f"cannot read age key file {path}") from None
        identities.extend(_parse_identities(text, str(path)))
    inline = os.environ.get("SOPS_AGE_KEY", "")
    if inline:
        identities.extend(_parse_identities(inline, "SOPS_AGE_KEY"))
    return identities


@dataclass
class AgeKey:
    id: str
    settings: object = field(repr=False)
    scheme: str = "age"

    @property
    def uri(self) -> str:
        return f"age:{self.id}"

    def recipient(self) -> Any:
        """The pyrage recipient; raises KeyUnavailable for a malformed one."""
        pyrage = _pyrage()
        try:
            return pyrage.x25519.Recipient.from_str(self.id)
        except pyrage.RecipientError:
            raise KeyUnavailable(f"age:{self.id} is not an age X25519 recipient (age1…)") from None

    def wrap(self, dek: bytes) -> bytes:
        pyrage = _pyrage()
        try:
            return bytes(pyrage.encrypt(dek, [self.recipient()]))
        except pyrage.EncryptError:
            raise KeyUnavailable(f"age:{self.id}: cannot wrap the data key") from None

    def identity(self) -> Any:
        """The identity held here whose public key is this recipient; raises KeyUnavailable if none is."""
        self.recipient()
        for identity in load_identities(self.settings):
            if str(identity.to_public()) == self.id:
                return identity
        where = ", ".join(str(p) for p in key_files(self.settings))
        raise KeyUnavailable(f"no age identity for age:{self.id} here (looked in {where}, SOPS_AGE_KEY)")

    def unwrap(self, blob: bytes, size: int = DEK_BYTES) -> bytes:
        """The data key (`size` bytes: sops' Shamir parts are one byte longer). Raises KeyUnavailable/CryptoError."""
        pyrage = _pyrage()
        identity = self.identity()
        if not blob or len(blob) > MAX_BLOB:
            raise CryptoError(f"age:{self.id} wrapped key has the wrong length")
        try:
            dek = bytes(pyrage.decrypt(blob, [identity]))
        except pyrage.DecryptError:
            raise CryptoError(f"age:{self.id} cannot unwrap the data key (damaged, or made for another key)") from None
        if len(dek) != size:
            raise CryptoError(f"age:{self.id} unwrapped data key has the wrong length")
        return dek


def open_key(key_id: str, settings: object) -> AgeKey:
    key_id = key_id.strip()
    if not key_id.startswith("age1"):
        raise KeyUnavailable(f"age:{key_id} is not an age X25519 recipient (age1…)")
    return AgeKey(key_id, settings)
