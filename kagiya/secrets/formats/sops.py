"""Reading sops files (getsops/sops 3.x, YAML and JSON stores): data key, values, comments and the MAC.

What sops writes, and what we check, in the order sops checks it:
- `sops:` metadata: `age: [{recipient, enc}]` (an armoured age file holding the 32-byte data key), `pgp: [{fp, enc}]`
  (an armoured OpenPGP message of it, unsigned), or the same lists inside `key_groups: [...]`; `lastmodified`
  (RFC 3339), `mac`, and the rules for which values are encrypted (`unencrypted_suffix`, `encrypted_suffix`,
  `unencrypted_regex`, `encrypted_regex`, `mac_only_encrypted`).
- Every encrypted value is `ENC[AES256_GCM,data:B64,iv:B64,tag:B64,type:T]`: AES-256-GCM with a 32-byte nonce, the
  associated data being the value's path of mapping keys joined and ended with `:` (`stringData:password:`;
  list items share their list's path). Comments are encrypted the same way under their mapping's path.
- The MAC: SHA-512 over every value in document order as sops' `ToBytes` prints it (`True`/`False`, decimal
  numbers; nulls and comments skipped; only encrypted values, after a fixed prefix, with `mac_only_encrypted`),
  upper-case hex, stored encrypted under the data key with `lastmodified` as associated data.

A value that should be encrypted but is not, a value that does not decrypt, and a MAC that differs all fail
loudly: nothing is printed for a file that does not verify. Several key groups are Shamir parts of the data key
(formats/shamir.py), `shamir_threshold` of which must open. The comment-regex rules are refused (not
implemented). Unlike kubesec, sops does not sign the wrapped data key; a sops file opens with whoever's public
key it was encrypted to, as with sops itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kagiya.errors import CryptoError, Invalid, KagiyaError
from kagiya.secrets.keys.base import DEK_BYTES, KeyUnavailable, KeyUpstreamUnavailable

ENC_RE = re.compile(r"^ENC\[AES256_GCM,data:(.*),iv:(.+),tag:(.+),type:(.+)\]$")
#: sha256("sops"): the MAC prefix when only encrypted values are covered (sops.MACOnlyEncryptedInitialization).
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
MAX_WRAPPED = 64 * 1024
MAX_GROUPS = 16
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)[+*{]")
_UNSUPPORTED = ("unencrypted_comment_regex", "encrypted_comment_regex")
_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
#: What sops reads a file naming no rule with (stores.DefaultUnencryptedSuffix).
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"


class SopsFormatError(Invalid):
    """The file is not a sops file kagiya can read (no usable metadata, unsupported options)."""


@dataclass
class Metadata:
    lastmodified: str
    mac: str
    groups: list[list[tuple[str, str, str]]]  # [[(scheme, id, armoured enc)]]
    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False
    #: Key groups needed to rebuild the data key (Shamir); 1 when there is a single group.
    threshold: int = 1
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def recipients(self) -> list[str]:
        return [f"{scheme}:{key_id}" for group in self.groups for scheme, key_id, _ in group]

    def should_encrypt(self, path: Sequence[str]) -> bool:
        """sops' shouldBeEncrypted for a value (or comment) at `path`."""
        encrypted = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, p) for p in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(re.search(self.encrypted_regex, p) for p in path)
        return encrypted


