"""sops YAML and JSON documents: walk the values in sops' order, decrypt, verify the MAC, render the plaintext.

YAML keeps the file's own text: each `ENC[…]` scalar and `#ENC[…]` comment is replaced where it stands and the
`sops:` block is cut out, so order, comments, indentation and unencrypted values stay as they were. Plain scalars
are typed as sops (go-yaml v3, YAML 1.2 core schema) types them, because the MAC covers `True`, `1.5`, `3`, not
the text. JSON is re-emitted in the same key order with sops' tab indentation. See formats/sops.py for the crypto.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kagiya.errors import CryptoError
from kagiya.secrets.formats import sops
from kagiya.secrets.formats.sops import Metadata, SopsFormatError

_COMMENT_RE = re.compile(r"#(ENC\[AES256_GCM,data:[^\]\s]*,iv:[^\]\s]+,tag:[^\]\s]+,type:comment\])")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_TRAILING = re.compile(r"[ \t]*:?[ \t]+#")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


@dataclass
class Decrypted:
    text: str
    meta: Metadata
    used: str
    #: (path, plaintext) of every string value, in order: what exec-env / exec-file hand to a child.
    values: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)


def yaml12(node: ScalarNode) -> Any:
    """A scalar as go-yaml v3 decodes it into interface{} (YAML 1.2 core schema); quoted and block scalars and
    explicitly tagged ones are strings."""
    value = node.value
    if node.style or node.tag != _implicit_tag(value):
        return value
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value, 0) if value[:2] in ("0o", "0x") else int(value, 10)
    if _FLOAT.match(value):
        return float(value)
    if value.lower().lstrip("+-") in (".inf", ".nan") and value[-3:] in ("inf", "Inf", "INF", "nan", "NaN", "NAN"):
        return float(value.replace(".", "").lower())
    return value


_RESOLVER = yaml.resolver.Resolver()


def _implicit_tag(value: str) -> str:
    return str(_RESOLVER.resolve(ScalarNode, value, (True, False)))


class _Walk:
    """Decrypt values in sops' walk order, collecting replacements and feeding the MAC."""

    def __init__(self, meta: Metadata, aead: AESGCM) -> None:
        self.meta, self.aead = meta, aead
        self.mac = sops.MacHasher(meta)
        self.values: list[tuple[tuple[str, ...], Any]] = []

    def leaf(self, path: tuple[str, ...], value: Any) -> Any:
        """The plaintext for one value (typed), after adding it to the MAC."""
        encrypted = self.meta.should_encrypt(path)
        where = ".".join(path) or "(top)"
        if encrypted and value is not None:
            if not isinstance(value, str):
                raise CryptoError(f"{where}: expected an encrypted value; the file was changed after encryption")
            if value != "":
                kind, plain = sops.decrypt_value(self.aead, value, ":".join(path) + ":", where)
                if kind == "comment":
                    raise CryptoError(f"{where}: a comment was put in place of a value")
                value = sops.typed(kind, plain, where)
        self.mac.add(value, encrypted)
        if isinstance(value, str):
            self.values.append((path, value))
        return value


class CommentText(str):
    """A comment's text (after `#`): encrypted with `type:comment` and never part of the MAC."""


def scan_yaml(doc: Node) -> Iterator[tuple[tuple[str, ...], Node]]:
    """(path, scalar node) of every value in sops' walk order, the top-level `sops` key left out."""
    refuse_aliases(doc)
    return _scan_yaml(doc, (), True)


