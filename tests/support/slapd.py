"""A real OpenLDAP `slapd` for tests: temp dir, slapd.conf (core/cosine/inetorgperson/nis), an mdb database loaded by
`slapadd`, then `slapd -d 0 -h ldap://127.0.0.1:PORT/` as a child (foreground, so stopping it leaves no zombie).

specs/test-infrastructure.md: listening in ~50 ms. `with start_slapd(tmp) as s:` gives `s.url`, the service account
(`SERVICE_DN` / `SERVICE_PASSWORD`) and the seeded directory below. `tls=True` also serves `ldaps://` and StartTLS
with a throwaway CA (`s.ca_file`) and a server certificate for 127.0.0.1.

Seeded directory (`BASE_DN` = dc=example,dc=org):
- ou=people: alice, bob, carol, dan (no groups), `j(doe)` (a real name with filter metacharacters), twin;
  ou=contractors: another `twin` (a username matching two entries). Password of each: `<uid>-pw`.
- ou=groups: developers {alice, bob} (groupOfNames); platform {developers, carol}; everyone {platform} (nesting);
  ops (posixGroup, memberUid alice); loop-a {loop-b, carol} and loop-b {loop-a} (a cycle);
  bulk-000 … bulk-259 {grace} and bulk-parent {every bulk group}: more than the server's per-search size limit
  (100 entries; paged searches are unlimited), so a client must page to see them all.
ACLs: anonymous may only bind; the service account and bound users may read; nobody reads userPassword.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import ServerProcess, free_port

BASE_DN = "dc=example,dc=org"
SERVICE_DN = f"cn=kagiya,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "service-pw"  # noqa: S105 - a test directory's made-up password
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
#: grace is in this many groups, more than one search answer holds (`SIZE_LIMIT`), so only paging finds them all.
BULK_GROUPS = 260
SIZE_LIMIT = 100
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
SCHEMA_DIR = Path("/etc/ldap/schema")
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - {SSHA} is what slapd checks
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _person(uid: str, number: int, ou: str = "people") -> str:
    return (
        f"dn: uid={_rdn_escape(uid)},ou={ou},{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
        f"uid: {uid}\ncn: {uid.title()}\nsn: {uid}\nmail: {uid}@example.org\nuidNumber: {number}\n"
        f"gidNumber: {number}\nhomeDirectory: /home/{uid}\nuserPassword: {ssha(uid + '-pw')}\n"
    )


def _rdn_escape(value: str) -> str:
    return "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)


def _group(cn: str, *members: str) -> str:
    lines = [f"dn: cn={cn},{GROUPS_DN}", "objectClass: groupOfNames", f"cn: {cn}"]
    lines += [f"member: {m}" for m in members]
    return "\n".join(lines) + "\n"


def user_dn(uid: str, ou: str = "people") -> str:
    return f"uid={_rdn_escape(uid)},ou={ou},{BASE_DN}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS_DN}"


def seed_ldif() -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
        *(f"dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}\n"
          for ou in ("people", "contractors", "services", "groups")),
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: kagiya\n"
        f"userPassword: {ssha(SERVICE_PASSWORD)}\n",
        _person("alice", 1001), _person("bob", 1002), _person("carol", 1003), _person("dan", 1004),
        _person("j(doe)", 1005), _person("twin", 1006), _person("twin", 1007, ou="contractors"),
        _group("developers", user_dn("alice"), user_dn("bob")),
        _group("platform", group_dn("developers"), user_dn("carol")),
        _group("everyone", group_dn("platform")),
        _group("loop-a", group_dn("loop-b"), user_dn("carol")),
        _group("loop-b", group_dn("loop-a")),
        _person("grace", 1008),
        *(_group(f"bulk-{i:03d}", user_dn("grace")) for i in range(BULK_GROUPS)),
        _group("bulk-parent", *(group_dn(f"bulk-{i:03d}") for i in range(BULK_GROUPS))),
        f"dn: {group_dn('ops')}\nobjectClass: posixGroup\ncn: ops\ngidNumber: 5000\nmemberUid: alice\n",
    ]
    return "\n".join(entries)


def slapd_conf(directory: Path, tls: tuple[Path, Path] | None) -> str:
    includes = "".join(f"include {SCHEMA_DIR / name}.schema\n" for name in SCHEMAS)
    tls_lines = f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n" if tls else ""
    return f"""{includes}
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
{tls_lines}
database mdb
suffix "{BASE_DN}"
rootdn "cn=admin,{BASE_DN}"
rootpw admin-pw
directory {directory}/db
maxsize 16777216
sizelimit size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited
index objectClass,uid,cn,member,memberUid eq

access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by users read
  by * none
"""


@dataclass
class Slapd:
    directory: Path
    port: int
    ldaps_port: int = 0
    ca_file: str = ""
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self) -> None:
        urls = self.url + "/" + (f" {self.ldaps_url}/" if self.ldaps_port else "")
        conf = str(self.directory / "slapd.conf")
        self.process = ServerProcess(
            [SLAPD, "-d", "0", "-f", conf, "-h", urls], port=self.port, timeout=15,
            log_path=self.directory / "slapd.log",
        ).start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (kernel backlog) but nothing answers — a hung server."""
        assert self.process is not None and self.process.proc is not None
        pid = self.process.proc.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the stop is asynchronous: wait until every thread is stopped
            tasks = Path(f"/proc/{pid}/task")
            states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
            if all(state == "T" for state in states):
                return
            time.sleep(0.01)
        raise RuntimeError("slapd did not stop")

    def resume(self) -> None:
        assert self.process is not None and self.process.proc is not None
        os.kill(self.process.proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def start_slapd(directory: Path, *, tls: bool = False) -> Iterator[Slapd]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "db").mkdir(exist_ok=True)
    server = Slapd(directory, free_port())
    cert_key = None
    if tls:
        server.ldaps_port = free_port()
        cert_key = _make_tls(directory)
        server.ca_file = str(directory / "ca.pem")
    conf = directory / "slapd.conf"
    conf.write_text(slapd_conf(directory, cert_key))
    (directory / "seed.ldif").write_text(seed_ldif())
    subprocess.run(
        [SLAPADD, "-f", str(conf), "-l", str(directory / "seed.ldif")], check=True, capture_output=True, timeout=30
    )
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.process.proc.pid, signal.SIGCONT)
        server.stop()


def _make_tls(directory: Path) -> tuple[Path, Path]:
    """A throwaway CA (ca.pem) and a server certificate for 127.0.0.1 (server.pem / server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kagiya test LDAP CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "server.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return directory / "server.pem", key_path
