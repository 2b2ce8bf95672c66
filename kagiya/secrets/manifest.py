"""Find Secrets in a YAML or JSON stream and the exact character range of every data/stringData value.

kubesec re-serialises the whole document; kagiya instead splices new scalars into the original text at the
positions the YAML parser reports (`start_mark.index` / `end_mark.index`), so comments, key order, quoting,
indentation and every non-Secret document stay byte-identical (docs/format.md, "beyond kubesec").
Multi-document streams, `kind: List` items, JSON manifests and CRLF files are handled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kagiya.errors import Invalid
from kagiya.secrets import kubesec
from kagiya.secrets.record import Record

SECTIONS = ("data", "stringData")
STR_TAG = "tag:yaml.org,2002:str"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_FIRST_BAD = set("-?:,[]{}#&*!|>'\"%@`")
_FLOW_BAD = set(",[]{}")


class ManifestError(Invalid):
    """The manifest cannot be processed (not YAML, not a string value, ...): 400 over HTTP."""

    code = "ManifestError"
    reason = "BadRequest"
    http_status = 400


class Slot(Record):
    """One data/stringData value: where it sits in the body and how it was written."""

    __slots__ = ("secret", "section", "key", "value", "start", "end", "style", "flow", "indent", "key_start")

    def __init__(self, secret: int, section: str, key: str, value: str, start: int, end: int, style: str,
                 flow: bool, indent: int, key_start: int = 0) -> None:
        self.secret = secret
        self.section = section
        self.key = key
        self.value = value
        self.start = start
        self.end = end
        self.style = style  # "" plain, "'" or '"' quoted, "|" or ">" block
        self.flow = flow
        self.indent = indent
        self.key_start = key_start

    @property
    def label(self) -> str:
        return f"{self.section}.{self.key}"


class SecretDoc(Record):
    __slots__ = ("ordinal", "namespace", "name", "slots", "insert_at", "column", "flow")

    def __init__(self, ordinal: int, namespace: str, name: str) -> None:
        self.ordinal = ordinal
        self.namespace = namespace
        self.name = name
        self.slots: list[Slot] = []
        #: Where a new top-level key can go (end of the line of the mapping's last value) and its column.
        self.insert_at = 0
        self.column = 0
        self.flow = False

    @property
    def identity(self) -> str:
        return f"{self.namespace or 'default'}/{self.name or '?'}"

    def section(self, name: str) -> list[tuple[str, str]]:
        return [(s.key, s.value) for s in self.slots if s.section == name]


class Manifest(Record):
    __slots__ = ("body", "trailer_text", "newline", "secrets")

    def __init__(self, body: str, trailer_text: str | None, newline: str, secrets: list[SecretDoc]) -> None:
        self.body = body
        self.trailer_text = trailer_text
        self.newline = newline
        self.secrets = secrets

    @property
    def encrypted(self) -> bool:
        return self.trailer_text is not None

    @property
    def slots(self) -> list[Slot]:
        return [s for doc in self.secrets for s in doc.slots]

    def has_string_data(self) -> bool:
        return any(s.section == "stringData" for s in self.slots)


def parse(text: str) -> Manifest:
    """Split off a kubesec trailer and locate every Secret value; raises ManifestError / FormatError."""
    cut = kubesec.find_trailer(text)
    body, trailer = (text, None) if cut < 0 else (text[:cut], text[cut:])
    newline = "\r\n" if "\r\n" in text else "\n"
    try:
        roots = [n for n in yaml.compose_all(body, Loader=_Loader) if n is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ManifestError(f"not a valid YAML/JSON manifest{where}: {problem}") from None
    secrets: list[SecretDoc] = []
    seen: set[int] = set()
    for root in roots:
        for node in _secret_nodes(root):
            secrets.append(_read_secret(body, node, len(secrets), seen))
    return Manifest(body, trailer, newline, secrets)


def _get(node: MappingNode, key: str) -> Node | None:
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == key:
            return v
    return None


def _scalar(node: MappingNode | None, key: str) -> str:
    if not isinstance(node, MappingNode):
        return ""
    value = _get(node, key)
    return value.value if isinstance(value, ScalarNode) else ""


def _unique(node: MappingNode, where: str) -> None:
    """Refuse a mapping that names a key twice. PyYAML keeps every pair and `_get` would take the first, while Go
    readers (kubectl, the apiserver, kubesec) take the last: a second `data:` or `kind:` would then hide plaintext
    from `encrypt` and `check` and still reach the cluster."""
    seen: dict[str, int] = {}
    for k, _ in node.value:
        if not isinstance(k, ScalarNode):
            continue
        line = k.start_mark.line + 1
        if k.value in seen:
            raise ManifestError(f"{where}: duplicate key {k.value!r} at line {line} (first at line {seen[k.value]}); "
                                "YAML readers disagree on which one counts")
        seen[k.value] = line


def _kind(node: MappingNode, where: str) -> str:
    """The document's kind; a mapping naming `kind` twice is refused whatever it is (kind: ConfigMap then
    kind: Secret would otherwise be skipped here and applied as a Secret by kubectl)."""
    if sum(1 for k, _ in node.value if isinstance(k, ScalarNode) and k.value == "kind") > 1:
        _unique(node, where)
    return _scalar(node, "kind")


def _secret_nodes(root: Node) -> Iterable[MappingNode]:
    if not isinstance(root, MappingNode):
        return
    where = f"document at line {root.start_mark.line + 1}"
    kind = _kind(root, where)
    if kind == "Secret":
        _unique(root, where)
        yield root
    elif kind.endswith("List"):
        _unique(root, where)
        items = _get(root, "items")
        if isinstance(items, SequenceNode):
            for item in items.value:
                if not isinstance(item, MappingNode):
                    continue
                item_where = f"List item at line {item.start_mark.line + 1}"
                if _kind(item, item_where) == "Secret":
                    _unique(item, item_where)
                    yield item


def _read_secret(body: str, node: MappingNode, ordinal: int, seen: set[int]) -> SecretDoc:
    meta = _get(node, "metadata")
    if isinstance(meta, MappingNode):
        _unique(meta, f"Secret at line {node.start_mark.line + 1}: metadata")
    doc = SecretDoc(ordinal, _scalar(meta, "namespace"), _scalar(meta, "name"))  # type: ignore[arg-type]
    where = f"Secret {doc.identity}"
    if node.value:
        last = node.value[-1][1].end_mark.index
        nl = body.find("\n", max(last - 1, 0))
        doc.insert_at = len(body) if nl < 0 else nl + 1
        doc.column = node.value[0][0].start_mark.column
    doc.flow = bool(node.flow_style)
    for section in SECTIONS:
        mapping = _get(node, section)
        if mapping is None or (isinstance(mapping, ScalarNode) and mapping.tag.endswith(":null")):
            continue
        if not isinstance(mapping, MappingNode):
            raise ManifestError(f"{where}: {section} must be a mapping")
        _unique(mapping, f"{where}: {section}")
        for knode, vnode in mapping.value:
            if not isinstance(knode, ScalarNode) or knode.tag != STR_TAG:
                raise ManifestError(f"{where}: {section} has a key that is not a string")
            key = knode.value
            if not isinstance(vnode, ScalarNode) or vnode.tag != STR_TAG:
                raise ManifestError(f"{where}: {section}.{key} must be a string value (quote it)")
            if id(vnode) in seen or body[vnode.start_mark.index] in "&*!":
                raise ManifestError(f"{where}: {section}.{key} uses an anchor, alias or tag; write the value out")
            seen.add(id(vnode))
            if "\0" in vnode.value:
                raise ManifestError(f"{where}: {section}.{key} contains a NUL character, which kubesec cannot carry")
            start, end = vnode.start_mark.index, vnode.end_mark.index
            style = vnode.style or ""
            if style in "|>" and style:
                end = _block_end(body, start, end)
            doc.slots.append(Slot(ordinal, section, key, vnode.value, start, end, style,
                                  bool(mapping.flow_style), knode.start_mark.column + 2, knode.start_mark.index))
    return doc


def _block_end(body: str, start: int, end: int) -> int:
    """A block scalar's range ends after its trailing line breaks; keep those breaks outside the value."""
    core = len(body[start:end].rstrip(" \t\r\n")) + start
    nl = body.find("\n", core, end)
    if nl < 0:
        return end
    return nl - 1 if nl > core and body[nl - 1] == "\r" else nl


