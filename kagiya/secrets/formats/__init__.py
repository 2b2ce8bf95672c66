"""Encrypted-file formats behind one interface: `kubesec` (kagiya's own, secrets/kubesec.py + envelope.py) and
`sops` (formats/sops.py). `detect` picks one from the text; `decrypt` opens either, fully verified.

The kubesec code is not rewritten here: `formats.kubesec` adapts `ops.decrypt`, so the trailer format keeps one
implementation. Everything a caller needs from an opened file is a `Plain`: the plaintext text in the file's own
syntax, the recipients, which one opened it, and the string values by path (for exec-env / exec-file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KUBESEC, SOPS = "kubesec", "sops"


@dataclass
class Plain:
    format: str
    text: str
    recipients: list[str]
    used: str
    #: (path, value) of every plaintext value; for kubesec the path is (Secret name, section, key).
    values: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)


def looks_like_sops(text: str) -> bool:
    """Cheap check before parsing: a top-level `sops:` key (YAML) or `"sops":` (JSON), and a mac."""
    if "# kubesec:v:" in text:  # a kubesec trailer wins: a value or comment may well mention sops
        return False
    return ("\nsops:" in text or text.startswith("sops:") or '"sops":' in text) and "mac" in text


def detect(text: str) -> str:
    """`sops` for a file carrying sops metadata, else `kubesec` (encrypted or not). Imports nothing."""
    return SOPS if looks_like_sops(text) else KUBESEC


def decrypt(text: str, settings: object, *, path: object = None, allow_unauthenticated: bool = False) -> Plain:
    """Open `text` in whichever format it is. Raises the format's KagiyaError (CryptoError, ManifestError ...)."""
    if detect(text) == SOPS:
        from kagiya.secrets.formats import sops_doc

        opened = sops_doc.decrypt(text, settings)
        return Plain(SOPS, opened.text, opened.meta.recipients, opened.used, opened.values)
    from kagiya.secrets.formats import kubesec

    return kubesec.decrypt(text, settings, path=path, allow_unauthenticated=allow_unauthenticated)
