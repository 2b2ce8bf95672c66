"""Redaction and fingerprints: what keeps secrets and tokens out of audit rows and log lines.

`redact()` runs over every string before an event is written, replacing values under secret-looking keys and
anything shaped like a credential (JWT, PEM block, cloud or forge token, long high-entropy run) with
`[redacted hmac:<prefix>]`. Callers that want to name a token use `fingerprint()`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

#: Words that make a key name secret (`accessToken`, `client_secret`, `api-key`, `X-Auth-Token` ...).
SECRET_WORDS = frozenset({
    "token", "tokens", "password", "passwd", "passphrase", "secret", "secrets", "credential", "credentials",
    "plaintext", "dek", "key", "apikey", "authorization", "cookie", "value", "values", "otp", "pin",
})
#: Last words of key names that hold safe, derived data (`token_fingerprint`, `key_ids`, `secret_name` ...).
SAFE_LAST_WORDS = frozenset({
    "fingerprint", "fingerprints", "hash", "sha256", "digest", "id", "ids", "count", "name", "names", "uri",
    "uris", "type", "kind", "length", "expiry", "expires", "ttl", "source", "reason",
})
#: Whole key names that are safe although their last word is secret-looking.
SAFE_KEYS = frozenset({"keys", "used_key", "key_names"})
DIGEST_WORDS = frozenset({"fingerprint", "fingerprints", "hash", "sha256", "digest"})
#: Last words of key names that hold random identifiers (`requestId`, `event_uid`): hex runs there are ids.
ID_WORDS = frozenset({"id", "ids", "uid", "uuid"})
SECRET_SHAPES = [
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWT / JWS compact
    re.compile(r"-----BEGIN [A-Z ]*-----"),  # PEM
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bglpat-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\bya29\.[A-Za-z0-9_-]{10,}"),  # Google OAuth access token
    re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"),  # Kubernetes bootstrap token
    re.compile(r"(?i)\b(bearer|basic)\s+\S{8,}"),  # an Authorization header value
]
LONG_RUN = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
HEX_RUN = re.compile(r"\b[0-9a-fA-F]{32,}\b")


#: HMAC key for fingerprints. A random one per process until `use_fingerprint_key` installs the key every
#: replica shares (create_app does, from the store), so equal tokens get equal fingerprints across replicas.
_fingerprint_key: bytes = os.urandom(32)


def use_fingerprint_key(key: bytes) -> None:
    global _fingerprint_key
    _fingerprint_key = key


def fingerprint(secret: str | bytes) -> str:
    """A short, non-reversible name for a token or secret: safe for logs and audit rows.

    Keyed (HMAC-SHA256), not a bare hash: many tokens are guessable (LDAP's base64 `user:password`, short static
    tokens), and a plain hash prefix in a readable audit log would let anyone test guesses offline.
    """
    raw = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    return "hmac:" + hmac.new(_fingerprint_key, raw, hashlib.sha256).hexdigest()[:16]


def _redacted(value: str) -> str:
    return f"[redacted {fingerprint(value)}]"


def _words(key: str) -> list[str]:
    """`secretAccessKey` -> [secret, access, key]; `api_key`, `X-Auth-Token` likewise."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def _key_is_secret(key: str) -> bool:
    if not key or key in SAFE_KEYS:
        return False
    words = _words(key)
    if not words or words[-1] in SAFE_LAST_WORDS:
        return False
    return any(w in SECRET_WORDS for w in words) or "apikey" in key.lower().replace("_", "").replace("-", "")


def _looks_secret(text: str, digest_ok: bool = False) -> bool:
    if any(p.search(text) for p in SECRET_SHAPES):
        return True
    if not digest_ok and HEX_RUN.search(text):
        return True
    for run in LONG_RUN.findall(text):
        if digest_ok and HEX_RUN.fullmatch(run):
            continue
        if re.search(r"[a-z]", run) and re.search(r"[A-Z]", run) and re.search(r"[0-9]", run):
            return True
    return False


def redact(value: Any, key: str = "", inherited: bool = False) -> Any:
    """Return `value` with every secret-looking part replaced; structure (dicts, lists) is kept.

    Everything under a secret-named key is redacted, whatever its type or depth; elsewhere strings are checked
    for credential shapes (JWT, PEM, cloud and forge tokens, long hex or high-entropy runs, `Bearer …`).
    """
    secret = inherited or _key_is_secret(key)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            name = str(k)
            shown = _redacted(name) if _looks_secret(name) else name
            out[shown] = redact(v, name, secret)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, key, secret) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        return _redacted(base64.b64encode(value).decode())
    if secret:
        return _redacted(str(value))
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    words = _words(key)
    if _looks_secret(text, digest_ok=bool(words) and words[-1] in DIGEST_WORDS | ID_WORDS):
        return _redacted(text)
    return text


def redact_id(value: str) -> str:
    """A request id as it is, unless it has a credential's shape (a client may send any `X-Request-Id`).

    Ids are random on purpose (kagiya's own are 32 hex digits, others send UUIDs), so the entropy checks that
    `redact()` applies to free text would hide every one of them; an id is not a secret. The credential shapes
    (JWT, PEM, cloud and forge tokens, `Bearer …`) and mixed-case high-entropy runs are still redacted.
    """
    text = str(value)
    return _redacted(text) if _looks_secret(text, digest_ok=True) else text