def splice(body: str, replacements: Iterable[tuple[Slot, str]]) -> str:
    """Replace each slot's range with its new scalar text; everything else is copied unchanged."""
    out, pos = [], 0
    for slot, text in sorted(replacements, key=lambda r: r[0].start):
        out.append(body[pos:slot.start])
        out.append(text)
        pos = slot.end
    out.append(body[pos:])
    return "".join(out)


def render_cipher(slot: Slot, cipher: str, style: str | None = None) -> str:
    """Ciphertext keeps the quote style (base64 and dots never need escaping).

    `style` (the same value's style in the previous encrypted file) wins over the plaintext's own style, so that
    decrypt + re-encrypt does not requote lines whose plaintext needed quotes.
    """
    style = slot.style if style is None else style
    if style in ("'", '"'):
        return f"{style}{cipher}{style}"
    return cipher


def render_plain(slot: Slot, value: str, newline: str) -> str:
    """A plaintext scalar in the style the (encrypted) slot uses, falling back to a style that can carry it."""
    if slot.style == "" and _plain_ok(value, slot.flow):
        return value
    if slot.style == "'" and _printable(value) and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if slot.style == "" and not slot.flow and _block_ok(value):
        return _literal_block(value, slot.indent, newline)
    if slot.style == "" and value and _printable(value) and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    return double_quoted(value)


