"""The kubesec format behind the `formats` interface: a thin adapter over ops.decrypt / envelope (unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kagiya.secrets.formats import KUBESEC, Plain


def decrypt(text: str, settings: object, *, path: object = None, allow_unauthenticated: bool = False) -> Plain:
    from kagiya.secrets import ops

    src = ops.Source(text, Path(str(path)) if path is not None else None)
    plain, opened = ops.decrypt(src, settings, allow_unauthenticated=allow_unauthenticated)
    m = opened.manifest
    values: list[tuple[tuple[str, ...], Any]] = []
    for slot in m.slots:
        doc = m.secrets[slot.secret]
        values.append(((doc.name, slot.section, slot.key), opened.plaintexts[(slot.secret, slot.section, slot.key)]))
    return Plain(KUBESEC, plain, opened.recipients, opened.used, values)
