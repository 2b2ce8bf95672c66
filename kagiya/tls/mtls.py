"""Mutual TLS serving: hand the verified client certificate to the Flask view, and reload certificate files.

Why this module exists: Guard-style routing needs the apiserver's `O=`/`CN=`. The serving front
(`kagiya.serving.connection`) reads the verified certificate from the connection's TLS object once per connection
and puts it in every request's environ as `environ["SSL_CLIENT_CERT"]` (PEM), the same key Werkzeug's development
server (`kagiya serve --dev`) and mod_ssl use, so the view reads one key whichever server runs it. The key has no
`HTTP_` prefix, so a client header cannot forge it (headers only become `HTTP_*` keys).

Certificate reload: the front asks for a context on every new connection (`kagiya.serving.ssl_context_factory`);
`reloading_ssl_context` keeps one context and rebuilds it when the mtime or size of the server certificate,
key or client CA bundle changes, so replaced files apply to new connections without a restart.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ENVIRON_KEY = "SSL_CLIENT_CERT"
#: Client-certificate `O=` of node agents (`kagiya authn init client --provider agent`): kept on every node, such a
#: certificate opens the mutual-TLS gate of `/iam/agent/` only; the apiserver's webhooks (TokenReview and
#: SubjectAccessReview) refuse it, so a node's key cannot become a token or policy oracle.
AGENT_ORGANIZATION = "agent"


def _stamp(paths: Iterable[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, 0))
    return tuple(out)


class _ContextCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp: tuple[tuple[int, int], ...] | None = None
        self.context: ssl.SSLContext | None = None


_contexts = _ContextCache()


def reloading_ssl_context(conf: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """The context for a new connection: `default_factory()`'s, rebuilt only when a certificate file changed.

    If a rebuild fails (a half-written file), the previous context keeps serving until the next change.
    """
    paths = [p for p in (conf.certfile, conf.keyfile, conf.ca_certs) if p]
    stamp = _stamp(paths)
    with _contexts.lock:
        if _contexts.context is None or stamp != _contexts.stamp:
            try:
                context = default_factory()
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                _contexts.context = context
            except (OSError, ssl.SSLError):
                if _contexts.context is None:
                    raise
            _contexts.stamp = stamp
        return _contexts.context


_SUBJECTS: OrderedDict[str, dict[str, list[str]]] = OrderedDict()
_SUBJECTS_LOCK = threading.Lock()
_OIDS = {"O": "2.5.4.10", "CN": "2.5.4.3", "OU": "2.5.4.11"}


def peer_subject(environ: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """The verified client certificate's subject as {"O": [...], "CN": [...], "OU": [...]}, or None."""
    pem = environ.get(ENVIRON_KEY)
    if not pem:
        return None
    with _SUBJECTS_LOCK:
        hit = _SUBJECTS.get(pem)
        if hit is not None:
            _SUBJECTS.move_to_end(pem)
            return hit
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        return None
    subject: dict[str, list[str]] = {}
    for short, dotted in _OIDS.items():
        values = cert.subject.get_attributes_for_oid(x509.ObjectIdentifier(dotted))
        subject[short] = [str(a.value) for a in values]
    with _SUBJECTS_LOCK:
        _SUBJECTS[pem] = subject
        while len(_SUBJECTS) > 256:
            _SUBJECTS.popitem(last=False)
    return subject


def is_agent_certificate(subject: Mapping[str, Iterable[str]] | None) -> bool:
    """Whether a verified client certificate's subject (`peer_subject`) is a node agent's (`O=agent`)."""
    return subject is not None and AGENT_ORGANIZATION in subject.get("O", ())
