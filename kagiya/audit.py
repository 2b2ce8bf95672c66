"""Append-only audit events: who did what to which target, with what outcome, under which request id.

Events go to the store (table `audit_events`) and to the log as one JSON line each. They must never carry a
secret value or a raw token: `redact()` runs over every string before it is written, replacing values under
secret-looking keys and anything shaped like a credential (JWT, PEM block, cloud or forge token, long
high-entropy run) with `[redacted hmac:<prefix>]`. Callers that want to name a token use `fingerprint()`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from kagiya.errors import BadRequest
from kagiya.store import Schema, Store, create_tables, metadata

log = logging.getLogger("kagiya.audit")

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(256), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(512), nullable=False, index=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
)

SCHEMA = Schema("audit", [create_tables(audit_events)])

OUTCOMES = frozenset({"success", "failure", "denied", "allowed", "approved", "pending", "error"})
ACTION_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
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
MAX_DETAIL_BYTES = 8192
AUDIT_ORDER_LOCK_KEY = 0x6B6167697962


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
    if _looks_secret(text, digest_ok=bool(words) and words[-1] in DIGEST_WORDS):
        return _redacted(text)
    return text


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    target: str
    outcome: str
    request_id: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def as_dict(self, event_id: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "requestId": self.request_id,
            "details": dict(self.details),
        }
        if event_id is not None:
            out = {"id": event_id, **out}
        return out


def record(
    store: Store,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    request_id: str = "",
    details: Mapping[str, Any] | None = None,
    conn: Any = None,
) -> AuditEvent:
    """Append one event (inside `conn`'s transaction when given, so it commits with the change it records)."""
    if not ACTION_RE.match(action):
        raise ValueError(f"audit action {action!r} is not a lower-case dotted name")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r} is not one of {sorted(OUTCOMES)}")
    clean_details = redact(dict(details or {}))
    encoded = json.dumps(clean_details, sort_keys=True, default=str)
    if len(encoded) > MAX_DETAIL_BYTES:
        clean_details = {"truncated": True, "size": len(encoded)}
        encoded = json.dumps(clean_details)
    event = AuditEvent(
        actor=redact(actor or "anonymous")[:256],
        action=action,
        target=redact(target)[:512],
        outcome=outcome,
        request_id=redact(request_id)[:64],
        details=clean_details,
    )
    row = {
        "time": event.time,
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "details": encoded,
    }
    if conn is not None:
        _insert(store, conn, row)
    else:
        with store.begin() as c:
            _insert(store, c, row)
    log.info("audit", extra={"audit": event.as_dict()})
    return event


def _insert(store: Store, conn: Any, row: dict[str, Any]) -> None:
    if store.dialect == "postgresql":
        # Ids must become visible in id order, or a reader paging with `continue=<last id>` skips an event whose
        # transaction committed after a later id's. Holding this lock until commit makes id order commit order.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_ORDER_LOCK_KEY})
    conn.execute(audit_events.insert().values(**row))


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    after_id: int = 0
    limit: int = 100


MAX_PAGE = 500


def query(store: Store, q: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
    """Events matching `q`, oldest first; returns (items, id to continue after or None)."""
    t = audit_events
    stmt = sa.select(t).where(t.c.id > q.after_id).order_by(t.c.id).limit(min(q.limit, MAX_PAGE) + 1)
    if q.actor:
        stmt = stmt.where(t.c.actor == q.actor)
    if q.action:
        # "iam.binding" matches "iam.binding.approve": a trailing dot-less prefix selects a family.
        stmt = stmt.where(sa.or_(t.c.action == q.action, t.c.action.startswith(q.action + ".", autoescape=True)))
    if q.target:
        stmt = stmt.where(t.c.target == q.target)
    if q.outcome:
        stmt = stmt.where(t.c.outcome == q.outcome)
    if q.request_id:
        stmt = stmt.where(t.c.request_id == q.request_id)
    if q.since:
        stmt = stmt.where(t.c.time >= q.since)
    if q.until:
        stmt = stmt.where(t.c.time < q.until)
    with store.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    limit = min(q.limit, MAX_PAGE)
    more = len(rows) > limit
    rows = rows[:limit]
    items = []
    for r in rows:
        when = r["time"] if r["time"].tzinfo else r["time"].replace(tzinfo=dt.UTC)
        ev = AuditEvent(
            actor=r["actor"], action=r["action"], target=r["target"], outcome=r["outcome"],
            request_id=r["request_id"], details=json.loads(r["details"]), time=when,
        )
        items.append(ev.as_dict(r["id"]))
    return items, (rows[-1]["id"] if more and rows else None)


def parse_query(args: Mapping[str, str]) -> AuditQuery:
    """Build a query from URL parameters; raises BadRequest naming the parameter."""
    allowed = {"actor", "action", "target", "outcome", "requestId", "since", "until", "continue", "limit"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}")

    from kagiya.httpjson import rfc3339, whole_number

    return AuditQuery(
        actor=args.get("actor") or None,
        action=args.get("action") or None,
        target=args.get("target") or None,
        outcome=args.get("outcome") or None,
        request_id=args.get("requestId") or None,
        since=rfc3339(args, "since"),
        until=rfc3339(args, "until"),
        after_id=whole_number(args, "continue", 0, 0, 2**62),
        limit=whole_number(args, "limit", 100, 1, MAX_PAGE),
    )
