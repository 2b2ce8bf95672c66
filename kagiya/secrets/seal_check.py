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
_HEADER_SOURCE = r"""^( *)["']?(?:data|stringData)["']?[ ]*:(.*)$"""
_ENTRY = rf""" +["']?[A-Za-z0-9_./-]+["']? *: +(?:{_CIPHER}|'{_CIPHER}'|"{_CIPHER}") *"""
_REGION_SOURCE = rf"(?:(?: *(?:#[^\n]*)?|{_ENTRY})\n)*"
_ENTRY_LINE_SOURCE = rf"^{_ENTRY}$"
_compiled: tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]] | None = None


def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    global _compiled
    if _compiled is None:  # compiled on first use: only encrypt needs them
        _compiled = (re.compile(_HEADER_SOURCE, re.M), re.compile(_REGION_SOURCE), re.compile(_ENTRY_LINE_SOURCE, re.M),
                     re.compile(rf"{_CIPHER}|'{_CIPHER}'|\"{_CIPHER}\""))
    return _compiled


def only_ciphertext(body: str, values: int) -> bool:
    """True when `body` (an encrypted manifest without its trailer) holds exactly `values` data/stringData
    entries and every one of them is ciphertext; False on any doubt."""
    if "\r" in body or "\t" in body:
        return False
    header, region, entry, header_rest = _patterns()
    text = body if body.endswith("\n") else body + "\n"
    found = 0
    for head in header.finditer(text):
        rest = head[2].strip(" ")
        if rest and not rest.startswith("#"):
            if header_rest.fullmatch(rest) is None:
                return False  # `data: {…}`, `data: value`: not a block of ciphertext
            continue  # a value named data/stringData, itself ciphertext: its own region is checked
        width = len(head[1])
        start = head.end() + 1
        end_at = re.compile(rf"^ {{0,{width}}}[^ \n#]", re.M).search(text, start)
        stop = len(text) if end_at is None else end_at.start()
        if region.fullmatch(text, start, stop) is None:
            return False
        found += len(entry.findall(text, start, stop))
    return found == values
