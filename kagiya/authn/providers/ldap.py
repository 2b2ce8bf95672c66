"""Provider `ldap`: a directory user's name and password, checked by binding as that user (ldap3, RFC 4511/4515).

The token is Guard's format: base64 (standard alphabet) of `username:password`. The review:
1. refuses an empty password before any I/O (an empty simple bind is an *unauthenticated* bind that many
   servers accept, RFC 4513 §5.1.2 — Guard let it through);
2. binds as the service account and searches `user_search_base` with `user_filter`, the username inserted with
   RFC 4515 escaping (`escape_filter_chars`), so `*)(uid=*` is a literal name that matches nothing (Guard did not
   escape); exactly one entry must match;
3. binds as that entry's DN with the password (on a separate pooled connection, so the service connections keep
   their identity);
4. searches groups with `group_filter` (`{dn}` and `{username}` placeholders, both escaped); with `nested_groups`,
   follows groups that are members of groups, breadth-first, cycle-safe and depth-bounded.
Every "no" reads the same ("invalid username or password") and costs the same bind round trip (an unknown user
gets a bind to a DN that does not exist), so neither replies nor timing reveal which users exist.
Connections are pooled and reused; each review has one time budget (`timeout`); a server that is down, hung or
answers `busy`/`unavailable` raises UpstreamUnavailable. `ldaps://` URLs and StartTLS verify the server's
certificate against `ca_file` (or system CAs); plain `ldap://` without StartTLS is only allowed to loopback
addresses unless `allow_plaintext` says otherwise. See docs/authn-providers.md.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kagiya.authn.providers._http import Deadline
from kagiya.authn.providers._ldap_pool import ConnectionPool, LdapTarget, TlsOptions, import_ldap3
from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.shapes import TokenShape
from kagiya.config import from_mapping, is_loopback
from kagiya.errors import ConfigError

log = logging.getLogger("kagiya.authn.providers.ldap")

SERVICE = "LDAP"
BAD_CREDENTIALS = "invalid username or password"
MAX_USERNAME_CHARS = 256
MAX_PASSWORD_CHARS = 1024
#: Group DNs per nested-group query.
NESTED_BATCH = 50


@dataclass(frozen=True)
class LdapOptions:
    """`authn.providers[]` entry with `type: ldap`; `name` names the directory (Guard's client-cert `CN=`)."""

    #: Servers tried in order: `ldap://host[:389]` or `ldaps://host[:636]`.
    urls: tuple[str, ...] = ()
    #: Service account that searches users and groups; empty means anonymous search.
    bind_dn: str = ""
    bind_password: str = ""
    #: File holding the service password (wins over bind_password; keeps it out of the config file).
    bind_password_file: str = ""
    start_tls: bool = False
    #: PEM CA bundle for ldaps:// and StartTLS; empty means the system CAs.
    ca_file: str = ""
    #: Skip certificate verification (testing only; logged as a warning at start-up).
    insecure_skip_verify: bool = False
    #: Allow passwords over plain ldap:// to a non-loopback server.
    allow_plaintext: bool = False
    user_search_base: str = ""
    #: `{username}` is replaced by the escaped username.
    user_filter: str = "(&(objectClass=person)(uid={username}))"
    #: The entry's attribute that becomes the Kubernetes username (the directory's spelling, not the typed one).
    username_attribute: str = "uid"
    #: The entry's attribute that becomes the uid (OpenLDAP `entryUUID`, Active Directory `objectGUID`).
    uid_attribute: str = "entryUUID"
    #: Empty: no group lookup.
    group_search_base: str = ""
    #: `{dn}` (the user's DN) and `{username}` (the username attribute), both escaped.
    group_filter: str = (
        "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))"
        "(&(objectClass=posixGroup)(memberUid={username})))"
    )
    group_name_attribute: str = "cn"
    nested_groups: bool = False
    #: Finds groups that contain the group `{dn}` (used level by level when nested_groups is on).
    nested_group_filter: str = (
        "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=groupOfUniqueNames)(uniqueMember={dn})))"
    )
    max_nesting_depth: int = 10
    #: Seconds for the whole review (connect, searches, bind).
    timeout: float = 5.0
    #: Connections kept per purpose (searches as the service account; binds as users).
    pool_size: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 seconds")
        if self.pool_size < 1 or not 0 <= self.max_nesting_depth <= 100:
            raise ValueError("pool_size must be at least 1 and max_nesting_depth between 0 and 100")


class LdapProvider:
    """Built once per directory; its connection pools are reused by every review."""

    #: The password goes to the organisation's own directory, which the admin configured for exactly that.
    third_party = False

    def __init__(self, name: str, options: LdapOptions, *, targets: list[LdapTarget], bind_password: str) -> None:
        self.name = name
        self.options = options
        tls = TlsOptions(options.start_tls, options.ca_file, options.insecure_skip_verify)
        self._search_pool = ConnectionPool(
            targets, tls, bind_dn=options.bind_dn, bind_password=bind_password, size=options.pool_size
        )
        self._bind_pool = ConnectionPool(targets, tls, bind_dn="", bind_password="", size=options.pool_size)

    def close(self) -> None:
        self._search_pool.close()
        self._bind_pool.close()

    def claims(self, shape: TokenShape) -> bool:
        """Guard's LDAP token: base64 of `username:password`."""
        return shape.basic_credentials

    def authenticate(self, token: str, audiences: Sequence[str] = ()) -> User | Rejected:
        """Raises UpstreamUnavailable when the directory is down, hung or busy."""
        del audiences  # passwords carry no audience; the apiserver applies its own (implicit) audiences.
        creds = parse_token(token)
        if isinstance(creds, Rejected):
            return creds
        username, password = creds
        opts = self.options
        deadline = Deadline(opts.timeout, SERVICE)

        user_filter = opts.user_filter.replace("{username}", escape(username))
        attrs = [opts.username_attribute, opts.uid_attribute]
        entries = self._search_pool.run(deadline, lambda c: c.search(opts.user_search_base, user_filter, attrs, 2))
        if len(entries) != 1:
            log.info("ldap: %d entries match the username", len(entries), extra={"provider": "ldap"})
            # Spend the same bind round trip as for a wrong password, so timing does not tell who exists.
            decoy = f"cn=kagiya-no-such-user,{opts.user_search_base}"
            self._bind_pool.run(deadline, lambda c: c.check_password(decoy, password))
            return Rejected(BAD_CREDENTIALS)
        dn, found = entries[0]
        if not self._bind_pool.run(deadline, lambda c: c.check_password(dn, password)):
            log.info("ldap: bind refused for %s", dn, extra={"provider": "ldap"})
            return Rejected(BAD_CREDENTIALS)

        canonical = first_text(found, opts.username_attribute) or username
        uid = first_text(found, opts.uid_attribute) or dn
        groups = self._groups(dn, canonical, deadline) if opts.group_search_base else []
        return User(username=canonical, uid=uid, groups=tuple(groups))

    def _groups(self, user_dn: str, username: str, deadline: Deadline) -> list[str]:
        opts = self.options
        flt = opts.group_filter.replace("{dn}", escape(user_dn)).replace("{username}", escape(username))
        found = self._group_search(flt, deadline)
        names = dict(found)
        frontier = list(found)
        depth = 0
        while opts.nested_groups and frontier and depth < opts.max_nesting_depth:
            depth += 1
            parents: dict[str, str] = {}
            for i in range(0, len(frontier), NESTED_BATCH):  # one OR-filter per batch keeps filters small
                batch = frontier[i : i + NESTED_BATCH]
                parts = "".join(opts.nested_group_filter.replace("{dn}", escape(dn)) for dn in batch)
                parents.update(self._group_search(f"(|{parts})", deadline))
            frontier = [dn for dn in parents if dn not in names]  # cycle-safe: each group visited once
            names.update({dn: parents[dn] for dn in frontier})
        return sorted({n for n in names.values() if n})

    def _group_search(self, flt: str, deadline: Deadline) -> dict[str, str]:
        """Normalised group DN -> group name."""
        attr = self.options.group_name_attribute
        entries = self._search_pool.run(deadline, lambda c: c.search_all(self.options.group_search_base, flt, [attr]))
        return {dn.lower(): first_text(attrs, attr) for dn, attrs in entries}


def parse_token(token: str) -> tuple[str, str] | Rejected:
    """Guard's LDAP token: base64 (standard alphabet, padded) of `username:password`."""
    if not token or len(token) > 4 * (MAX_USERNAME_CHARS + MAX_PASSWORD_CHARS):
        return Rejected("invalid LDAP token")
    try:
        text = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return Rejected("invalid LDAP token")
    username, sep, password = text.partition(":")
    if not sep or not username or len(username) > MAX_USERNAME_CHARS or len(password) > MAX_PASSWORD_CHARS:
        return Rejected("invalid LDAP token")
    if not username.isprintable():
        return Rejected("invalid LDAP token")
    if not password:
        return Rejected("empty password refused")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return Rejected("invalid LDAP token")  # SASLprep (RFC 4013) forbids control characters in passwords
    return username, password


def escape(value: str) -> str:
    from ldap3.utils.conv import escape_filter_chars

    return str(escape_filter_chars(value))


def first_text(attrs: Mapping[str, list[bytes]], name: str) -> str:
    """First value of attribute `name` (case-insensitive) as text; a 16-byte binary value is a GUID."""
    values = next((v for k, v in attrs.items() if k.lower() == name.lower()), None)
    if not values:
        return ""
    raw = values[0]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else raw.hex()


def _check_filter(template: str, key: str, placeholders: tuple[str, ...]) -> None:
    from ldap3.core.exceptions import LDAPException
    from ldap3.operation.search import parse_filter

    if not any(p in template for p in placeholders):
        raise ConfigError(f"config key {key}: must contain {' or '.join(placeholders)}")
    sample = template
    for p in placeholders:
        sample = sample.replace(p, "x")
    try:
        parse_filter(sample, None, False, False, None, False)
    except LDAPException:
        raise ConfigError(f"config key {key}: not a valid LDAP filter: {template!r}") from None


def _targets(opts: LdapOptions, prefix: str) -> list[LdapTarget]:
    if not opts.urls:
        raise ConfigError(f"config key {prefix}.urls: at least one ldap:// or ldaps:// URL is required")
    targets = []
    for i, url in enumerate(opts.urls):
        parts = urlsplit(url)
        key = f"{prefix}.urls[{i}]"
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"config key {key}: bad port in {url!r}") from None
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(f"config key {key}: expected ldap://host[:port] or ldaps://host[:port], got {url!r}")
        use_ssl = parts.scheme == "ldaps"
        if not use_ssl and not opts.start_tls and not opts.allow_plaintext and not is_loopback(parts.hostname):
            raise ConfigError(
                f"config key {key}: passwords would cross the network in clear; use ldaps://, start_tls: true, "
                "or allow_plaintext: true"
            )
        targets.append(LdapTarget(parts.hostname, port or (636 if use_ssl else 389), use_ssl))
    return targets


