"""Pooled ldap3 connections for the LDAP provider, each operation bounded by the review's deadline.

Why not ldap3's own `ServerPool`: with `active=N` it sleeps `POOLING_LOOP_TIMEOUT` (10 s) after a failed cycle
before giving up, which would hold a review far past its timeout; and its REUSABLE strategy shares one identity
across connections. Here:
- servers are tried in order, each connect bounded by the time left (`connect_timeout`);
- a pooled connection is reused while healthy; a connection that fails on reuse (the server restarted) is
  dropped and the operation retried once on a fresh one; a fresh failure is UpstreamUnavailable;
- before every operation the socket timeout is set to the time left, so a hung server (accepting but silent)
  costs at most the review's timeout;
- StartTLS is done on every new connection before any bind, and a connection that is no longer under TLS
  is never reused for a password.
"""

from __future__ import annotations

import logging
import math
import queue
import socket
import ssl
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kagiya.authn.providers._http import Deadline
from kagiya.errors import UpstreamUnavailable

log = logging.getLogger("kagiya.authn.providers.ldap")

T = TypeVar("T")

#: Bind result codes (RFC 4511) that mean "try later", not "wrong password".
TRANSIENT_CODES = {3, 11, 51, 52, 80}
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
PAGE_SIZE = 500
MAX_PAGES = 200


@dataclass(frozen=True)
class LdapTarget:
    host: str
    port: int
    use_ssl: bool


@dataclass(frozen=True)
class TlsOptions:
    start_tls: bool = False
    ca_file: str = ""
    insecure_skip_verify: bool = False


