"""The store: SQLAlchemy Core tables, SQLite by default (WAL), any SQLAlchemy URL (PostgreSQL) by setting.

Failures: a store that cannot be reached or written (PostgreSQL down, SQLite locked, full or read-only) raises
SQLAlchemy's OperationalError & co. deep inside a view. They are translated once, here: `init_app` installs
the error handler that answers `503` + `Retry-After` with a Kubernetes `Status` body (never 500), and every
such error (seen by the engine's `handle_error` hook or the handler) marks the store failed. `ping()` (behind
/readyz) then answers "not ready" until a probe write succeeds, so the replica recovers by itself.

At rest (SQLite): the database's directory is created 0700 and the file 0600 (SQLite gives its -wal and -shm
files the database's mode); `shared_key()` refuses to read keys from a database others can read.

Schemas are versioned per component. A component (audit, iam, ...) declares its tables on the shared
`metadata` and a list of migrations in its own module; `SCHEMAS` names those modules and `Store.migrate()`
applies what each component lacks, in order, inside one transaction per step, recording the version in
`schema_versions`. Adding a column later is one more function in that component's list.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from kagiya.errors import ConfigError, UpstreamUnavailable, status_body
from kagiya.private_files import ensure_private_dir, private_file, require_private

log = logging.getLogger("kagiya.store")

metadata = sa.MetaData()

schema_versions = sa.Table(
    "schema_versions",
    metadata,
    sa.Column("component", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

shared_keys = sa.Table(
    "shared_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=False),
)

store_probe = sa.Table(
    "store_probe",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)

#: Errors that mean "the store cannot be reached or written right now" (retry later), not a bug.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError,
)
#: Seconds a client is told to wait (Retry-After) when the store is unavailable.
RETRY_AFTER_SECONDS = 5
#: The probe write reserves this much space (then deletes it), so a nearly full disk fails the probe too.
PROBE_BYTES = 64 * 1024
#: /readyz probes a failed store at most this often.
PROBE_INTERVAL_SECONDS = 1.0

Migration = Callable[[Connection], None]
CONNECT_TIMEOUT_SECONDS = 5
#: Idle SQLite connections kept (a file database): at least the serving front's default handler threads.
SQLITE_POOL_SIZE = 20
#: Advisory lock id that serialises schema migrations on PostgreSQL ("kagiya" in ASCII, truncated).
MIGRATION_LOCK_KEY = 0x6B6167697961


@dataclass(frozen=True)
class Schema:
    """A component's migrations: step N (1-based) brings the component from version N-1 to N."""

    component: str
    migrations: Sequence[Migration]


def create_tables(*tables: sa.Table) -> Migration:
    """A migration step that creates `tables` (the usual first step of a component)."""

    def step(conn: Connection) -> None:
        metadata.create_all(conn, tables=list(tables))

    return step


#: The store's own tables (keys shared by every replica).
CORE_SCHEMA = Schema("core", [create_tables(shared_keys), create_tables(store_probe)])

#: Components with tables, as "module:ATTRIBUTE" naming a `Schema`. Imported when a store is opened.
SCHEMAS: list[str] = [
    "kagiya.store:CORE_SCHEMA",
    "kagiya.audit:SCHEMA",
    "kagiya.iam.schema:SCHEMA",
    "kagiya.console.sessions:SCHEMA",
]


