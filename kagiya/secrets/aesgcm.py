"""`AESGCM`: cryptography's AES-GCM class, imported without cryptography's Python cipher layer.

`cryptography.hazmat.primitives.ciphers.aead` only re-exports the class of the Rust binding, but importing it
loads the whole cipher package on the way (algorithms, modes, the "decrepit" ciphers, cffi): about 5 ms of the
~40 ms a one-key `kagiya secrets decrypt` takes (issue 13). The binding is imported directly when it has the
class, which is the very same object (tests/secrets/test_encrypt_scan.py checks it); any other cryptography
release falls back to the public path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
else:
    try:
        from cryptography.hazmat.bindings._rust import openssl as _openssl

        AESGCM = _openssl.aead.AESGCM
    except (ImportError, AttributeError):  # a cryptography release without it: the public path
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["AESGCM"]