class Session:
    """One exclusive ldap3 connection, as the pool hands it to an operation."""

    def __init__(self, conn: Any, deadline: Deadline) -> None:
        self.conn = conn
        self.deadline = deadline

    def search(self, base: str, flt: str, attributes: list[str], size_limit: int) -> list[tuple[str, dict[str, Any]]]:
        """At most `size_limit` entries as (dn, raw attributes) — reaching the limit is fine (the caller asked for
        a few to detect ambiguity). Raises UpstreamUnavailable for a failed or refused search."""
        self._search(base, flt, attributes, size_limit=size_limit)
        self._check(base, allowed=(0, 4))  # success, sizeLimitExceeded
        return self._entries()

    def search_all(self, base: str, flt: str, attributes: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Every matching entry, page by page (RFC 2696 simple paged results), so a server size limit per
        request does not silently truncate a group list. A truncated answer is UpstreamUnavailable."""
        entries: list[tuple[str, dict[str, Any]]] = []
        cookie: bytes | None = None
        for _ in range(MAX_PAGES):
            self._search(base, flt, attributes, paged_size=PAGE_SIZE, paged_cookie=cookie)
            self._check(base, allowed=(0,))
            entries += self._entries()
            controls = (self.conn.result or {}).get("controls") or {}
            cookie = ((controls.get(PAGED_RESULTS_OID) or {}).get("value") or {}).get("cookie")
            if not cookie:
                return entries
        raise UpstreamUnavailable("LDAP listed too many groups")

    def _search(self, base: str, flt: str, attributes: list[str], **kw: Any) -> None:
        from ldap3 import SUBTREE

        _arm(self.conn, self.deadline)
        self.conn.search(base, flt, search_scope=SUBTREE, attributes=attributes,
                         time_limit=max(1, int(self.deadline.remaining())), **kw)

    def _check(self, base: str, allowed: tuple[int, ...]) -> None:
        code = (self.conn.result or {}).get("result")
        if code not in allowed:
            description = (self.conn.result or {}).get("description", "")
            log.warning("ldap: search under %s failed: %s (%s)", base, description, code, extra={"provider": "ldap"})
            raise UpstreamUnavailable("LDAP search failed")

    def _entries(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (str(e["dn"]), dict(e.get("raw_attributes") or {}))
            for e in (self.conn.response or [])
            if e.get("type") == "searchResEntry"
        ]

    def check_password(self, dn: str, password: str) -> bool:
        """Simple bind as `dn`. False for a refused bind; UpstreamUnavailable for a transient one."""
        from ldap3.core.exceptions import LDAPSASLPrepError

        _arm(self.conn, self.deadline)
        try:
            ok = self.conn.rebind(user=dn, password=password, read_server_info=False)
        except LDAPSASLPrepError:
            # ldap3 prepares passwords with SASLprep (RFC 4013) before sending anything; one it cannot prepare
            # can never bind, and the connection is untouched.
            return False
        if ok:
            return True
        code = (self.conn.result or {}).get("result")
        if code in TRANSIENT_CODES:
            log.warning("ldap: bind answered %s", code, extra={"provider": "ldap"})
            raise UpstreamUnavailable("LDAP server is busy")
        return False


class ConnectionPool:
    """Up to `size` ldap3 SYNC connections bound as one identity (a service DN, or none for password checks)."""

    def __init__(self, targets: list[LdapTarget], tls: TlsOptions, *, bind_dn: str, bind_password: str,
                 size: int) -> None:
        self.targets = targets
        self.tls = tls
        self.bind_dn = bind_dn
        self.bind_password = bind_password
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._tls: Any = None

    def close(self) -> None:
        while True:
            try:
                _quietly_close(self._idle.get_nowait())
            except queue.Empty:
                return

    def run(self, deadline: Deadline, operation: Callable[[Session], T]) -> T:
        """Run `operation` on a pooled connection; retry once on a fresh one if a reused connection went stale."""
        from ldap3.core.exceptions import LDAPException

        if not self._slots.acquire(timeout=deadline.remaining()):
            raise UpstreamUnavailable("LDAP did not answer in time")
        try:
            conn, reused = self._checkout(deadline)
            while True:
                try:
                    result = operation(Session(conn, deadline))
                except UpstreamUnavailable:
                    _quietly_close(conn)
                    raise
                except (LDAPException, OSError) as exc:
                    _quietly_close(conn)
                    if reused:
                        log.info("ldap: pooled connection failed (%s); retrying on a new one", type(exc).__name__,
                                 extra={"provider": "ldap"})
                        conn, reused = self._connect(deadline), False
                        continue
                    raise _unavailable(exc, deadline) from None
                self._idle.put(conn)
                return result
        finally:
            self._slots.release()

    def _checkout(self, deadline: Deadline) -> tuple[Any, bool]:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(deadline), False
            if not conn.closed and (not self.tls.start_tls or conn.tls_started):
                return conn, True
            _quietly_close(conn)

    def _tls_config(self) -> Any:
        """One ldap3 `Tls` per pool whose handshake verifies the chain *and* the host name with Python's own
        `SSLContext` (ldap3 2.9 checks names with `ssl.match_hostname`, deprecated and gone in Python 3.12)."""
        if self._tls is None:
            from ldap3 import Tls

            ctx = ssl.create_default_context(cafile=self.tls.ca_file or None)
            if self.tls.insecure_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE

            class VerifiedTls(Tls):
                def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
                    connection.socket = ctx.wrap_socket(
                        connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
                        server_hostname=connection.server.host,
                    )

            self._tls = VerifiedTls(validate=ctx.verify_mode)
        return self._tls

    def _connect(self, deadline: Deadline) -> Any:
        """A new connection to the first server that answers, StartTLS'd and bound as the pool's identity."""
        from ldap3 import NONE, SYNC, Connection, Server
        from ldap3.core.exceptions import LDAPException

        tls = self._tls_config()
        last: BaseException | None = None
        for target in self.targets:
            left = deadline.remaining()
            server = Server(target.host, port=target.port, use_ssl=target.use_ssl, tls=tls, get_info=NONE,
                            connect_timeout=left)
            conn = Connection(  # ldap3 packs receive_timeout as an int; _arm() sets the exact time left per operation
                server, user=self.bind_dn or None, password=self.bind_password or None, client_strategy=SYNC,
                read_only=True, receive_timeout=math.ceil(left), raise_exceptions=False, auto_referrals=False,
            )
            try:
                conn.open(read_server_info=False)
                if self.tls.start_tls:
                    _arm(conn, deadline)
                    if not conn.start_tls(read_server_info=False):
                        raise _StartTlsRefused("StartTLS refused")
                if self.bind_dn:
                    _arm(conn, deadline)
                    if not conn.bind(read_server_info=False):
                        code = (conn.result or {}).get("result")
                        _quietly_close(conn)
                        if code in TRANSIENT_CODES:
                            raise UpstreamUnavailable("LDAP server is busy")
                        log.error("ldap: the service account bind was refused (%s); check bind_dn and its password",
                                  (conn.result or {}).get("description"), extra={"provider": "ldap"})
                        raise UpstreamUnavailable("LDAP service account bind failed")
                return conn
            except (LDAPException, OSError, _StartTlsRefused) as exc:
                _quietly_close(conn)
                log.warning("ldap: %s:%d unusable: %s", target.host, target.port, _describe(exc),
                            extra={"provider": "ldap"})
                last = exc
        raise _unavailable(last, deadline)


def import_ldap3() -> None:
    """Import ldap3 once, at provider construction, hiding one known import-time warning.

    ldap3 2.9.1 reads `pyasn1`'s `tagMap`/`typeMap`, which pyasn1 >= 0.6.2 deprecates with a DeprecationWarning
    at import; it is harmless and not ours to fix, but under `-W error` it would stop the service starting.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(tagMap|typeMap) is deprecated", category=DeprecationWarning)
        import ldap3  # noqa: F401
        import ldap3.operation.search  # noqa: F401
        import ldap3.utils.conv  # noqa: F401


class _StartTlsRefused(Exception):
    pass


def _arm(conn: Any, deadline: Deadline) -> None:
    """Bound the next socket operation by the time left in the review."""
    sock = getattr(conn, "socket", None)
    if sock is not None:
        sock.settimeout(deadline.remaining())


def _unavailable(exc: BaseException | None, deadline: Deadline) -> UpstreamUnavailable:
    timed_out = isinstance(exc, socket.timeout) or "timed out" in str(exc).lower()
    try:
        deadline.remaining()
    except UpstreamUnavailable:
        timed_out = True
    if exc is not None:
        log.warning("ldap: unavailable: %s", _describe(exc), extra={"provider": "ldap"})
    return UpstreamUnavailable("LDAP did not answer in time" if timed_out else "LDAP server is unreachable")


def _describe(exc: BaseException) -> str:
    # ldap3 messages name the server and the socket error, never the password.
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _quietly_close(conn: Any) -> None:
    """Unbind if possible and always close the socket (ldap3 leaves it open when `open()` failed half-way)."""
    from ldap3.core.exceptions import LDAPException

    sock = getattr(conn, "socket", None)
    try:
        if sock is not None:
            sock.settimeout(0.2)
        conn.unbind()
    except (LDAPException, OSError, ValueError):  # a broken connection may fail to say goodbye; it is gone anyway
        pass
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
