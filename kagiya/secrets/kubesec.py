"""The kubesec value, trailer and MAC format, byte for byte (docs/format.md, kubesec 0.9.2).

Values: AES-256-GCM under the file's data key (DEK) with the bare key name as associated data; the plaintext is
NUL-padded to a multiple of 48 bytes (an empty value gets no padding) and written as
`base64(ct).base64(iv).base64(tag)` (`base64(iv).base64(tag)` when the ciphertext is empty).
Trailer: `# kubesec:v:N`, one line per recipient `# kubesec:<scheme>:<id>:<base64 wrapped DEK>`, then
`# kubesec:mac:<iv>.<tag>`, a GCM tag over the empty plaintext with the key names, values and recipient ids as AAD.

Nothing here knows YAML or recipient backends: `manifest.py` finds the values, `envelope.py` the keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Sequence

from kagiya.errors import CryptoError, Invalid
from kagiya.secrets.record import Record

TYPE_CHECKING = False  # cryptography loads only where a value is encrypted or decrypted (`check` needs none)
if TYPE_CHECKING:
    from kagiya.secrets.aesgcm import AESGCM

PREFIX = "# kubesec:"
#: Recipient lines of schemes kubesec does not know; kubesec skips comment lines without its own prefix.
OWN_PREFIX = "# kagiya:"
VERSION_PREFIX = "# kubesec:v:"
PAD_BLOCK = 48
IV_BYTES = 12
TAG_BYTES = 16
READABLE_VERSIONS = (1, 2, 3, 4)
#: Shape of an encrypted value (used by `check` without any key).
VALUE_RE = re.compile(r"^(?:[A-Za-z0-9+/]+={0,2}\.)?[A-Za-z0-9+/]{16}\.[A-Za-z0-9+/]{22}==$")


class FormatError(Invalid):
    """The file is not a well-formed kubesec file (bad trailer, bad value encoding): 400 over HTTP."""

    code = "FormatError"
    reason = "BadRequest"
    http_status = 400


def pad(plaintext: bytes) -> bytes:
    """NUL-pad to a multiple of 48 bytes, as kubesec does, so value lengths leak only coarsely."""
    if not plaintext:
        return plaintext
    rest = len(plaintext) % PAD_BLOCK
    return plaintext if rest == 0 else plaintext + b"\0" * (PAD_BLOCK - rest)


def unpad(padded: bytes) -> bytes:
    cut = padded.find(b"\0")
    return padded if cut < 0 else padded[:cut]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError(f"{what} is not valid base64") from None
    # Non-canonical spellings (stray low bits in the last group) would let a changed character go unnoticed. A
    # validated string decodes group by group, and only its last 4-character group can be non-canonical, so
    # re-encoding that group is enough (re-encoding a megabyte value to compare it would cost milliseconds).
    tail = len(data) % 3 or 3
    if (_b64(data[-tail:]) != text[-4:]) if data else text:
        raise FormatError(f"{what} is not canonical base64")
    return data


class EncryptedValue(Record):
    __slots__ = ("iv", "ciphertext", "tag")

    def __init__(self, iv: bytes, ciphertext: bytes, tag: bytes) -> None:
        self.iv = iv
        self.ciphertext = ciphertext
        self.tag = tag

    def encode(self) -> str:
        tail = f"{_b64(self.iv)}.{_b64(self.tag)}"
        return f"{_b64(self.ciphertext)}.{tail}" if self.ciphertext else tail


def parse_value(text: str, key: str) -> EncryptedValue:
    """Split an encrypted value into its parts; raises FormatError naming `key`."""
    parts = text.split(".")
    if len(parts) == 2:
        parts.insert(0, "")
    if len(parts) != 3:
        raise FormatError(f"value of {key!r} is not an encrypted kubesec value (expected CIPHERTEXT.IV.TAG)")
    ct = _unb64(parts[0], f"ciphertext of {key!r}") if parts[0] else b""
    iv = _unb64(parts[1], f"IV of {key!r}")
    tag = _unb64(parts[2], f"tag of {key!r}")
    if len(iv) != IV_BYTES or len(tag) != TAG_BYTES:
        raise FormatError(f"value of {key!r} has a bad IV or tag length")
    return EncryptedValue(iv, ct, tag)


def encrypt_value(aead: AESGCM, key: str, plaintext: str, iv: bytes | None = None) -> str:
    """Encrypt one value (padding applied). A caller passes `iv` only to reproduce an unchanged value."""
    iv = iv if iv is not None else os.urandom(IV_BYTES)
    sealed = aead.encrypt(iv, pad(plaintext.encode("utf-8")), key.encode("utf-8"))
    return EncryptedValue(iv, sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]).encode()


def decrypt_value(aead: AESGCM, key: str, text: str | EncryptedValue) -> str:
    """The plaintext of one value (text or already parsed); raises FormatError / CryptoError naming `key`."""
    value = parse_value(text, key) if isinstance(text, str) else text
    try:
        padded = aead.decrypt(value.iv, value.ciphertext + value.tag, key.encode("utf-8"))
    except Exception as exc:
        if not _is_invalid_tag(exc):
            raise
        raise CryptoError(
            f"value of {key!r} failed authentication (tampered, renamed, or encrypted under another data key)"
        ) from None
    try:
        return unpad(padded).decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError(f"value of {key!r} is not UTF-8 after decryption") from None


def mac_input(secrets: Sequence[tuple[Iterable[tuple[str, str]], Iterable[tuple[str, str]]]],
              recipient_ids: Iterable[str], tags: Sequence[str] = ()) -> bytes:
    """The MAC's associated data.

    One Secret (all kubesec writes): exactly kubesec's input, data keys+values in byte order, then stringData,
    then recipient ids, no separators. Note that this cannot tell a value moved from `data` to `stringData`
    when the concatenation stays the same; kubesec compatibility leaves that undetected (docs/secrets.md).

    Several Secrets (a kagiya extension kubesec cannot read anyway): every Secret is bound to its tag in `tags`
    (ordinal and namespace/name), every value to its section, and every field is length-prefixed, so moving a
    value to another Secret or section, or renaming a Secret, fails the MAC.
    """
    out = bytearray()
    if len(secrets) <= 1:
        for data, string_data in secrets:
            for section in (data, string_data):
                for key, value in sorted(section, key=lambda kv: kv[0].encode("utf-8")):
                    out += key.encode("utf-8") + value.encode("utf-8")
    else:
        if len(tags) != len(secrets):
            raise ValueError("one tag per Secret")
        out += b"kagiya-multi-secret-mac-1"
        for tag, (data, string_data) in zip(tags, secrets, strict=True):
            _field(out, b"secret", tag.encode("utf-8"))
            for name, section in ((b"data", data), (b"stringData", string_data)):
                _field(out, b"section", name)
                for key, value in sorted(section, key=lambda kv: kv[0].encode("utf-8")):
                    _field(out, b"key", key.encode("utf-8"))
                    _field(out, b"value", value.encode("utf-8"))
        out += b"recipients"
    for rid in recipient_ids:
        out += rid.encode("utf-8")
    return bytes(out)


def _field(out: bytearray, label: bytes, data: bytes) -> None:
    out += label + len(data).to_bytes(8, "big") + data


def make_mac(aead: AESGCM, aad: bytes) -> str:
    iv = os.urandom(IV_BYTES)
    return f"{_b64(iv)}.{_b64(aead.encrypt(iv, b'', aad))}"


def verify_mac(aead: AESGCM, aad: bytes, mac: str) -> bool:
    parts = mac.split(".")
    if len(parts) != 2:
        return False
    try:
        iv, tag = _unb64(parts[0], "MAC IV"), _unb64(parts[1], "MAC tag")
    except FormatError:
        return False
    if len(iv) != IV_BYTES or len(tag) != TAG_BYTES:
        return False
    try:
        aead.decrypt(iv, tag, aad)
    except Exception as exc:
        if not _is_invalid_tag(exc):
            raise
        return False
    return True


def _is_invalid_tag(exc: Exception) -> bool:
    from cryptography.exceptions import InvalidTag

    return isinstance(exc, InvalidTag)


class RecipientLine(Record):
    __slots__ = ("scheme", "id", "blob", "own")

    def __init__(self, scheme: str, id: str, blob: bytes, own: bool = False) -> None:  # noqa: A002 - kubesec's term
        self.scheme = scheme
        self.id = id
        self.blob = blob
        #: Written as `# kagiya:<scheme>:<id>:<blob>`, a comment kubesec ignores, for schemes kubesec does not
        #: know (`local:`): kubesec refuses a `# kubesec:local:` line and with it the whole file.
        self.own = own

    @property
    def uri(self) -> str:
        return f"{self.scheme}:{self.id}"

    def render(self) -> str:
        return f"{OWN_PREFIX if self.own else PREFIX}{self.scheme}:{self.id}:{_b64(self.blob)}"


class Trailer(Record):
    __slots__ = ("version", "recipients", "mac")

    def __init__(self, version: int, recipients: list[RecipientLine] | None = None, mac: str | None = None) -> None:
        self.version = version
        self.recipients = [] if recipients is None else recipients
        self.mac = mac

    def render(self, newline: str = "\n") -> str:
        """kubesec's lines (version, its recipients, mac), then kagiya's own recipient lines."""
        lines = [f"{VERSION_PREFIX}{self.version}"] + [r.render() for r in self.recipients if not r.own]
        if self.mac is not None:
            lines.append(f"{PREFIX}mac:{self.mac}")
        lines += [r.render() for r in self.recipients if r.own]
        return "".join(line + newline for line in lines)

    @property
    def mac_ids(self) -> list[str]:
        """The recipient ids the MAC covers: those of `# kubesec:` lines, in file order, exactly as kubesec
        computes it (so kubesec verifies a file that also has `# kagiya:` lines, which it does not see)."""
        return [r.id for r in self.recipients if not r.own]

    @property
    def has_own_lines(self) -> bool:
        return any(r.own for r in self.recipients)


def find_trailer(text: str) -> int:
    """Offset of the trailer's first line (`# kubesec:v:`), or -1 when the file is not encrypted."""
    if text.startswith(VERSION_PREFIX):
        return 0
    pos = text.find("\n" + VERSION_PREFIX)
    return -1 if pos < 0 else pos + 1


