"""Append-only audit events: who did what to which target, with what outcome, under which request id.

Events go to the store (table `audit_events`) and to the log as one JSON line each. They never carry a secret
value or a raw token: `redact()` (kagiya/audit/redact.py) runs over every string before it is written.

Which path an event takes (the rule every `record()` call site follows):
- **Transactional** — the event records a state change and must commit or roll back with it (a binding request
  created or decided, a binding made or revoked, a policy saved or deleted): pass `conn=` (the change's
  transaction). It is written synchronously in that transaction; a store failure fails the change too.
- **Queued** — everything else: decisions that change no stored state (TokenReviews, SubjectAccessReview
  denials, credential issuance, secrets encrypt/decrypt, refusals of unauthorised callers). Call without
  `conn`: the event goes to the process's background writer (kagiya/audit/writer.py) and the request never
  waits on the store; while the store is away it is spilled to `<data_dir>/audit-spill.jsonl` and replayed.
Without a writer for the store (the CLI, a bare `Store`), a queued event is written synchronously.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from kagiya.audit.redact import fingerprint as fingerprint
from kagiya.audit.redact import redact as redact
from kagiya.audit.redact import redact_id
from kagiya.audit.redact import use_fingerprint_key as use_fingerprint_key
from kagiya.audit.writer import AuditWriter
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
    #: Random per event: the store ignores a uid it already holds, so replaying the spill file is exactly once.
    sa.Column("event_uid", sa.String(32), nullable=True, unique=True),
)


def _add_event_uid(conn: Any) -> None:
    """Schema step 2: tables made by step 1 before `event_uid` existed get the column and its unique index."""
    inspector = sa.inspect(conn)
    if "event_uid" not in {c["name"] for c in inspector.get_columns("audit_events")}:
        conn.execute(sa.text("ALTER TABLE audit_events ADD COLUMN event_uid VARCHAR(32)"))
        conn.execute(sa.text("CREATE UNIQUE INDEX uq_audit_events_event_uid ON audit_events (event_uid)"))


SCHEMA = Schema("audit", [create_tables(audit_events), _add_event_uid])

OUTCOMES = frozenset({"success", "failure", "denied", "allowed", "approved", "pending", "error"})
ACTION_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_DETAIL_BYTES = 8192
AUDIT_ORDER_LOCK_KEY = 0x6B6167697962


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
    """Append one event: inside `conn`'s transaction when given (it commits with the change it records), else
    through the store's background writer (see the module docstring for which to use)."""
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
        actor=_no_nul(redact(actor or "anonymous"))[:256],
        action=action,
        target=_no_nul(redact(target))[:512],
        outcome=outcome,
        request_id=_no_nul(redact_id(request_id))[:64],
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
        "event_uid": os.urandom(16).hex(),
    }
    writer = WRITERS.get(store) if conn is None else None
    if conn is not None:
        insert_rows(store, conn, [row])
    elif writer is not None:
        writer.submit(row)
    else:
        with store.begin() as c:
            insert_rows(store, c, [row])
    log.info("audit", extra={"audit": event.as_dict()})
    return event


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a row it refuses must not exist in the first place
    return text.replace("\x00", "\ufffd")


def insert_rows(store: Store, conn: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows in `conn`'s transaction; a row whose `event_uid` is already stored is skipped."""
    if store.dialect == "postgresql":
        # Ids must become visible in id order, or a reader paging with `continue=<last id>` skips an event whose
        # transaction committed after a later id's. Holding this lock until commit makes id order commit order.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_ORDER_LOCK_KEY})
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(audit_events).on_conflict_do_nothing(index_elements=["event_uid"]), list(rows))
    elif store.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(audit_events).on_conflict_do_nothing(index_elements=["event_uid"]), list(rows))
    else:
        conn.execute(audit_events.insert(), list(rows))


def write_rows(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """One transaction of `insert_rows` (the background writer's store write)."""
    with store.begin() as conn:
        insert_rows(store, conn, rows)


#: The background writer serving each store (set by kagiya.audit.service.init_app); weak, so a disposed
#: store and its writer can go.
WRITERS: weakref.WeakKeyDictionary[Store, AuditWriter] = weakref.WeakKeyDictionary()
#: How long a read of the audit log waits for this replica's queued events to reach the store.
READ_YOUR_WRITES_SECONDS = 2.0


def flush(store: Store, timeout: float = 10.0) -> bool:
    """Wait until events queued for `store` in this process are in it; False on timeout (store away)."""
    writer = WRITERS.get(store)
    return True if writer is None else writer.flush(timeout)


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
    """Events matching `q`, oldest first; returns (items, id to continue after or None).

    Waits briefly for this replica's queued events first, so a caller reads what it just caused."""
    flush(store, READ_YOUR_WRITES_SECONDS)
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
