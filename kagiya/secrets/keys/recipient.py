"""The interface every recipient key scheme implements (keys/local.py, pgp.py, gcpkms.py, awskms.py, age.py).

Apart from keys/base.py so that the hot CLI path, which never needs the Protocol at run time, does not import
typing; `kagiya.secrets.keys.base.RecipientKey` still names it.
"""

from __future__ import annotations

from typing import Protocol


class RecipientKey(Protocol):
    scheme: str
    id: str

    @property
    def uri(self) -> str: ...

    def wrap(self, dek: bytes) -> bytes:
        """The wrapped DEK as stored (before the trailer's base64). Raises KeyUnavailable."""
        ...

    def unwrap(self, blob: bytes) -> bytes:
        """The 32-byte DEK. Raises KeyUnavailable or CryptoError."""
        ...