class Store:
    """One engine per process; `begin()` gives a transaction, `connect()` a read connection."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = _make_engine(url, echo)
        self._migrated = False
        self._lock = threading.Lock()
        self._on_dispose: list[Callable[[], None]] = []
        #: Why the last store operation failed (empty while healthy); cleared only by a successful probe write.
        self.failure = ""
        self._next_probe = 0.0
        sa.event.listen(self.engine, "handle_error", self._on_engine_error)

    def _on_engine_error(self, context: Any) -> None:
        if getattr(context, "is_pre_ping", False):
            return  # a pooled connection from before a restart: the pool reconnects, nothing failed
        if context.is_disconnect or is_unavailable(context.sqlalchemy_exception or context.original_exception):
            self.mark_failed(context.original_exception)

    def mark_failed(self, exc: BaseException) -> None:
        if not self.failure:
            log.warning("store write or read failed: %s; /readyz reports not ready until a write succeeds",
                        _describe(exc))
        self.failure = _describe(exc)

    @property
    def sqlite_path(self) -> Path | None:
        database = self.engine.url.database if self.dialect == "sqlite" else None
        return Path(database) if database and database != ":memory:" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def begin(self) -> Any:
        return self.engine.begin()

    def connect(self) -> Any:
        return self.engine.connect()

    def migrate(self) -> dict[str, int]:
        """Create or upgrade every component's tables; safe to call from several processes at once."""
        with self._lock, self._migration_lock():
            versions = {}
            schemas = [_load_schema(ref) for ref in SCHEMAS]
            with self.engine.begin() as conn:
                metadata.create_all(conn, tables=[schema_versions])
            for schema in schemas:
                versions[schema.component] = self._migrate_component(schema)
            self._migrated = True
            return versions

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Serialise migrators across processes (replicas starting together): two creating the same table at once
        fail with "already exists". PostgreSQL: a session advisory lock; SQLite: a lock file beside the database."""
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    conn.commit()
            return
        database = self.sqlite_path
        if database is None:
            yield
            return
        lock_path = Path(f"{database}.migrate.lock")
        private_file(lock_path)
        with open(lock_path, "a+b") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _migrate_component(self, schema: Schema) -> int:
        while True:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(schema_versions.c.version).where(schema_versions.c.component == schema.component)
                ).first()
                current = row[0] if row else 0
                if current > len(schema.migrations):
                    raise ConfigError(
                        f"store schema {schema.component} is at version {current}, newer than this kagiya "
                        f"({len(schema.migrations)}); upgrade kagiya"
                    )
                if current == len(schema.migrations):
                    return current
                schema.migrations[current](conn)
                if row:
                    conn.execute(
                        schema_versions.update()
                        .where(schema_versions.c.component == schema.component)
                        .values(version=current + 1)
                    )
                else:
                    conn.execute(schema_versions.insert().values(component=schema.component, version=1))

    def shared_key(self, name: str, size: int = 32) -> bytes:
        """A random secret every replica sharing this store agrees on, made by whichever asks first.

        For keys that must match across processes but need no rotation by hand (HMAC keys for fingerprints and
        session tokens). Kept in the database, so whoever can read the database can read them: a SQLite file
        that group or others can read is refused (ConfigError), as the keyring refuses its file.
        """
        if self.sqlite_path is not None:
            require_private(self.sqlite_path, "the database holding shared keys")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(shared_keys.c.key).where(shared_keys.c.name == name)).first()
        if row:
            return bytes(row[0])
        try:
            with self.engine.begin() as conn:
                conn.execute(shared_keys.insert().values(name=name, key=os.urandom(size)))
        except sa.exc.IntegrityError:
            pass  # another replica made it first: use theirs
        with self.engine.connect() as conn:
            return bytes(conn.execute(sa.select(shared_keys.c.key).where(shared_keys.c.name == name)).scalar_one())

    def ping(self) -> None:
        """Readiness. Raise UpstreamUnavailable unless the database answers a trivial query (bounded by the
        connect timeout and, on PostgreSQL, TCP keepalives) and, after a failure, a probe write succeeds."""
        if self.failure:
            now = time.monotonic()
            if now < self._next_probe:
                raise UpstreamUnavailable(f"store unavailable: {self.failure}")
            self._next_probe = now + PROBE_INTERVAL_SECONDS
            try:
                self.probe_write()
            except sa.exc.SQLAlchemyError as exc:
                self.mark_failed(exc)
                raise UpstreamUnavailable(f"store unavailable: {self.failure}") from None
            log.info("store writes work again (was: %s)", self.failure)
            self.failure = ""
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise UpstreamUnavailable(f"store unavailable: {type(exc).__name__}") from None

    def probe_write(self) -> None:
        """A real write that needs fresh space: insert a row of PROBE_BYTES random bytes, then delete it."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(store_probe).where(store_probe.c.id == 1))
            conn.execute(store_probe.insert().values(id=1, payload=os.urandom(PROBE_BYTES)))
        with self.engine.begin() as conn:
            conn.execute(sa.delete(store_probe).where(store_probe.c.id == 1))

    def on_dispose(self, callback: Callable[[], None]) -> None:
        """Run `callback` (e.g. drain the audit writer) before the engine is disposed."""
        self._on_dispose.append(callback)

    def dispose(self) -> None:
        callbacks, self._on_dispose = self._on_dispose, []
        for callback in callbacks:
            callback()
        self.engine.dispose()


