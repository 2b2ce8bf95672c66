"""The per-connection TLS context: one context reused, rebuilt when a file changes, the old one kept on bad files."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from types import SimpleNamespace

from kagiya.tls import mtls, pki


def test_context_is_reused_rebuilt_on_change_and_kept_on_broken_files(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    pki.init_ca(root)
    pki.init_server(root, ips=["127.0.0.1"])
    conf = SimpleNamespace(certfile=str(root / "server.crt"), keyfile=str(root / "server.key"),
                           ca_certs=str(root / "ca.crt"))
    built = []

    def factory() -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=conf.ca_certs)
        ctx.load_cert_chain(conf.certfile, conf.keyfile)
        built.append(ctx)
        return ctx

    mtls._contexts.context = None
    first = mtls.reloading_ssl_context(conf, factory)
    assert mtls.reloading_ssl_context(conf, factory) is first and len(built) == 1
    assert first.minimum_version == ssl.TLSVersion.TLSv1_2

    pki.init_server(root, ips=["127.0.0.1"], force=True)
    os.utime(root / "server.crt", ns=(1, 3_000_000_000_000_000_000))
    second = mtls.reloading_ssl_context(conf, factory)
    assert second is not first

    (root / "server.crt").write_text("half-written")
    assert mtls.reloading_ssl_context(conf, factory) is second  # a broken file keeps the last good context
    mtls._contexts.context = None