def parse_trailer(text: str, known_schemes: Iterable[str]) -> Trailer:
    """Parse trailer lines (CRLF tolerated); raises FormatError with a one-line reason."""
    known = set(known_schemes)
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    version_text = lines[0][len(VERSION_PREFIX):].strip()
    if not version_text.isdigit():
        raise FormatError(f"kubesec trailer: bad version line {lines[0]!r}")
    version = int(version_text)
    if version not in READABLE_VERSIONS:
        raise FormatError(f"kubesec trailer: version {version} is not supported (this kagiya reads 1-4)")
    trailer = Trailer(version)
    for number, line in enumerate(lines[1:], start=2):
        own = line.startswith(OWN_PREFIX)
        if not own and not line.startswith(PREFIX):
            raise FormatError(f"kubesec trailer line {number}: unexpected content after the trailer began")
        if trailer.mac is not None and not own:
            raise FormatError(f"kubesec trailer line {number}: nothing but '# kagiya:' lines may follow the mac line")
        scheme, sep, rest = line[len(OWN_PREFIX if own else PREFIX):].partition(":")
        if own and scheme in ("mac", "v"):
            raise FormatError(f"kubesec trailer line {number}: '# kagiya:{scheme}:' is not a recipient line")
        if scheme == "mac":
            trailer.mac = rest.strip()
            continue
        if scheme == "v":
            raise FormatError(f"kubesec trailer line {number}: a second version line")
        if scheme not in known:
            raise FormatError(f"kubesec trailer line {number}: unknown recipient type {scheme!r} "
                              f"(known: {', '.join(sorted(known))})")
        key_id, sep2, blob = rest.rpartition(":")
        if not sep or not sep2 or not key_id or not blob.strip():
            raise FormatError(f"kubesec trailer line {number}: truncated {scheme} recipient line")
        trailer.recipients.append(RecipientLine(scheme, key_id, _unb64(blob.strip(), f"{scheme}:{key_id} wrapped key"),
                                                own))
    if not trailer.recipients:
        raise FormatError("kubesec trailer names no recipients (truncated file?)")
    if version >= 3 and trailer.mac is None:
        raise FormatError("kubesec trailer has no mac line (truncated file?)")
    return trailer
