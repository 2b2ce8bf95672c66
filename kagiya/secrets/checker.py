"""`kagiya secrets check FILES…`: the pre-commit guard. Needs no key: it only looks at the text.

A finding names the file, the Secret and each plaintext value. An encrypted file passes when every value has
the kubesec value shape and the trailer parses; a plaintext value slipped into an encrypted file is a finding.
Files that never mention `kind: Secret` are skipped without parsing; a Secret file that does not parse is a
finding, unless it is a template (`{{ … }}`), whose values are filled in elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from kagiya.atomic import write_atomic
from kagiya.errors import KagiyaError
from kagiya.secrets import envelope, kubesec, manifest, ops

#: Files that never say `kind: Secret` (any quoting, block or flow style) are not parsed at all.
SECRET_HINT = re.compile(r"""\bkind["']?\s*:\s*["']?Secret\b""")


def run(files: Iterable[str], fix: bool, settings_fn: Callable[[], object]) -> list[str]:
    findings: list[str] = []
    for name in files:
        findings += check_file(name, fix, settings_fn)
    return findings


def check_file(name: str, fix: bool, settings_fn: Callable[[], object]) -> list[str]:
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return [f"{name}: cannot read: {exc.strerror}"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    from kagiya.secrets import formats

    if formats.detect(text) == formats.SOPS:  # sops files: checked against their own rules (formats/sops_doc.py)
        from kagiya.secrets.formats import sops_doc

        return sops_doc.plaintext_findings(text, name)
    if not SECRET_HINT.search(text):
        return []
    try:
        m = manifest.parse(text)
    except KagiyaError as exc:
        if "{{" in text:  # a Helm/Go template of a Secret, not a manifest: its values come from elsewhere
            return []
        return [f"{name}: {exc.message}"]
    problems = plaintext_values(m, name)
    if m.encrypted:
        try:
            envelope.read_trailer(m)
        except KagiyaError as exc:
            return [f"{name}: {exc.message}"]
    if not problems:
        return []
    if fix and not m.encrypted:
        try:
            settings = settings_fn()
            text = ops.encrypt(ops.Source(text, Path(name)), settings)
            write_atomic(name, text.encode("utf-8"))
        except KagiyaError as exc:
            return [f"{name}: --fix failed: {exc.message}"] + problems
        return [f"{name}: encrypted {len(problems)} plaintext value(s); review and stage it again"]
    if fix:
        return [f"{name}: plaintext values in an encrypted file; use kagiya secrets edit or patch"] + problems
    return problems


def plaintext_values(m: manifest.Manifest, name: str) -> list[str]:
    """One line per plaintext value: `FILE: Secret ns/name: data.password is plaintext`."""
    return [
        f"{name}: Secret {doc.identity}: {slot.label} is plaintext"
        for doc in m.secrets
        for slot in doc.slots
        if not m.encrypted or not kubesec.VALUE_RE.match(slot.value)
    ]
