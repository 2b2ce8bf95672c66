"""Find Secrets in a YAML or JSON stream and the exact character range of every data/stringData value.

kubesec re-serialises the whole document; kagiya instead splices new scalars into the original text at the
positions the YAML parser reports (`start_mark.index` / `end_mark.index`), so comments, key order, quoting,
indentation and every non-Secret document stay byte-identical (docs/format.md, "beyond kubesec").
Multi-document streams, `kind: List` items, JSON manifests and CRLF files are handled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kagiya.errors import Invalid
from kagiya.secrets import kubesec
from kagiya.secrets.record import Record

SECTIONS = ("data", "stringData")
STR_TAG = "tag:yaml.org,2002:str"
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
    __slots__ = ("body", "trailer_text", "newline", "secrets", "scanned")

    def __init__(self, body: str, trailer_text: str | None, newline: str, secrets: list[SecretDoc],
                 scanned: bool = False) -> None:
        self.body = body
        self.trailer_text = trailer_text
        self.newline = newline
        self.secrets = secrets
        self.scanned = scanned  # read by scan.py rather than PyYAML

    @property
    def encrypted(self) -> bool:
        return self.trailer_text is not None

    @property
    def slots(self) -> list[Slot]:
        return [s for doc in self.secrets for s in doc.slots]

    def has_string_data(self) -> bool:
        return any(s.section == "stringData" for s in self.slots)


def parse(text: str, *, quick: bool = False) -> Manifest:
    """Split off a kubesec trailer and locate every Secret value; raises ManifestError / FormatError.

    With `quick`, the plainest files are read by scan.py without importing PyYAML. Only decrypt (where a wrong
    answer fails the MAC, see scan.py) and encrypt (whose output ops.encrypt re-checks, falling back to PyYAML
    on any doubt) use it. Everything else, and every other command, goes through PyYAML."""
    cut = kubesec.find_trailer(text)
    body, trailer = (text, None) if cut < 0 else (text[:cut], text[cut:])
    newline = "\r\n" if "\r\n" in text else "\n"
    if quick:
        from kagiya.secrets import scan

        docs = scan.scan(body)
        if docs is not None:
            return Manifest(body, trailer, newline, docs, scanned=True)
    from kagiya.secrets import manifest_yaml

    return Manifest(body, trailer, newline, manifest_yaml.read_secrets(body))


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


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def only_chars(value: str, allowed: bytes) -> bool:
    """Whether every character of `value` is one of the ASCII `allowed`: bytes.translate deletes them in one C
    loop, several times faster than a character-class regex on megabyte values (issue 13's 5 MB case)."""
    return value.isascii() and not value.encode("ascii").translate(None, allowed)


def base64ish(value: str) -> bool:
    """Only base64 and kubesec-ciphertext characters (`A-Za-z0-9+/=.`): such a non-empty value needs none of
    the per-character checks of a plain scalar below, and one pass is much cheaper than those on a
    megabyte value."""
    return bool(value) and only_chars(value, _BASE64_ALPHABET + b"=.")


def _plain_ok(value: str, flow: bool) -> bool:
    if len(value) > 64 and base64ish(value):
        return plain_is_string(value)
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
#: PyYAML's YAML 1.1 implicit resolvers (bool, float, int, merge, null, timestamp, value), as in yaml/resolver.py,
#: so rendering needs no PyYAML import; tests/secrets/test_scan.py checks this agrees with PyYAML's resolver.
_PYYAML_NONSTR_SOURCE = r"""^(?:
      yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
    | [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    | \.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    | [-+]?\.(?:inf|Inf|INF)
    | \.(?:nan|NaN|NAN)
    | [-+]?0b[0-1_]+
    | [-+]?0[0-7_]+
    | [-+]?(?:0|[1-9][0-9_]*)
    | [-+]?0x[0-9a-fA-F_]+
    | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
    | <<
    | ~|null|Null|NULL
    | [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    | [0-9][0-9][0-9][0-9]\ -[0-9][0-9]?\ -[0-9][0-9]?
      (?:[Tt]|[\ \t]+)[0-9][0-9]?
      :[0-9][0-9]\ :[0-9][0-9]\ (?:\.[0-9]*)?
      (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?
    | = | ! | & | \*
    )$"""
_pyyaml_nonstr: re.Pattern[str] | None = None


def plain_is_string(value: str) -> bool:
    """Whether a plain (unquoted) scalar reads back as this same string in both YAML 1.1 readers that matter:
    PyYAML (ours) and Go's yaml.v2 (kubectl's). kubectl fails on `stringData: {a: y}` ("cannot unmarshal bool")
    and would turn `b: 1e3` into a number, so such values are written quoted."""
    global _go_numeric, _pyyaml_nonstr
    if value in _GO_WORDS or not value:
        return False
    if value[0] in "0123456789+-.":
        if _go_numeric is None:  # compiled on first use: most runs never get here
            _go_numeric = re.compile(_GO_NUMERIC_SOURCE)
        if _go_numeric.match(value.replace("_", "")):
            return False
    if value[0] not in "yYnNtTfFoO-+0123456789.<~=!&*":
        return True  # no YAML 1.1 implicit type starts with anything else
    if _pyyaml_nonstr is None:
        _pyyaml_nonstr = re.compile(_PYYAML_NONSTR_SOURCE, re.X)
    return _pyyaml_nonstr.match(value) is None


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


def valid_base64(value: str) -> bool:
    """kubesec checks data values are standard base64 (it encrypts the text, not the decoded bytes).

    Like Go's decoder (kubesec, the apiserver), line breaks are ignored, so `|` blocks of base64 pass.
    """
    if "\n" in value:
        value = value.replace("\r", "").replace("\n", "")
    body = value.rstrip("=")
    return len(value) % 4 == 0 and len(value) - len(body) <= 2 and only_chars(body, _BASE64_ALPHABET)
