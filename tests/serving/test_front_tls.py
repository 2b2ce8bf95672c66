"""The front over TLS: the verified client certificate reaches the app, a client that never finishes its
handshake is dropped at the handshake deadline, and connections over the per-source cap get no handshake."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kagiya.config import load_settings
from kagiya.serving import ssl_context_factory
from tests.serving.conftest import FrontServer, read_until_close


def _cert(path: Path, name: str, org: str, issuer: tuple[Any, x509.Name] | None = None, ca: bool = False,
          san: bool = False) -> tuple[Any, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = issuer or (key, subject)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
               .not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress

        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return key, subject


def echo_peer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("SSL_CLIENT_CERT", "none").encode()]


@pytest.fixture
def tls_server(tmp_path: Path) -> Any:
    ca = _cert(tmp_path / "ca", "test-ca", "ca", ca=True)
    _cert(tmp_path / "server", "server", "kagiya", issuer=ca, san=True)
    _cert(tmp_path / "client", "apiserver-oidc", "oidc", issuer=ca)
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "tls_cert": str(tmp_path / "server.crt"), "tls_key": str(tmp_path / "server.key"),
        "client_ca": str(tmp_path / "ca.crt")})
    servers: list[FrontServer] = []

    def make(**serving: Any) -> FrontServer:
        server = FrontServer(echo_peer, serving, 1024, ssl_context_factory(settings))
        servers.append(server)
        return server

    yield make, tmp_path
    for server in servers:
        server.stop()


def client_context(tmp_path: Path, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
    return ctx


def get(server: FrontServer, ctx: ssl.SSLContext) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False) as s:
        s.do_handshake()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_close(s)


def test_verified_client_certificate_reaches_the_app(tls_server: tuple[Callable[..., FrontServer], Path]) -> None:
    make, tmp = tls_server
    server = make()
    with_cert = get(server, client_context(tmp, True))
    assert with_cert.startswith(b"HTTP/1.1 200 OK\r\n")
    pem = with_cert.split(b"\r\n\r\n", 1)[1].decode()
    assert x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string() == "CN=apiserver-oidc,O=oidc"
    assert get(server, client_context(tmp, False)).endswith(b"\r\n\r\nnone")


def test_a_stalled_handshake_is_dropped_at_its_deadline(tls_server: tuple[Callable[..., FrontServer], Path]) -> None:
    make, _tmp = tls_server
    server = make(handshake_timeout_seconds=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        assert read_until_close(s) == b""
        assert time.monotonic() - started < 3


def test_over_the_per_source_cap_no_handshake_is_made(tls_server: tuple[Callable[..., FrontServer], Path]) -> None:
    make, tmp = tls_server
    server = make(max_connections_per_source=2)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)
        with pytest.raises((ssl.SSLError, OSError)):
            get(server, client_context(tmp, True))
    finally:
        for s in held:
            s.close()


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_a_client_cannot_renegotiate(tls_server: tuple[Callable[..., FrontServer], Path]) -> None:
    """TLS 1.2 renegotiation is refused: the peer certificate is read once per connection, and a client could
    otherwise make the loop do handshake work on one connection past the handshake deadline and caps."""
    make, tmp = tls_server
    server = make(header_timeout_seconds=2)
    client = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2",
                               "-CAfile", str(tmp / "ca.crt"), "-cert", str(tmp / "client.crt"),
                               "-key", str(tmp / "client.key")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert client.stdin is not None and client.stdout is not None
        seen = b""
        while b"Verify return code" not in seen:  # the first handshake is done
            line = client.stdout.readline()
            assert line, seen
            seen += line
        client.stdin.write(b"R\n")  # s_client's command letter: renegotiate
        client.stdin.flush()
        output = seen + client.communicate(timeout=10)[0]
    finally:
        client.kill()
    assert b"Verify return code: 0 (ok)" in output
    assert b"RENEGOTIATING" in output and b"no renegotiation" in output


def test_client_headers_never_become_the_peer_certificate(tls_server: tuple[Callable[..., FrontServer], Path]) -> None:
    """Over TLS without a client certificate, `SSL-Client-Cert` / `SSL_CLIENT_CERT` headers do not reach the app's
    `SSL_CLIENT_CERT` (the mutual-TLS gate of the webhooks reads it)."""
    make, tmp = tls_server
    server = make()
    forged = (tmp / "client.crt").read_text().replace("\n", " ").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            client_context(tmp, False).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nSSL-Client-Cert: " + forged + b"\r\nSSL_CLIENT_CERT: " + forged
                  + b"\r\nConnection: close\r\n\r\n")
        assert read_until_close(s).endswith(b"\r\n\r\nnone")
