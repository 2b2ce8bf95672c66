"""The PyYAML side of manifest.parse: compose the YAML and walk its nodes to find Secrets and value positions.

kubesec re-serialises the whole document; kagiya instead splices new scalars into the original text at the
positions the YAML parser reports (`start_mark.index` / `end_mark.index`), so comments, key order, quoting,
indentation and every non-Secret document stay byte-identical. Kept apart from manifest.py so that a decrypt
of a plain file (scan.py) does not import PyYAML at all.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kagiya.secrets.manifest import SECTIONS, STR_TAG, ManifestError, SecretDoc, Slot

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_secrets(body: str) -> list[SecretDoc]:
    """Every Secret of `body` (a manifest without its trailer) with its values' positions."""
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
    return secrets


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
