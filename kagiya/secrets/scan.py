"""A YAML-free reader for the plainest Secret files, so `kagiya secrets decrypt` need not import PyYAML.

`scan` understands one strict subset of YAML: block mappings only, `key: value` lines with plain keys, plain or
simply quoted one-line values, full-line comments, `---` between documents. It returns None for anything else
(tabs, CR, sequences, flow style, block scalars, anchors, tags, trailing comments, escapes, duplicate keys, a
`kind: List`…), and the caller then parses with PyYAML as before. Where it does answer, it finds exactly the
Secrets and value positions PyYAML's reading gives (tests/secrets/test_scan.py compares the two on generated
files). On decrypt a wrong answer cannot leak anything: every value found must decrypt and the MAC covers every
value of the file, so a value missed or misplaced fails the command. On encrypt a missed value would stay
plaintext, so ops.encrypt keeps the result only when seal_check.py, which shares no code with this module,
finds nothing but ciphertext in the output, and otherwise encrypts the file again through PyYAML.
"""

from __future__ import annotations

import re

from kagiya.secrets.manifest import base64ish

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kagiya.secrets.manifest import SecretDoc

_LINE_SOURCE = r" *([A-Za-z0-9_][A-Za-z0-9_./-]*):"
_line: re.Pattern[str] | None = None
_PLAIN_FIRST_BAD = set("-?:,[]{}#&*!|>'\"%@` ")
#: Line breaks of YAML 1.1 besides \n and \r: `# note<U+2028>  b: value` is a comment to us, a value to PyYAML.
_UNICODE_BREAKS = ("\x85", "\u2028", "\u2029")


class _Map:
    __slots__ = ("indent", "items", "keys")

    def __init__(self, indent: int) -> None:
        self.indent = indent
        #: (key, key index, value: _Map | (text, start, end, style) | None)
        self.items: list[tuple[str, int, object]] = []
        self.keys: set[str] = set()


def _scalar(rest: str, start: int) -> tuple[str, int, int, str] | None:
    """(value, start, end, style) of a one-line scalar, or None when it is outside the subset."""
    if not rest or rest[-1] == " ":
        return None
    if rest[0] == "'":
        inner = rest[1:-1]
        if len(rest) < 2 or rest[-1] != "'" or "'" in inner or not inner.isprintable():
            return None
        return inner, start, start + len(rest), "'"
    if rest[0] == '"':
        inner = rest[1:-1]
        if len(rest) < 2 or rest[-1] != '"' or '"' in inner or "\\" in inner or not inner.isprintable():
            return None
        return inner, start, start + len(rest), '"'
    if len(rest) > 64 and base64ish(rest):  # ciphertext: one regex pass instead of four over a long value
        return rest, start, start + len(rest), ""
    if rest[0] in _PLAIN_FIRST_BAD or ": " in rest or " #" in rest or rest.endswith(":") or not rest.isprintable():
        return None
    return rest, start, start + len(rest), ""


def _document(body: str, begin: int, end: int) -> _Map | None:
    """The root mapping of the document in body[begin:end], or None when outside the subset."""
    global _line
    if _line is None:
        _line = re.compile(_LINE_SOURCE)
    root = _Map(0)
    stack: list[_Map] = [root]
    pending: tuple[_Map, int] | None = None  # a `key:` line waiting for its nested mapping (parent, its indent)
    pos = begin
    while pos < end:
        nl = body.find("\n", pos, end)
        stop = end if nl < 0 else nl
        start, pos = pos, stop + 1
        first = start
        while first < stop and body[first] == " ":
            first += 1
        if first == stop or body[first] == "#":
            continue  # blank or comment line
        m = _line.match(body, start, stop)  # the key part only: values may be megabytes long
        if m is None:
            return None
        indent = first - start
        key = m[1]
        if pending is not None:
            parent, parent_indent = pending
            pending = None
            if indent > parent_indent:
                child = _Map(indent)
                parent_key, key_at, _ = parent.items[-1]
                parent.items[-1] = (parent_key, key_at, child)
                stack.append(child)
        while stack and indent < stack[-1].indent:
            stack.pop()
        if not stack or indent != stack[-1].indent:
            return None
        current = stack[-1]
        if key in current.keys:
            return None  # duplicate key: PyYAML's path reports it
        current.keys.add(key)
        after = m.end()
        if after == stop:  # `key:` opens a nested mapping (or is null)
            current.items.append((key, first, None))
            pending = (current, indent)
            continue
        if body[after] != " " or after + 1 == stop:
            return None  # `key:x` or `key: ` with nothing after the space
        value = _scalar(body[after + 1:stop], after + 1)
        if value is None:
            return None
        current.items.append((key, first, value))
    return root


def _get(mapping: _Map, key: str) -> object:
    for k, _, v in mapping.items:
        if k == key:
            return v
    return None


def _text(value: object) -> str:
    return value[0] if isinstance(value, tuple) else ""


def scan(body: str) -> list[SecretDoc] | None:
    """The Secrets of `body` (a manifest without its trailer) with every value's position, or None."""
    from kagiya.secrets.manifest import SECTIONS, SecretDoc, Slot, plain_is_string

    if "\t" in body or "\r" in body or body.startswith("%") or "\n..." in body or body.startswith("..."):
        return None
    if not body.isascii() and any(brk in body for brk in _UNICODE_BREAKS):
        return None  # PyYAML (and libyaml-based readers) end a line, even a comment, at these; we split on \n only
    bounds, begin, at = [], 0, 0 if body.startswith("---") else body.find("\n---")
    while at >= 0:  # `---` lines (str.find: a multi-line regex would crawl through megabyte values)
        line_start = at if at == 0 and body.startswith("---") else at + 1
        nl = body.find("\n", line_start)
        line_end = len(body) if nl < 0 else nl
        if body[line_start + 3:line_end].strip(" "):
            return None  # `--- something`: not in the subset
        bounds.append((begin, line_start))
        begin = line_end + 1
        at = body.find("\n---", line_end)
    bounds.append((min(begin, len(body)), len(body)))
    docs: list[SecretDoc] = []
    for begin, end in bounds:
        root = _document(body, begin, max(begin, end))
        if root is None:
            return None
        kind = _get(root, "kind")
        if not isinstance(kind, tuple) or kind[0].endswith("List"):
            if kind is None and not root.items:
                continue
            if isinstance(kind, tuple):
                return None  # a List: its items are a sequence, PyYAML's path reads them
            continue
        if kind[0] != "Secret":
            continue
        if kind[3] == "" and not plain_is_string(kind[0]):
            return None
        meta = _get(root, "metadata")
        meta_map = meta if isinstance(meta, _Map) else None
        doc = SecretDoc(len(docs), _text(_get(meta_map, "namespace")) if meta_map else "",
                        _text(_get(meta_map, "name")) if meta_map else "")
        for section in SECTIONS:
            mapping = _get(root, section)
            if mapping is None:
                continue
            if not isinstance(mapping, _Map):
                return None
            for key, key_at, value in mapping.items:
                if not isinstance(value, tuple):
                    return None
                text, start, stop, style = value
                if style == "" and not plain_is_string(text):
                    return None
                if not plain_is_string(key):
                    return None
                doc.slots.append(Slot(doc.ordinal, section, key, text, start, stop, style, False,
                                      mapping.indent + 2, key_at))
        docs.append(doc)
    return docs
