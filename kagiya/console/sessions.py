"""Console sessions, kept in the store so any replica can serve any request of a signed-in person.

The browser holds only a random session id (256 bits) in an HttpOnly, SameSite=Lax cookie; the store holds its
SHA-256, never the id itself, so a database reader cannot take over a session. A session carries who signed in
(username, uid, groups, as the identity provider answered at sign-in), its CSRF token, and two clocks: it ends
`session_idle_seconds` after the last request and `session_absolute_seconds` after sign-in, whichever comes first.
No token of the person (ID token, static token) is kept anywhere.

Pending OIDC sign-ins (state, nonce, PKCE verifier) live in their own table for ten minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kagiya.authn.providers.base import User
from kagiya.errors import TooManyRequests
from kagiya.store import Schema, Store, create_tables, metadata

_TIME = sa.DateTime(timezone=True)
LOGIN_TTL = dt.timedelta(minutes=10)
#: last_seen is written at most this often, so the live queue's polling does not write on every request.
TOUCH_EVERY = dt.timedelta(seconds=30)
#: Sign-ins in progress (each a row for LOGIN_TTL) before new ones are refused: starting one needs no credential,
#: so without a bound anyone could grow the store by a row per request until the disk is full.
MAX_PENDING_LOGINS = 20_000

sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(256), nullable=False),
    sa.Column("uid", sa.String(256), nullable=False, default=""),
    sa.Column("groups", sa.Text, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("last_seen_at", _TIME, nullable=False),
    sa.Column("expires_at", _TIME, nullable=False, index=True),
)

logins = sa.Table(
    "console_logins",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("verifier", sa.String(128), nullable=False),
    sa.Column("nonce", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.String(1024), nullable=False),
    sa.Column("created_at", _TIME, nullable=False, index=True),
)

SCHEMA = Schema("console", [create_tables(sessions, logins)])


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Session:
    user: User
    mode: str
    csrf: str
    created_at: dt.datetime
    expires_at: dt.datetime


class SessionStore:
    def __init__(self, store: Store, idle_seconds: int, absolute_seconds: int,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.store = store
        self.idle = dt.timedelta(seconds=idle_seconds)
        self.absolute = dt.timedelta(seconds=absolute_seconds)
        self.clock = clock

    def create(self, user: User, mode: str) -> tuple[str, Session]:
        """A new session for `user`; returns (the cookie value, the session). Expired rows are swept here."""
        sid, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        expires = now + self.absolute
        row = {"id_hash": _hash(sid), "username": user.username, "uid": user.uid, "groups": json.dumps(user.groups),
               "mode": mode, "csrf": csrf, "created_at": now, "last_seen_at": now, "expires_at": expires}
        with self.store.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            conn.execute(sessions.insert().values(**row))
        return sid, Session(user, mode, csrf, now, expires)

    def get(self, sid: str, touch: bool = True) -> Session | None:
        """The live session for a cookie value, or None (unknown, idle too long, or past its absolute expiry).

        `touch=False` for requests a page makes by itself (the queue's polling): an unattended open tab must
        still reach its idle expiry."""
        if not sid or len(sid) > 128:
            return None
        key, now = _hash(sid), self.clock()
        with self.store.connect() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.id_hash == key)).mappings().first()
        if row is None:
            return None
        last_seen, expires = _utc(row["last_seen_at"]), _utc(row["expires_at"])
        if now >= expires or now - last_seen >= self.idle:
            self.delete(sid)
            return None
        if touch and now - last_seen >= TOUCH_EVERY:
            with self.store.begin() as conn:
                conn.execute(sessions.update().where(sessions.c.id_hash == key).values(last_seen_at=now))
        user = User(username=row["username"], uid=row["uid"], groups=tuple(json.loads(row["groups"])))
        return Session(user, row["mode"], row["csrf"], _utc(row["created_at"]), expires)

    def delete(self, sid: str) -> None:
        with self.store.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.id_hash == _hash(sid)))

    # ---- pending OIDC sign-ins --------------------------------------------------------------------------------
    def begin_login(self, redirect_uri: str) -> tuple[str, str, str]:
        """Remember a new sign-in attempt; returns (state, nonce, PKCE verifier)."""
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        now = self.clock()
        with self.store.begin() as conn:
            conn.execute(logins.delete().where(logins.c.created_at < now - LOGIN_TTL))
            pending = conn.execute(sa.select(sa.func.count()).select_from(logins)).scalar_one()
            if pending >= MAX_PENDING_LOGINS:
                raise TooManyRequests("too many sign-ins are in progress; try again in a few minutes")
            conn.execute(logins.insert().values(state_hash=_hash(state), verifier=verifier, nonce=nonce,
                                                redirect_uri=redirect_uri, created_at=now))
        return state, nonce, verifier

    def finish_login(self, state: str) -> dict[str, Any] | None:
        """The attempt named by `state`, removed so it is used once; None when unknown or older than 10 minutes."""
        if not state or len(state) > 128:
            return None
        key = _hash(state)
        with self.store.begin() as conn:
            row = conn.execute(sa.select(logins).where(logins.c.state_hash == key)).mappings().first()
            if row is None or conn.execute(logins.delete().where(logins.c.state_hash == key)).rowcount != 1:
                return None
        if self.clock() - _utc(row["created_at"]) > LOGIN_TTL:
            return None
        return dict(row)