def parse_metadata(raw: Any) -> Metadata:
    """The `sops:` mapping (already loaded as plain data). Raises SopsFormatError naming what is wrong."""
    if not isinstance(raw, dict):
        raise SopsFormatError("sops metadata is not a mapping")
    for key in _UNSUPPORTED:
        if raw.get(key):
            raise SopsFormatError(f"sops files using {key} are not supported by kagiya; decrypt with sops")
    groups_raw = raw.get("key_groups")
    if groups_raw is not None and not isinstance(groups_raw, list):
        raise SopsFormatError("sops key_groups is not a list")
    sources_list = [g if isinstance(g, dict) else {} for g in groups_raw] if groups_raw else [raw]
    if len(sources_list) > MAX_GROUPS:
        raise SopsFormatError(f"sops file has more than {MAX_GROUPS} key groups")
    groups = [_group(sources) for sources in sources_list]
    threshold = raw.get("shamir_threshold") or len(groups)
    if len(groups) > 1 and (not isinstance(threshold, int) or not 2 <= threshold <= len(groups)):
        raise SopsFormatError("sops shamir_threshold must be between 2 and the number of key groups")
    lastmodified, mac = raw.get("lastmodified"), raw.get("mac")
    if not isinstance(lastmodified, str) or not isinstance(mac, str) or not mac:
        raise SopsFormatError("sops metadata has no lastmodified/mac (truncated file?)")
    def text(key: str) -> str:
        value = raw.get(key) or ""
        if not isinstance(value, str):
            raise SopsFormatError(f"sops metadata {key} is not a string")
        return value
    for key in ("unencrypted_regex", "encrypted_regex"):
        pattern = text(key)
        # sops matches with Go's linear-time RE2; Python's backtracking engine can take exponential time on a
        # nested quantifier such as `(a+)+`, so a file could stall a CI job: such patterns are refused.
        if len(pattern) > 512 or _NESTED_QUANTIFIER.search(pattern):
            raise SopsFormatError(f"sops metadata {key} is too long or has a nested quantifier")
        try:
            re.compile(pattern)
        except re.error:
            raise SopsFormatError(f"sops metadata {key} is not a valid regular expression") from None
    # sops refuses a file naming more than one rule (the rules are not covered by the MAC, so a second rule
    # added by hand must not decide what is read as plaintext), and reads one naming none with its default suffix
    rules = [key for key in (*_RULES, *_UNSUPPORTED) if raw.get(key)]
    if len(rules) > 1:
        raise SopsFormatError(f"sops metadata names more than one of {', '.join(_RULES)} (it has {', '.join(rules)})")
    unencrypted_suffix = text("unencrypted_suffix") or ("" if rules else DEFAULT_UNENCRYPTED_SUFFIX)
    return Metadata(lastmodified, mac, groups, unencrypted_suffix, text("encrypted_suffix"),
                    text("unencrypted_regex"), text("encrypted_regex"), raw.get("mac_only_encrypted") is True,
                    threshold if len(groups) > 1 else 1, raw)


def _group(sources: dict[str, Any]) -> list[tuple[str, str, str]]:
    group: list[tuple[str, str, str]] = []
    for entry in sources.get("age") or []:
        if isinstance(entry, dict) and isinstance(entry.get("recipient"), str) and isinstance(entry.get("enc"), str):
            group.append(("age", entry["recipient"].strip(), entry["enc"]))
    for entry in sources.get("pgp") or []:
        if isinstance(entry, dict) and isinstance(entry.get("fp"), str) and isinstance(entry.get("enc"), str):
            group.append(("pgp", entry["fp"].strip().upper(), entry["enc"]))
    others = [k for k in ("kms", "gcp_kms", "azure_kv", "hc_vault") if sources.get(k)]
    if not group:
        extra = f" (it has only {', '.join(others)} keys, which kagiya does not read in sops files)" if others else ""
        raise SopsFormatError(f"sops metadata names no age or pgp key{extra}")
    return group


def unwrap_data_key(meta: Metadata, settings: object) -> tuple[bytes, str]:
    """The data key: from the first age, then pgp key that opens it (sops' default decryption order) in each key
    group; with several groups, `threshold` groups' Shamir parts combined."""
    reasons: list[str] = []
    upstream = False
    parts: list[bytes] = []
    used: list[str] = []
    size = DEK_BYTES if len(meta.groups) == 1 else DEK_BYTES + 1
    for group in meta.groups:
        for scheme, key_id, enc in sorted(group, key=lambda e: 0 if e[0] == "age" else 1):
            try:
                part = (_unwrap_age(key_id, enc, settings, size) if scheme == "age"
                        else _unwrap_pgp(key_id, enc, settings, size))
            except KagiyaError as exc:
                reasons.append(f"{scheme}:{key_id}: {exc.message}")
                upstream = upstream or isinstance(exc, KeyUpstreamUnavailable)
                continue
            parts.append(part)
            used.append(f"{scheme}:{key_id}")
            break
        if len(parts) == meta.threshold:
            break
    if len(parts) >= meta.threshold:
        if len(meta.groups) == 1:
            return parts[0], used[0]
        from kagiya.secrets.formats import shamir

        return shamir.combine(parts), ",".join(used)
    names = ", ".join(meta.recipients)
    error = KeyUpstreamUnavailable if upstream else CryptoError
    if len(meta.groups) > 1:
        raise error(f"not enough of this sops file's keys are usable here: {meta.threshold} of its "
                    f"{len(meta.groups)} key groups are needed, {len(parts)} opened; it is encrypted for {names} "
                    f"({'; '.join(reasons)})")
    raise error(f"none of this sops file's keys is usable here; it is encrypted for {names} ({'; '.join(reasons)})")


