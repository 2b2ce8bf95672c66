"""`kagiya secrets check FILES…`: the pre-commit guard. Needs no key: it only looks at the text.

A finding names the file, the Secret and each plaintext value. An encrypted file passes when every value has
the kubesec value shape and the trailer parses; a plaintext value slipped into an encrypted file is a finding.
Files are decoded as kubectl would read them (UTF-8, or UTF-8/16/32 with a byte-order mark). Files that never
mention `kind: Secret` are skipped without parsing. An encrypted file that two independent quick readings
(scan.py and the line scan) both find clean passes without PyYAML. A Secret file that does not parse as YAML (a
Helm or Go template, a broken file) is scanned line by line for Secret-shaped plaintext (`data:` / `stringData:`
entries whose value is neither a template expression nor an encrypted value), and the guard says it could not
parse it: nothing passes silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from kagiya.errors import KagiyaError
from kagiya.secrets import envelope, kubesec, manifest, ops

#: Files that never say `kind: Secret` (any quoting, block or flow style) are not parsed at all.
SECRET_HINT = re.compile(r"""\bkind["']?\s*:\s*["']?Secret\b""")
#: Byte-order marks, longest first (a UTF-32-LE BOM starts with the UTF-16-LE one).
BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8"),
        (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))
_SECTION_LINE = re.compile(r"""^(\s*)["']?(data|stringData)["']?\s*:\s*(.*?)\s*$""")
_ENTRY_LINE = re.compile(r"""^(\s*)(["']?)([-._a-zA-Z0-9]+)\2\s*:(?:\s+(.*?))?\s*$""")

Note = Callable[[str], None]


def decode(data: bytes) -> tuple[str | None, str]:
    """(text, encoding) as kubectl reads it: a BOM picks UTF-8/16/32, else UTF-8; (None, why) if it cannot."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding), encoding
            except UnicodeDecodeError:
                return None, f"has a {encoding} byte-order mark but is not {encoding}"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return None, "is not UTF-8 and has no UTF-16/32 byte-order mark"


def run(files: Iterable[str], fix: bool, settings_fn: Callable[[], object], note: Note = lambda _: None
        ) -> list[str]:
    findings: list[str] = []
    for name in files:
        findings += check_file(name, fix, settings_fn, note)
    return findings


def check_file(name: str, fix: bool, settings_fn: Callable[[], object], note: Note = lambda _: None) -> list[str]:
    with ops.file_lock(name if fix else None):  # --fix rewrites the file: no concurrent change may be lost
        return _check_file(name, fix, settings_fn, note)


def _check_file(name: str, fix: bool, settings_fn: Callable[[], object], note: Note) -> list[str]:
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return [f"{name}: cannot read: {exc.strerror}"]
    text, encoding = decode(data)
    if text is None:
        raw = data.decode("latin-1")
        if not SECRET_HINT.search(raw):
            return []
        return [f"{name}: mentions kind: Secret but {encoding}; cannot check it"] + line_scan(raw, name)
    if "sops" in text and _is_sops(text):  # sops files: checked against their own rules (formats/sops_doc.py)
        from kagiya.secrets.formats import sops_doc

        return sops_doc.plaintext_findings(text, name)
    if not SECRET_HINT.search(text):
        return []
    if not fix and quick_clean(text):
        return []
    try:
        m = manifest.parse(text)
    except KagiyaError as exc:
        found = line_scan(text, name)
        if "{{" in text:  # a Helm/Go template of a Secret: its values should come from elsewhere
            if not found:
                note(f"kagiya: note: {name}: not parsed as YAML ({exc.message}); a line scan found no plaintext value")
            return found
        return [f"{name}: {exc.message}"] + found
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
            text = ops.encrypt(ops.Source(text, name), settings)
            from kagiya.atomic import write_atomic

            write_atomic(name, text.encode("utf-8"))
        except KagiyaError as exc:
            return [f"{name}: --fix failed: {exc.message}"] + problems
        again = "" if encoding == "utf-8" else f" (rewritten as UTF-8, was {encoding})"
        return [f"{name}: encrypted {len(problems)} plaintext value(s){again}; review and stage it again"]
    if fix:
        return [f"{name}: plaintext values in an encrypted file; use kagiya secrets edit or patch"] + problems
    return problems


def _is_sops(text: str) -> bool:
    """formats.detect, imported only for a file that mentions sops at all (formats loads dataclasses)."""
    from kagiya.secrets import formats

    return formats.detect(text) == formats.SOPS


def quick_clean(text: str) -> bool:
    """True when an encrypted file is clean by two independent readings, without importing PyYAML: scan.py reads
    every Secret and finds only ciphertext, and the line scan finds no plaintext-looking value either; the
    trailer parses. Anything else (a plaintext file, a file outside the scanner's subset, any doubt) returns
    False and the file goes through PyYAML, which also gives the exact findings."""
    from kagiya.secrets import scan

    cut = kubesec.find_trailer(text)
    if cut < 0:
        return False
    body = text[:cut]
    docs = scan.scan(body)
    if not docs or any(not kubesec.VALUE_RE.match(s.value) for d in docs for s in d.slots):
        return False
    if line_scan(body, ""):
        return False
    try:
        envelope.read_trailer(manifest.Manifest(body, text[cut:], "\n", docs))
    except KagiyaError:
        return False
    return True


def plaintext_values(m: manifest.Manifest, name: str) -> list[str]:
    """One line per plaintext value: `FILE: Secret ns/name: data.password is plaintext`."""
    return [
        f"{name}: Secret {doc.identity}: {slot.label} is plaintext"
        for doc in m.secrets
        for slot in doc.slots
        if not m.encrypted or not kubesec.VALUE_RE.match(slot.value)
    ]


def _plain_looking(value: str) -> bool:
    """A value written in the file that is not a template expression, an encrypted value or empty."""
    value = value.split(" #", 1)[0].strip().strip("\"'")
    return bool(value) and "{{" not in value and not kubesec.VALUE_RE.match(value)


def line_scan(text: str, name: str) -> list[str]:
    """Secret-shaped plaintext in a file that is not YAML: `key: value` lines under a `data:` / `stringData:`
    line, in a file that says `kind: Secret`. Block values (`|`, `>`) are judged by their first line."""
    findings: list[str] = []
    lines = text.splitlines()
    section, indent, entry_indent = "", -1, -1
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith(("#", "{{")):
            continue
        width = len(line) - len(line.lstrip())
        head = _SECTION_LINE.match(line)
        if head:
            section, indent, entry_indent = head[2], width, -1
            rest = head[3]
            if rest.startswith("{") and "{{" not in rest and rest.strip("{} "):
                findings.append(f"{name}:{number}: {section} holds values in flow style outside any template "
                                "(not parsed as YAML: check it by hand)")
            continue
        if not section:
            continue
        if width <= indent:
            section = ""
            continue
        entry = _ENTRY_LINE.match(line)
        if entry is None or (entry_indent >= 0 and width != entry_indent):
            continue
        entry_indent = width
        value = entry[4] or ""
        if value[:1] in "|>":
            following = next((ln for ln in lines[number:] if ln.strip()), "")
            value = following if len(following) - len(following.lstrip()) > width else ""
        if _plain_looking(value):
            findings.append(f"{name}:{number}: {section}.{entry[3]} looks like a plaintext value "
                            "(file not parsed as YAML; line scan)")
    return findings