def from_config(name: str, options: Mapping[str, Any]) -> LdapProvider:
    """Build the provider for directory `name`; raises ConfigError naming the bad key."""
    prefix = f"authn.providers.ldap/{name}"
    import_ldap3()
    opts = from_mapping(LdapOptions, {k: v for k, v in options.items() if k not in ("type", "name")}, prefix)
    targets = _targets(opts, prefix)
    if not opts.user_search_base:
        raise ConfigError(f"config key {prefix}.user_search_base: required (the DN under which users are searched)")
    _check_filter(opts.user_filter, f"{prefix}.user_filter", ("{username}",))
    _check_filter(opts.group_filter, f"{prefix}.group_filter", ("{dn}", "{username}"))
    _check_filter(opts.nested_group_filter, f"{prefix}.nested_group_filter", ("{dn}",))
    password = opts.bind_password
    if opts.bind_password_file:
        try:
            with open(opts.bind_password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"config key {prefix}.bind_password_file: {exc.strerror}") from None
    if opts.bind_dn and not password:
        raise ConfigError(f"config key {prefix}.bind_password: required with bind_dn (an empty one binds anonymously)")
    if opts.ca_file:
        try:
            open(opts.ca_file, "rb").close()
        except OSError as exc:
            raise ConfigError(f"config key {prefix}.ca_file: {exc.strerror}") from None
    if opts.insecure_skip_verify:
        log.warning("ldap %s: TLS certificate verification is OFF", name, extra={"provider": "ldap"})
    return LdapProvider(name, opts, targets=targets, bind_password=password)