#: Characters a YAML scalar cannot hold unescaped (and that we escape in double quotes); tab and CR included.
_UNPRINTABLE_SOURCE = "[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufffe\uffff\u2028\u2029]"
_unprintable: re.Pattern[str] | None = None


def _unprintable_re() -> re.Pattern[str]:
    """Compiled on first use: a wide character class costs start-up time, and most values never need it."""
    global _unprintable
    if _unprintable is None:
        _unprintable = re.compile(_UNPRINTABLE_SOURCE)
    return _unprintable


def _printable(value: str) -> bool:
    # str.isprintable() is False for every character the class above names (controls, surrogates, BOM,
    # non-characters, line/paragraph separators), so a True answer settles it without a regex
    return value.isprintable() or _unprintable_re().search(value) is None


def _needs_escape(c: str) -> bool:
    o = ord(c)
    if o < 0x20:
        return c not in "\n\t\r"
    return 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF, 0x2028, 0x2029, 0xFEFF)


_resolver = yaml.resolver.Resolver()


def _plain_ok(value: str, flow: bool) -> bool:
    if not value or value != value.strip() or "\n" in value or not _printable(value):
        return False
    if value[0] in _PLAIN_FIRST_BAD or ": " in value or " #" in value or value.endswith(":"):
        return False
    if flow and any(c in _FLOW_BAD for c in value):
        return False
    return plain_is_string(value)


#: Plain scalars Go's YAML 1.1 reader (gopkg.in/yaml.v2, behind sigs.k8s.io/yaml: kubectl, the apiserver,
#: kubesec) reads as a bool, null, number or timestamp, beyond what PyYAML's own YAML 1.1 resolver reports.
_GO_WORDS = frozenset(
    "y Y yes Yes YES on On ON true True TRUE n N no No NO off Off OFF false False FALSE ~ null Null NULL "
    ".nan .NaN .NAN .inf .Inf .INF +.inf +.Inf +.INF -.inf -.Inf -.INF <<".split()
)
_GO_NUMERIC_SOURCE = (
    r"^[-+]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)$"  # ParseInt/ParseUint base 0, "0b"
    r"|^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"  # yamlStyleFloat
    r"|^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"  # the start of any timestamp form
)
_go_numeric: re.Pattern[str] | None = None


def plain_is_string(value: str) -> bool:
    """Whether a plain (unquoted) scalar reads back as this same string in both YAML 1.1 readers that matter:
    PyYAML (ours) and Go's yaml.v2 (kubectl's). kubectl fails on `stringData: {a: y}` ("cannot unmarshal bool")
    and would turn `b: 1e3` into a number, so such values are written quoted."""
    global _go_numeric
    if value in _GO_WORDS:
        return False
    if value[0] in "0123456789+-.":
        if _go_numeric is None:  # compiled on first use: most runs never get here
            _go_numeric = re.compile(_GO_NUMERIC_SOURCE)
        if _go_numeric.match(value.replace("_", "")):
            return False
    return _resolver.resolve(ScalarNode, value, (True, False)) == STR_TAG


def render_key(key: str) -> str:
    """A mapping key as written by create/patch: plain when every reader takes it as this string, else quoted
    (`y:` would become the key "true" in kubectl)."""
    if _plain_ok(key, False) and "'" not in key:
        return key
    return double_quoted(key)


def _block_ok(value: str) -> bool:
    if "\n" not in value or value.endswith("\n\n") or not _printable(value):
        return False
    first = value.split("\n", 1)[0]
    return bool(first) and not first[0].isspace()


def _literal_block(value: str, indent: int, newline: str) -> str:
    indicator = "|" if value.endswith("\n") else "|-"
    lines = (value[:-1] if value.endswith("\n") else value).split("\n")
    pad = " " * indent
    return indicator + "".join(newline + (pad + line if line else "") for line in lines)


def double_quoted(value: str) -> str:
    """A double-quoted scalar that is valid both as YAML and as a JSON string."""
    import json
    text = json.dumps(value, ensure_ascii=False)
    if not text.isprintable() and _unprintable_re().search(text):
        text = "".join(f"\\u{ord(c):04x}" if _needs_escape(c) and ord(c) <= 0xFFFF else c for c in text)
    return text


_B64_SOURCE = r"[A-Za-z0-9+/]*={0,2}"
_b64_re: re.Pattern[str] | None = None


def valid_base64(value: str) -> bool:
    """kubesec checks data values are standard base64 (it encrypts the text, not the decoded bytes).

    Like Go's decoder (kubesec, the apiserver), line breaks are ignored, so `|` blocks of base64 pass.
    """
    if "\n" in value:
        value = value.replace("\r", "").replace("\n", "")
    global _b64_re
    if _b64_re is None:  # compiled on first use (decrypt never needs it)
        _b64_re = re.compile(_B64_SOURCE)
    return len(value) % 4 == 0 and _b64_re.fullmatch(value) is not None
