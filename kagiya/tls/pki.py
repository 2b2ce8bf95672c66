"""Certificates for the webhook's mutual TLS, and the kubeconfig kube-apiserver reads.

Spec: ../shared/specs/kubernetes-webhooks.md ("TokenReview": `--authentication-token-webhook-config-file` is a
kubeconfig; "Guard's routing convention": client certificate `O=` provider, `CN=` its parameter). Layout in
the pki directory (default `<data_dir>/pki`), the same as Guard's tooling:
  ca.crt / ca.key               the CA that signs both sides
  server.crt / server.key       kagiya's serving certificate (SANs from --ip / --dns)
  clients/NAME.crt / NAME.key   one client certificate per apiserver (O=<provider>, CN=<org>)
Keys are ECDSA P-256, written 0600 atomically; existing files are never overwritten without --force.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kagiya.atomic import write_atomic
from kagiya.errors import Conflict, NotFound, UsageError
from kagiya.private_files import ensure_private_dir

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    ensure_private_dir(path.parent)  # the data dir too, when <data_dir>/pki is the first thing made in it
    write_atomic(path, data, mode)


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _check_free(paths: Sequence[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise Conflict(f"{existing[0]} already exists (pass --force to replace it)")


def _load_ca(pki: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    crt, key = pki / "ca.crt", pki / "ca.key"
    if not crt.exists() or not key.exists():
        raise NotFound(f"no CA in {pki}: run `kagiya authn init ca` first")
    return (x509.load_pem_x509_certificate(crt.read_bytes()),
            serialization.load_pem_private_key(key.read_bytes(), password=None))


def _builder(subject: Any, issuer: Any, public_key: Any, days: int) -> Any:
    from cryptography import x509

    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def _name(cn: str, org: str = "") -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def init_ca(pki: Path, *, common_name: str = "kagiya-ca", force: bool = False) -> Issued:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    out = Issued(pki / "ca.crt", pki / "ca.key")
    _check_free([out.cert, out.key], force)
    key = _new_key()
    name = _name(common_name)
    cert = (_builder(name, name, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_atomic(out.key, _key_pem(key), 0o600)
    _write_atomic(out.cert, _cert_pem(cert), 0o644)
    return out


def _leaf(pki: Path, out: Issued, subject: Any, *, server: bool, sans: list[Any], force: bool) -> Issued:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    _check_free([out.cert, out.key], force)
    ca_cert, ca_key = _load_ca(pki)
    key = _new_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(subject, ca_cert.subject, key.public_key(), LEAF_DAYS)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_atomic(out.key, _key_pem(key), 0o600)
    _write_atomic(out.cert, _cert_pem(cert), 0o644)
    return out


def init_server(pki: Path, *, ips: Sequence[str] = (), dns: Sequence[str] = (), force: bool = False) -> Issued:
    """Serving certificate with the given SANs (at least one); raises UsageError for a bad IP address."""
    from cryptography import x509

    sans: list[Any] = []
    for ip in ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise UsageError(f"--ip {ip!r} is not an IP address") from None
    sans.extend(x509.DNSName(d) for d in dns)
    if not sans:
        raise UsageError("give the server's addresses with --ip and/or --dns")
    cn = dns[0] if dns else ips[0]
    return _leaf(pki, Issued(pki / "server.crt", pki / "server.key"), _name(cn, "kagiya"), server=True,
                 sans=sans, force=force)


def client_paths(pki: Path, name: str) -> Issued:
    if not NAME_RE.match(name):
        raise UsageError(f"client name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)")
    return Issued(pki / "clients" / f"{name}.crt", pki / "clients" / f"{name}.key")


#: `--provider default`: an `O=` that names no provider type, so the webhook asks the default chain (every provider).
DEFAULT_CHAIN = "default"


def init_client(pki: Path, name: str, *, provider: str, org: str, force: bool = False) -> Issued:
    """Client certificate: Subject O=<provider> (Guard's routing, or `agent` for a node agent) and CN=<org>.

    Which `provider` values make sense is the caller's business (`kagiya authn init client` checks them), so this
    module stays free of authn imports."""
    if not provider:
        raise UsageError("--provider is required")
    if not org:
        raise UsageError("--org is required (GitHub/GitLab org, Google domain, Azure tenant, LDAP or OIDC name)")
    return _leaf(pki, client_paths(pki, name), _name(org, provider), server=False, sans=[], force=force)


def webhook_kubeconfig(pki: Path, *, server: str, client: str, embed: bool = True) -> dict[str, Any]:
    """The kubeconfig for `--authentication-token-webhook-config-file` (cluster = kagiya, user = apiserver)."""
    if not server.startswith("https://"):
        raise UsageError("--server must be an https:// URL (the apiserver talks to the webhook over TLS)")
    ca = pki / "ca.crt"
    paths = client_paths(pki, client)
    for path in (ca, paths.cert, paths.key):
        if not path.exists():
            raise NotFound(f"{path} does not exist: run `kagiya authn init` for it first")

    def ref(field: str, path: Path) -> dict[str, str]:
        if embed:
            return {f"{field}-data": base64.b64encode(path.read_bytes()).decode("ascii")}
        return {field: str(path.resolve())}

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kagiya", "cluster": {"server": server, **ref("certificate-authority", ca)}}],
        "users": [{"name": client, "user": {**ref("client-certificate", paths.cert),
                                             **ref("client-key", paths.key)}}],
        "contexts": [{"name": "webhook", "context": {"cluster": "kagiya", "user": client}}],
        "current-context": "webhook",
    }
