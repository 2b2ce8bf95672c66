"""The safety net behind `encrypt`'s PyYAML-free path: prove, without the scanner, that the output holds no plaintext.

ops.encrypt reads the plainest files with scan.py instead of PyYAML (issue 13). A mistake there would not fail like
it does on decrypt (the MAC): a value the scanner missed would be written out as plaintext. So the output is read
again here by code that shares nothing with scan.py: a few regular expressions over the whole text, run in C.
Every `data:` / `stringData:` line, at any indentation and in any document, opens a region that runs to the next
line indented no deeper; each line of the region must be blank, a comment or `key: CIPHERTEXT` (kubesec's value
shape), and the number of such entries in the file must equal the number of values encrypted. Anything else (a
ConfigMap's `data:` in the same file, a `data:` key inside a Secret's data, odd quoting) is a doubt: ops.encrypt
then encrypts the file again through PyYAML. A false alarm costs time; a pass means no data value is plaintext.
"""

from __future__ import annotations

import re

_CIPHER = r"(?:[A-Za-z0-9+/]+={0,2}\.)?[A-Za-z0-9+/]{16}\.[A-Za-z0-9+/]{22}=="
_TAIL = r"\.[A-Za-z0-9+/]{16}\.[A-Za-z0-9+/]{22}=="  # the last 42 characters of every value: .IV.TAG
_B64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_compiled: tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]] | None = None


def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    global _compiled
    if _compiled is None:  # compiled on first use: only encrypt needs them
        _compiled = (re.compile(r"""["']?(?:data|stringData)["']?[ ]*:"""),
                     re.compile(r"""["']?[A-Za-z0-9_./-]+["']?[ ]*: +"""),
                     re.compile(_CIPHER), re.compile(_TAIL))
    return _compiled


def only_ciphertext(body: str, values: int) -> bool:
    """True when `body` (an encrypted manifest without its trailer) holds exactly `values` data/stringData
    entries and every one of them is ciphertext; False on any doubt.

    Line by line with anchored matches, never a regex search through the text: values may be megabytes long."""
    if "\r" in body or "\t" in body:
        return False
    if not body.isascii() and ("\x85" in body or "\u2028" in body or "\u2029" in body):
        return False  # YAML 1.1 line breaks (PyYAML, libyaml): a "comment" line may hold a value after one
    header, entry, cipher, tail = _patterns()

    def is_cipher(value: str) -> bool:
        if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        if len(value) < 256:
            return cipher.fullmatch(value) is not None
        # a long value: the same check without a regex walking megabytes (bytes.translate runs ~5x faster)
        body = value[:-42].rstrip("=")
        return (tail.fullmatch(value, len(value) - 42) is not None and len(value) - 42 - len(body) <= 2
                and body.isascii() and not body.encode("ascii").translate(None, _B64_BYTES))

    found, region = 0, -1  # region: the indentation of the open data/stringData line, -1 outside one
    for line in body.split("\n"):
        stripped = line.lstrip(" ")
        if not stripped or stripped[0] == "#":
            continue  # blank or comment line
        indent = len(line) - len(stripped)
        if indent <= region:
            region = -1
        head = header.match(stripped)
        rest = stripped[head.end():].strip(" ") if head else ""
        if head and (not rest or rest[0] == "#"):
            if region >= 0:
                return False  # a section line inside a section: nested, not a flat block of values
            region = indent
            continue
        if head and not is_cipher(rest):
            return False  # `data: {…}`, `data: value`: not a block of ciphertext
        if region < 0:
            continue
        key = entry.match(stripped)
        if key is None or not is_cipher(stripped[key.end():].rstrip(" ")):
            return False
        found += 1
    return found == values