def refuse_aliases(doc: Node) -> None:
    """sops never writes anchors or aliases; a node reached twice would make every walk here exponential
    (a "billion laughs" file), so such a file is refused before any walk."""
    seen: set[int] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise SopsFormatError("YAML anchors and aliases are not allowed in sops files")
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def _key_nodes(node: Node, path: tuple[str, ...]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(start, parent path) of every mapping key: a comment before a key is encrypted under that key's parent."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield key.start_mark.index, path
            yield from _key_nodes(value, (*path, str(key.value)))
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _key_nodes(item, path)


def _scalar_spans(node: Node) -> Iterator[tuple[int, int]]:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield from _scalar_spans(key)
            yield from _scalar_spans(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _scalar_spans(item)
    else:
        yield node.start_mark.index, node.end_mark.index


def comments_with_paths(text: str, doc: Node) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """(start of `#`, end of line, path) of each plaintext comment of a single-document `text`: whole-line
    comments outside any scalar (path: the parent of the next key, which go-yaml attaches them to) and comments
    after a scalar on its line (path: the parent of that line's key)."""
    spans = sorted(_scalar_spans(doc))
    keys = sorted(_key_nodes(doc, ()))
    finish = doc.end_mark.index
    line_start = 0
    while line_start < len(text):
        line_end = text.find("\n", line_start)
        line_end = len(text) if line_end < 0 else line_end
        line = text[line_start:line_end]
        if line_start > finish:
            break
        end = line_end - 1 if line.endswith("\r") else line_end
        stripped = line.lstrip()
        if stripped.startswith("#") and not any(s < line_start < e for s, e in spans):
            following = [p for start, p in keys if start > line_start]  # a head comment: the next key's
            yield line_start + len(line) - len(stripped), end, following[0] if following else ()
        else:
            ends = [e for _, e in spans if line_start <= e <= line_end]
            trailing = _TRAILING.match(text, max(ends), line_end) if ends else None
            if trailing:  # a line comment: the key on its line
                preceding = [p for start, p in keys if start < trailing.end()]
                yield trailing.end() - 1, end, preceding[-1] if preceding else ()
        line_start = line_end + 1


def _scan_yaml(node: Node, path: tuple[str, ...], top: bool) -> Iterator[tuple[tuple[str, ...], Node]]:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise SopsFormatError("sops files have only string keys")
            if top and key.value == "sops":
                continue
            yield from _scan_yaml(value, (*path, key.value), False)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _scan_yaml(item, path, False)
    else:
        yield path, node


def _mapping_paths(node: Node, path: tuple[str, ...]) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """(start, end, path) of every mapping/sequence: comments inside one are encrypted under its path."""
    if isinstance(node, MappingNode | SequenceNode):
        yield node.start_mark.index, node.end_mark.index, path
        for key, value in (node.value if isinstance(node, MappingNode) else [(None, v) for v in node.value]):
            yield from _mapping_paths(value, (*path, key.value) if key is not None else path)


def _render_yaml(value: Any) -> str:
    from kagiya.secrets import manifest

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return sops.go_float(value)
    text = str(value)
    plain_safe = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./+=-]*", text) is not None
    if plain_safe and _implicit_tag(text) == "tag:yaml.org,2002:str" and text not in _BOOL and not _NULL.match(text):
        return text
    return manifest.double_quoted(text)


def _load_metadata(docs: list[Node]) -> Metadata:
    for doc in docs:
        if isinstance(doc, MappingNode):
            for key, value in doc.value:
                if isinstance(key, ScalarNode) and key.value == "sops":
                    raw = yaml.safe_load(yaml.serialize(value))
                    return sops.parse_metadata(raw)
    raise SopsFormatError("not a sops file: no top-level sops: metadata")


def decrypt_yaml(text: str, settings: object) -> Decrypted:
    try:
        docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise SopsFormatError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    for doc in docs:
        refuse_aliases(doc)
    meta = _load_metadata(docs)
    dek, used = sops.unwrap_data_key(meta, settings)
    aead = AESGCM(dek)
    walk = _Walk(meta, aead)
    edits: list[tuple[int, int, str]] = []
    containers: list[tuple[int, int, tuple[str, ...]]] = []
    for doc in docs:
        containers.extend(_mapping_paths(doc, ()))
        for path, node in scan_yaml(doc):
            raw = yaml12(node)  # type: ignore[arg-type]
            plain = walk.leaf(path, raw)
            if plain is not raw:
                edits.append((node.start_mark.index, node.end_mark.index, _render_yaml(plain)))
        if isinstance(doc, MappingNode):  # cut the sops: block, from its line start to the end of its value
            for key, value in doc.value:
                if isinstance(key, ScalarNode) and key.value == "sops":
                    start = text.rfind("\n", 0, key.start_mark.index) + 1
                    end = value.end_mark.index
                    edits.append((start, end, ""))
    sops.check_mac(aead, meta, walk.mac.hexdigest())
    # a value or the sops block may hold text that looks like an encrypted comment: only real comments count
    taken = sorted([(s, e) for doc in docs for s, e in _scalar_spans(doc)] + [(s, e) for s, e, r in edits if r == ""])
    starts = [s for s, _ in taken]
    ends = list(itertools.accumulate((e for _, e in taken), max))  # spans may nest (the sops block): running max
    edits.extend(c for c in _comment_edits(text, aead, meta, containers)
                 if not (i := bisect.bisect_right(starts, c[0])) or ends[i - 1] <= c[0])
    return Decrypted(apply_edits(text, edits), meta, used, walk.values)


def apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, replacement) made, in one pass: rebuilding the string per edit was
    quadratic, and a valid encrypted comment copied 100,000 times is 100,000 edits. Edits do not overlap."""
    pieces: list[str] = []
    pos = 0
    for start, end, replacement in sorted(edits, key=lambda e: e[0]):
        pieces += (text[pos:start], replacement)
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


#: Failed comment decryptions allowed per file. Comments are outside the MAC, so anyone may add thousands of
#: `#ENC[…]` lines (and `k: {}` entries, which add paths but no value): each is tried under every path, which was
#: quadratic (minutes for a few hundred KiB). Past this budget the remaining comments stay as written.
MAX_COMMENT_TRIES = 50_000


def _comment_edits(text: str, aead: AESGCM, meta: Metadata,
                   containers: list[tuple[int, int, tuple[str, ...]]]) -> Iterator[tuple[int, int, str]]:
    """Decrypt `#ENC[…]` comments under their mapping's path; sops keeps a comment it cannot decrypt as it is."""
    paths = [p for p in [(), *sorted({p for _, _, p in containers}, key=len, reverse=True)] if meta.should_encrypt(p)]
    matches = list(_COMMENT_RE.finditer(text))
    budget = MAX_COMMENT_TRIES
    for match, inner in zip(matches, _enclosing(containers, [m.start() for m in matches]), strict=True):
        for path in itertools.chain((p for p in inner if meta.should_encrypt(p)), paths):
            if budget <= 0:
                return
            try:
                _, plain = sops.decrypt_value(aead, match.group(1), ":".join(path) + ":", "comment")
            except CryptoError:
                budget -= 1
                continue
            if any(brk in plain for brk in "\r\n\x85\u2028\u2029"):
                # sops encrypts a comment line by line; this is a value's ciphertext moved here (`type:` is not
                # authenticated), whose line breaks would turn the rest of it into YAML (keys for exec-env)
                break
            yield match.start(), match.end(), "#" + plain
            break


