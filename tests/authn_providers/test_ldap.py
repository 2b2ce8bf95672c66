"""LDAP provider against a real OpenLDAP slapd: bind checks, escaped filters, groups (nested, cyclic), pooling,
down/hung servers, TLS, and start-up validation."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kagiya.authn.providers import build_provider
from kagiya.authn.providers.base import Rejected, User
from kagiya.authn.providers.ldap import LdapProvider, parse_token
from kagiya.errors import ConfigError, UpstreamUnavailable
from tests.support.servers import free_port
from tests.support.slapd import (
    BASE_DN,
    BULK_GROUPS,
    GROUPS_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SIZE_LIMIT,
    Slapd,
    _make_tls,
    start_slapd,
    user_dn,
)

BAD = Rejected("invalid username or password")


def token(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def options(server: Slapd, **extra: Any) -> dict[str, Any]:
    return {
        "urls": [server.url],
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": BASE_DN,
        "group_search_base": GROUPS_DN,
        "timeout": 2,
        **extra,
    }


_built: list[LdapProvider] = []


def provider(server: Slapd, **extra: Any) -> LdapProvider:
    p = build_provider("ldap", "corp", options(server, **extra))
    assert isinstance(p, LdapProvider)
    _built.append(p)
    return p


@pytest.fixture(autouse=True)
def _close_providers() -> Iterator[None]:
    """Providers hold pooled sockets; close the ones a test built (the service closes its own at exit)."""
    mark = len(_built)
    yield
    while len(_built) > mark:
        _built.pop().close()


@pytest.fixture(scope="module")
def ldap(slapd: Slapd) -> Iterator[LdapProvider]:
    p = build_provider("ldap", "corp", options(slapd))
    assert isinstance(p, LdapProvider)
    yield p
    p.close()


@pytest.fixture(scope="module")
def nested(slapd: Slapd) -> Iterator[LdapProvider]:
    p = build_provider("ldap", "corp", options(slapd, nested_groups=True))
    assert isinstance(p, LdapProvider)
    yield p
    p.close()


# ---- who you are ---------------------------------------------------------------------------------------------------
def test_valid_password_gives_username_entry_uuid_and_direct_groups(ldap: LdapProvider) -> None:
    user = ldap.authenticate(token("alice", "alice-pw"))
    assert isinstance(user, User)
    assert user.username == "alice"
    assert len(user.uid) == 36 and user.uid.count("-") == 4  # entryUUID: stable across renames
    assert user.groups == ("developers", "ops")  # groupOfNames member + posixGroup memberUid


def test_username_is_the_directorys_spelling(ldap: LdapProvider) -> None:
    upper = ldap.authenticate(token("ALICE", "alice-pw"))
    lower = ldap.authenticate(token("alice", "alice-pw"))
    assert isinstance(upper, User) and isinstance(lower, User)
    assert upper.username == "alice" and upper.uid == lower.uid


def test_nested_groups_are_followed_transitively(nested: LdapProvider) -> None:
    user = nested.authenticate(token("alice", "alice-pw"))
    assert isinstance(user, User)
    assert user.groups == ("developers", "everyone", "ops", "platform")


def test_group_cycles_terminate(nested: LdapProvider) -> None:
    user = nested.authenticate(token("carol", "carol-pw"))
    assert isinstance(user, User)
    assert user.groups == ("everyone", "loop-a", "loop-b", "platform")


def test_nesting_depth_is_bounded(slapd: Slapd) -> None:
    user = provider(slapd, nested_groups=True, max_nesting_depth=1).authenticate(token("alice", "alice-pw"))
    assert isinstance(user, User) and user.groups == ("developers", "ops", "platform")


def test_groups_beyond_the_servers_size_limit_are_all_read_by_paging(slapd: Slapd, nested: LdapProvider) -> None:
    import ldap3

    # Without paging, slapd stops at its size limit: a client that did not page would get a partial list.
    conn = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    try:
        conn.search(GROUPS_DN, f"(member={user_dn('grace')})", attributes=["cn"])
        assert conn.result["description"] == "sizeLimitExceeded" and len(conn.entries) == SIZE_LIMIT
    finally:
        conn.unbind()
    user = nested.authenticate(token("grace", "grace-pw"))
    assert isinstance(user, User)
    assert len(user.groups) == BULK_GROUPS + 1  # every bulk group, plus bulk-parent found through 260 nested DNs
    assert {"bulk-000", "bulk-259", "bulk-parent"} <= set(user.groups)


def test_user_without_groups_and_without_group_lookup(slapd: Slapd, ldap: LdapProvider) -> None:
    dan = ldap.authenticate(token("dan", "dan-pw"))
    assert isinstance(dan, User) and dan.username == "dan" and dan.groups == ()
    bare = provider(slapd, group_search_base="").authenticate(token("alice", "alice-pw"))
    assert isinstance(bare, User) and bare.groups == ()


def test_uid_attribute_is_configurable(slapd: Slapd) -> None:
    user = provider(slapd, uid_attribute="uidNumber").authenticate(token("bob", "bob-pw"))
    assert isinstance(user, User) and user.uid == "1002"


# ---- who you are not -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong"), ("alice", "bob-pw"), ("nobody", "x"), ("twin", "twin-pw"), ("alice", "alice-pw ")],
    ids=["wrong-password", "other-users-password", "unknown-user", "ambiguous-user", "trailing-space"],
)
def test_wrong_credentials_are_rejected_alike(ldap: LdapProvider, username: str, password: str) -> None:
    assert ldap.authenticate(token(username, password)) == BAD


def test_unknown_user_costs_a_bind_like_a_wrong_password(slapd: Slapd) -> None:
    """No early return for unknown or ambiguous users: a decoy bind keeps the timing alike."""
    for name in ("nobody", "twin"):
        p = provider(slapd)
        assert p.authenticate(token(name, "x")) == BAD
        assert p._bind_pool._idle.qsize() == 1  # a bind connection was used


def test_empty_password_is_refused_before_any_bind(ldap: LdapProvider) -> None:
    # slapd would accept an empty simple bind as an unauthenticated bind (RFC 4513 5.1.2): never get that far.
    assert ldap.authenticate(token("alice", "")) == Rejected("empty password refused")


@pytest.mark.parametrize(
    "raw", ["alice:alice-pw", "not base64!", base64.b64encode(b"no-colon").decode(), base64.b64encode(b":pw").decode(),
            base64.b64encode(b"\xff\xfe:pw").decode(), base64.b64encode(b"a\x00b:pw").decode(), "", "x" * 20000],
    ids=["raw-user-colon-password", "not-base64", "no-colon", "empty-user", "not-utf8", "nul", "empty", "huge"],
)
def test_malformed_tokens_are_rejected(ldap: LdapProvider, raw: str) -> None:
    assert ldap.authenticate(raw) == Rejected("invalid LDAP token")


@pytest.mark.parametrize("password", ["\x00", "a\x01b", "tab\there", "\x7f"])
def test_passwords_with_control_characters_are_rejected_not_503(ldap: LdapProvider, password: str) -> None:
    assert ldap.authenticate(token("alice", password)) == Rejected("invalid LDAP token")


def test_password_saslprep_cannot_prepare_is_a_rejection(slapd: Slapd, ldap: LdapProvider) -> None:
    # U+0340 is prohibited by SASLprep (RFC 4013 2.3 / RFC 3454 C.8); ldap3 refuses it before sending.
    assert ldap.authenticate(token("alice", "pw\u0340")) == BAD
    assert isinstance(ldap.authenticate(token("alice", "alice-pw")), User)  # the pooled connection is fine


def test_password_containing_colons_is_kept_whole() -> None:
    assert parse_token(token("alice", "a:b:c")) == ("alice", "a:b:c")


# ---- injection -----------------------------------------------------------------------------------------------------
def test_filter_injection_matches_nothing(slapd: Slapd, ldap: LdapProvider) -> None:
    import ldap3

    evil = "*)(uid=*"
    for password in ("alice-pw", "bob-pw", "x"):
        assert ldap.authenticate(token(evil, password)) == BAD
    assert ldap.authenticate(token("*", "alice-pw")) == BAD
    assert ldap.authenticate(token("alice)(|(uid=*", "alice-pw")) == BAD
    # The same username pasted unescaped into the default filter would match every person; escaped, it matches none.
    conn = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    try:
        conn.search(BASE_DN, f"(&(objectClass=person)(uid={evil}))", attributes=["uid"])
        assert len(conn.entries) >= 5
        conn.search(BASE_DN, f"(&(objectClass=person)(uid={ldap3.utils.conv.escape_filter_chars(evil)}))")
        assert len(conn.entries) == 0
    finally:
        conn.unbind()


def test_names_with_filter_metacharacters_still_work(ldap: LdapProvider) -> None:
    user = ldap.authenticate(token("j(doe)", "j(doe)-pw"))
    assert isinstance(user, User) and user.username == "j(doe)"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(username=st.text(alphabet="*()\\=|&!<>~:a\x00", min_size=1, max_size=12), password=st.text(max_size=8))
def test_metacharacter_usernames_never_authenticate_nor_crash(ldap: LdapProvider, username: str, password: str) -> None:
    result = ldap.authenticate(token(username, password or "alice-pw"))
    assert isinstance(result, Rejected)


# ---- the directory misbehaving -------------------------------------------------------------------------------------
def test_wrong_service_password_is_a_503_not_a_rejection(slapd: Slapd) -> None:
    p = provider(slapd, bind_password="not-the-password")
    with pytest.raises(UpstreamUnavailable, match="service account bind failed"):
        p.authenticate(token("alice", "alice-pw"))


def test_stopped_server_is_unavailable_quickly_and_recovers(private_slapd: Slapd) -> None:
    p = provider(private_slapd)
    assert isinstance(p.authenticate(token("alice", "alice-pw")), User)
    private_slapd.stop()
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        p.authenticate(token("alice", "alice-pw"))
    assert time.monotonic() - started < 1
    private_slapd.start()  # same port: the pooled connections are stale and get replaced
    assert isinstance(p.authenticate(token("alice", "alice-pw")), User)


def test_hung_server_is_unavailable_within_the_timeout(private_slapd: Slapd) -> None:
    p = provider(private_slapd, timeout=0.8)
    assert isinstance(p.authenticate(token("alice", "alice-pw")), User)  # a pooled connection exists
    private_slapd.pause()
    try:
        for fresh in (False, True):  # on the pooled connection, then on a new one
            if fresh:
                p = provider(private_slapd, timeout=0.8)
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
                p.authenticate(token("alice", "alice-pw"))
            assert time.monotonic() - started < 1.3
    finally:
        private_slapd.resume()
    assert isinstance(p.authenticate(token("alice", "alice-pw")), User)


def test_failover_to_the_next_url(slapd: Slapd) -> None:
    p = provider(slapd, urls=[f"ldap://127.0.0.1:{free_port()}", slapd.url])
    assert isinstance(p.authenticate(token("bob", "bob-pw")), User)


# ---- pooling -------------------------------------------------------------------------------------------------------
def test_connections_are_pooled_and_bounded_under_concurrency(slapd: Slapd) -> None:
    p = provider(slapd, pool_size=3, nested_groups=True)
    results: list[Any] = []

    def worker() -> None:
        for name in ("alice", "bob", "carol") * 4:
            results.append(p.authenticate(token(name, f"{name}-pw")))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 72 and all(isinstance(r, User) for r in results)
    assert p._search_pool._idle.qsize() <= 3 and p._bind_pool._idle.qsize() <= 3  # never more than pool_size


def test_sequential_reviews_reuse_one_connection_per_purpose(slapd: Slapd) -> None:
    p = provider(slapd)
    for _ in range(10):
        assert isinstance(p.authenticate(token("alice", "alice-pw")), User)
    assert p._search_pool._idle.qsize() == 1 and p._bind_pool._idle.qsize() == 1


# ---- TLS -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with start_slapd(tmp_path_factory.mktemp("slapd-tls"), tls=True) as server:
        yield server


def test_ldaps_with_ca_verification(tls_slapd: Slapd) -> None:
    p = provider(tls_slapd, urls=[tls_slapd.ldaps_url], ca_file=tls_slapd.ca_file)
    assert isinstance(p.authenticate(token("alice", "alice-pw")), User)


def test_start_tls_with_ca_verification(tls_slapd: Slapd) -> None:
    p = provider(tls_slapd, start_tls=True, ca_file=tls_slapd.ca_file)
    assert isinstance(p.authenticate(token("alice", "alice-pw")), User)
    assert p._bind_pool._idle.queue[0].tls_started


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_untrusted_server_certificate_is_refused(tls_slapd: Slapd, tmp_path: Path, mode: str) -> None:
    _make_tls(tmp_path)  # another throwaway CA, which did not sign slapd's certificate
    extra: dict[str, Any] = {"ca_file": str(tmp_path / "ca.pem")}
    extra.update({"urls": [tls_slapd.ldaps_url]} if mode == "ldaps" else {"start_tls": True})
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        provider(tls_slapd, **extra).authenticate(token("alice", "alice-pw"))


def test_certificate_for_another_host_name_is_refused(tls_slapd: Slapd) -> None:
    # slapd's certificate names 127.0.0.1 only; "localhost" resolves there but is not in the certificate.
    url = f"ldaps://localhost:{tls_slapd.ldaps_port}"
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        provider(tls_slapd, urls=[url], ca_file=tls_slapd.ca_file).authenticate(token("alice", "alice-pw"))
    relaxed = provider(tls_slapd, urls=[url], ca_file=tls_slapd.ca_file, insecure_skip_verify=True)
    assert isinstance(relaxed.authenticate(token("alice", "alice-pw")), User)


# ---- never a secret in the log ---------------------------------------------------------------------------------------
def test_token_and_password_never_logged(private_slapd: Slapd, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(private_slapd)
    secrets = {"alice-pw", "wrong-pw-1234", "*)(uid=*-pw"}
    p.authenticate(token("alice", "alice-pw"))
    p.authenticate(token("alice", "wrong-pw-1234"))
    p.authenticate(token("*)(uid=*", "*)(uid=*-pw"))
    private_slapd.stop()
    with pytest.raises(UpstreamUnavailable):
        p.authenticate(token("alice", "alice-pw"))
    assert caplog.records
    for secret in secrets:
        assert secret not in caplog.text
        assert token("alice", secret) not in caplog.text
    assert SERVICE_PASSWORD not in caplog.text


# ---- start-up validation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"urls": []}, "authn.providers.ldap/corp.urls: at least one"),
        ({"urls": ["http://x"]}, "authn.providers.ldap/corp.urls[0]"),
        ({"urls": ["ldap://ldap.example.org"]}, "passwords would cross the network in clear"),
        ({"user_search_base": ""}, "authn.providers.ldap/corp.user_search_base"),
        ({"user_filter": "(uid=alice)"}, "user_filter: must contain {username}"),
        ({"user_filter": "(&(uid={username})"}, "user_filter: not a valid LDAP filter"),
        ({"group_filter": "(member=x)"}, "group_filter: must contain"),
        ({"bind_password": ""}, "bind_password: required with bind_dn"),
        ({"bind_password_file": "/nonexistent/pw"}, "bind_password_file"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"start_tls": "perhaps"}, "authn.providers.ldap/corp.start_tls"),
        ({"timeout": -1}, "timeout must be between"),
        ({"server": "x"}, "unknown config key authn.providers.ldap/corp.server"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(change: dict[str, Any], message: str) -> None:
    base = {"urls": ["ldap://127.0.0.1:389"], "bind_dn": SERVICE_DN, "bind_password": "x", "user_search_base": BASE_DN}
    with pytest.raises(ConfigError) as info:
        build_provider("ldap", "corp", {**base, **change})
    assert message in str(info.value)


def test_secure_remote_configs_are_accepted(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    for extra in ({"urls": ["ldaps://ldap.example.org"]}, {"urls": ["ldap://ldap.example.org"], "start_tls": True},
                  {"urls": ["ldap://ldap.example.org"], "allow_plaintext": True}):
        p = build_provider("ldap", "corp", {"bind_dn": SERVICE_DN, "bind_password_file": str(pw),
                                            "user_search_base": BASE_DN, **extra})
        assert isinstance(p, LdapProvider)
    assert p._search_pool.bind_password == "s3cret"
    assert user_dn("alice").startswith("uid=alice,")