def _unwrap_age(recipient: str, enc: str, settings: object, size: int) -> bytes:
    from kagiya.secrets.keys import age

    return age.open_key(recipient, settings).unwrap(enc.encode("ascii", "replace"), size)


def _unwrap_pgp(fingerprint: str, enc: str, settings: object, size: int) -> bytes:
    """sops' PGP data keys are encrypted, not signed: gpg must decrypt them with a secret key it holds."""
    from kagiya.secrets.keys.pgp import run_gpg
    from kagiya.secrets.settings import SecretsSettings

    if len(enc) > MAX_WRAPPED:
        raise CryptoError(f"wrapped data key for pgp:{fingerprint} is too large to be one")
    gpg_settings = settings if isinstance(settings, SecretsSettings) else SecretsSettings()
    result = run_gpg(gpg_settings, ["--decrypt", "--output", "-"], enc.encode("ascii", "replace"))
    if not result.has("DECRYPTION_OKAY"):
        if result.has("NO_SECKEY"):
            raise KeyUnavailable(f"the GnuPG keyring holds no secret key for pgp:{fingerprint}")
        raise CryptoError(f"wrapped data key for pgp:{fingerprint} is damaged or not a GnuPG message")
    if len(result.stdout) != size:
        raise CryptoError(f"wrapped data key for pgp:{fingerprint} does not hold a {size}-byte data key")
    return result.stdout


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"{what}: bad base64 in an ENC[] value") from None


def decrypt_value(aead: AESGCM, text: str, aad: str, where: str) -> tuple[str, str]:
    """(type, plaintext) of one `ENC[...]` value; CryptoError when it is malformed, moved or altered."""
    match = ENC_RE.match(text)
    if match is None:
        raise CryptoError(f"{where}: expected an encrypted value (ENC[AES256_GCM,...]); the file was changed")
    data, iv, tag = (_b64(match.group(i), where) for i in (1, 2, 3))
    if len(iv) < 12 or len(tag) != 16:
        raise CryptoError(f"{where}: malformed ENC[] value")
    try:
        plain = aead.decrypt(iv, data + tag, aad.encode("utf-8"))
    except InvalidTag:
        raise CryptoError(f"{where}: value does not decrypt (changed, or moved from another key)") from None
    try:
        return match.group(4), plain.decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError(f"{where}: decrypted value is not UTF-8") from None


def typed(kind: str, plain: str, where: str) -> Any:
    """The Go value sops' cipher returns for `type:kind` (for the MAC and for rendering)."""
    try:
        if kind == "str" or kind == "bytes":
            return plain
        if kind in ("int", "int64"):
            return int(plain, 10)
        if kind == "float":
            return float(plain)
        if kind == "bool":
            return _parse_go_bool(plain)
    except ValueError:
        pass
    else:
        raise CryptoError(f"{where}: unknown encrypted value type {kind!r}")
    raise CryptoError(f"{where}: encrypted {kind} value {plain!r} does not parse")


def _parse_go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


def to_bytes(value: Any) -> bytes:
    """sops.ToBytes."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return go_float(value).encode()
    return str(value).encode("utf-8")


def go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    from decimal import Decimal

    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    text = format(Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


def check_mac(aead: AESGCM, meta: Metadata, digest: str) -> None:
    """Compare the MAC we computed with the stored one (decrypted under `lastmodified`); CryptoError if they differ."""
    _, stored = decrypt_value(aead, meta.mac, meta.lastmodified, "sops mac")
    if not hmac.compare_digest(stored.encode(), digest.encode()):
        raise CryptoError("sops MAC mismatch: a value, key or their order was changed after encryption")


class MacHasher:
    """Accumulates values as sops' Decrypt walk does."""

    def __init__(self, meta: Metadata) -> None:
        self.meta = meta
        self.hash = hashlib.sha512()
        if meta.mac_only_encrypted:
            self.hash.update(MAC_ONLY_ENCRYPTED_INIT)

    def add(self, value: Any, encrypted: bool) -> None:
        if value is None or (self.meta.mac_only_encrypted and not encrypted):
            return
        self.hash.update(to_bytes(value))

    def hexdigest(self) -> str:
        return self.hash.hexdigest().upper()