def _enclosing(containers: list[tuple[int, int, tuple[str, ...]]],
               positions: list[int]) -> Iterator[list[tuple[str, ...]]]:
    """For each of the ascending `positions`, the paths of the containers around it, deepest first, in one sweep
    (containers nest, so the open ones form a stack)."""
    order = sorted(containers, key=lambda c: (c[0], -c[1]))
    stack: list[tuple[int, int, tuple[str, ...]]] = []
    i = 0
    for pos in positions:
        while i < len(order) and order[i][0] <= pos:
            while stack and stack[-1][1] < order[i][0]:
                stack.pop()
            stack.append(order[i])
            i += 1
        while stack and stack[-1][1] < pos:
            stack.pop()
        yield sorted((p for s, e, p in stack if s <= pos <= e), key=len, reverse=True)


def decrypt_json(text: str, settings: object) -> Decrypted:
    try:
        doc = json.loads(text, object_pairs_hook=lambda pairs: dict(pairs))
    except ValueError as exc:
        raise SopsFormatError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "sops" not in doc:
        raise SopsFormatError("not a sops file: no top-level \"sops\" metadata")
    meta = sops.parse_metadata(doc.pop("sops"))
    dek, used = sops.unwrap_data_key(meta, settings)
    aead = AESGCM(dek)
    walk = _Walk(meta, aead)

    def visit(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: visit(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v, path) for v in value]
        return walk.leaf(path, value)

    plain = visit(doc, ())
    sops.check_mac(aead, meta, walk.mac.hexdigest())
    return Decrypted(_dump_json(plain), meta, used, walk.values)