#: SQLSTATEs that mean "cannot write here now" but that drivers raise as InternalError: 25006 read_only_sql_transaction
#: (a standby reached after a failover, or `default_transaction_read_only` set on the primary).
UNAVAILABLE_SQLSTATES = frozenset({"25006"})


def is_unavailable(exc: BaseException | None) -> bool:
    """True for errors that mean the store is down, locked, full or read-only (retry later), not a bug."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3 / psycopg2
        return code in UNAVAILABLE_SQLSTATES
    return False


def _describe(exc: BaseException) -> str:
    """A short, secret-free description (a PostgreSQL URL or query text never leaves here)."""
    inner = getattr(exc, "orig", None) or exc
    first = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    known = ("database or disk is full", "readonly database", "database is locked", "Connection refused",
             "disk I/O error", "server closed the connection", "terminating connection", "timeout")
    hint = next((k for k in known if k.lower() in first.lower()), "")
    return f"{type(inner).__name__}" + (f" ({hint})" if hint else "")


def init_app(app: Any) -> None:
    """Answer store failures as 503 + Retry-After with a Status body, from any route (one place, not per view)."""
    from flask import g, jsonify

    def unavailable(exc: BaseException) -> Any:
        if not is_unavailable(exc):  # an InternalError that is a bug, not an outage: the app's 500 answer
            log.error("unhandled error", exc_info=exc)
            message = f"internal error (request id {g.get('request_id', '-')})"
            return jsonify(status_body(500, "InternalError", message)), 500
        store = app.extensions.get("kagiya.store")
        if store is not None:
            store.mark_failed(exc)
        log.warning("request failed: the store is unavailable: %s", _describe(exc))
        body = status_body(503, "ServiceUnavailable", "the store is unavailable; retry later",
                           {"retryAfterSeconds": RETRY_AFTER_SECONDS})
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for kind in (*UNAVAILABLE_ERRORS, sa.exc.InternalError):
        app.register_error_handler(kind, unavailable)


def _load_schema(ref: str) -> Schema:
    module, _, attr = ref.partition(":")
    schema = getattr(importlib.import_module(module), attr)
    if not isinstance(schema, Schema):
        raise TypeError(f"{ref} is not a Schema")
    return schema


def _make_engine(url: str, echo: bool) -> Engine:
    """`hide_parameters`: a failed statement's error (logged with its traceback by the 500 handler) never quotes
    the values it carried (shared HMAC keys, session CSRF tokens, policy bodies)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"database_url {url.split('@')[-1]!r} is not a SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            ensure_private_dir(Path(parsed.database).parent)
            private_file(Path(parsed.database))
            for leftover in ("-wal", "-shm", "-journal"):  # left by a killed process; SQLite reuses them as they are
                private_file(Path(parsed.database + leftover), create=False)
        # SQLAlchemy's default pool (5 + 10 overflow) is smaller than the serving front's 16 handler threads plus the
        # background writers, so busy request threads queued for a connection; SQLite connections are cheap.
        in_memory = not parsed.database or parsed.database == ":memory:" or "mode=memory" in parsed.database
        pool: dict[str, Any] = {} if in_memory else {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 16}
        engine = sa.create_engine(url, echo=echo, hide_parameters=True, **pool,
                                  connect_args={"timeout": 10, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # A partitioned database must not hold request threads for minutes: bound the connect, and let TCP
        # keepalives and the user timeout end a connection whose server went silent.
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "keepalives": 1, "keepalives_idle": 10,
                        "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 15_000}
        connect_args = {k: v for k, v in connect_args.items() if k not in parsed.query}
    try:
        return sa.create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True, pool_size=5,
                                max_overflow=10, pool_timeout=10,
                                connect_args=connect_args)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"database driver {exc.name!r} is not installed (pip install 'kagiya[postgres]')") from None