def _dump_json(value: Any) -> str:
    """sops' JSON output: tab indentation, and numbers as Go's encoding/json writes a float64 (`5432`, not
    Python's `5432.0`; sops' JSON store reads every number as a float64). Floats become placeholder strings,
    replaced after json.dumps (which has no hook for the text of a float)."""
    import secrets

    token = secrets.token_hex(16)
    floats: list[str] = []

    def swap(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items()}
        if isinstance(item, list):
            return [swap(v) for v in item]
        if isinstance(item, float):
            floats.append(_go_json_float(item))
            return f"{token}-{len(floats) - 1}"
        return item

    text = json.dumps(swap(value), indent="\t", ensure_ascii=False) + "\n"
    if floats:
        text = re.sub(f'"{token}-([0-9]+)"', lambda m: floats[int(m[1])], text)
    return text


def _go_json_float(value: float) -> str:
    """encoding/json's float64: shortest digits, `f` form unless |v| < 1e-6 or >= 1e21 (then `1e-7`, `1e+21`)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise CryptoError("a JSON number decrypted to NaN or infinity")
    if value == 0 or 1e-6 <= abs(value) < 1e21:
        text = sops.go_float(value)
        return "-0" if text == "-0" or (value == 0 and str(value).startswith("-")) else text
    mantissa, _, exponent = repr(value).partition("e")
    return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0') or '0'}"


def decrypt(text: str, settings: object) -> Decrypted:
    """A sops YAML or JSON file, by its first non-blank character (`{` is JSON), fully verified."""
    try:
        return decrypt_json(text, settings) if text.lstrip().startswith("{") else decrypt_yaml(text, settings)
    except RecursionError:  # PyYAML's composer, json and the walks here recurse once per level of `[[[…`
        raise SopsFormatError("the file is nested too deeply to be a sops file") from None


def plaintext_findings(text: str, name: str) -> list[str]:
    """For `kagiya secrets check`: one line per value that sops' rules say must be encrypted but is not (a value
    added by hand after encryption). Needs no key; a file that is not a readable sops file is one finding."""
    try:
        if text.lstrip().startswith("{"):
            doc = json.loads(text)
            meta = sops.parse_metadata(doc.pop("sops", None) if isinstance(doc, dict) else None)
            leaves: list[tuple[tuple[str, ...], Any]] = []

            def visit(value: Any, path: tuple[str, ...]) -> None:
                if isinstance(value, dict):
                    for k, v in value.items():
                        visit(v, (*path, k))
                elif isinstance(value, list):
                    for v in value:
                        visit(v, path)
                else:
                    leaves.append((path, value))

            visit(doc, ())
        else:
            docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
            meta = _load_metadata(docs)
            leaves = [(path, yaml12(node)) for d in docs for path, node in scan_yaml(d)]  # type: ignore[arg-type]
    except (ValueError, yaml.YAMLError, RecursionError):
        return [f"{name}: not a readable sops file"]
    except SopsFormatError as exc:
        return [f"{name}: {exc.message}"]
    return [f"{name}: {'.'.join(path)} is plaintext in a sops file" for path, value in leaves
            if meta.should_encrypt(path) and value not in (None, "")
            and not (isinstance(value, str) and sops.ENC_RE.match(value))]
