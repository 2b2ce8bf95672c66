"""Writing sops YAML files (`kagiya secrets convert --to sops`) that the real sops 3.x opens.

The plaintext's own text is kept: every value under `data`/`stringData` (sops' `encrypted_regex
^(data|stringData)$`, the usual choice for Kubernetes Secrets) becomes an `ENC[AES256_GCM,…]` scalar in place,
comments inside those mappings become `#ENC[…,type:comment]`, and a `sops:` block is appended with the data key
wrapped for each age (armoured age file) and PGP (armoured, unsigned, as sops writes it) recipient, the
`lastmodified` time and the MAC over every value (formats/sops.py describes the format). One document per file.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kagiya.errors import UsageError
from kagiya.secrets.formats import sops, sops_doc
from kagiya.secrets.keys.base import KeyUnavailable

ENCRYPTED_REGEX = "^(data|stringData)$"
SOPS_FORMAT_VERSION = "3.11.0"
NONCE = 32


def encrypt_value(aead: AESGCM, value: Any, aad: str) -> str:
    """sops' Cipher.Encrypt: the typed plaintext, a 32-byte nonce, the path as associated data."""
    if isinstance(value, bool):
        kind, text = "bool", "True" if value else "False"
    elif isinstance(value, int):
        kind, text = "int", str(value)
    elif isinstance(value, float):
        kind, text = "float", sops.go_float(value)
    elif isinstance(value, sops_doc.CommentText):
        kind, text = "comment", str(value)
    else:
        kind, text = "str", str(value)
    iv = os.urandom(NONCE)
    sealed = aead.encrypt(iv, text.encode("utf-8"), aad.encode("utf-8"))
    b64 = base64.b64encode
    return (f"ENC[AES256_GCM,data:{b64(sealed[:-16]).decode()},iv:{b64(iv).decode()},"
            f"tag:{b64(sealed[-16:]).decode()},type:{kind}]")


def _wrap(uri: str, dek: bytes, settings: object) -> tuple[str, dict[str, str]]:
    scheme, _, key_id = uri.partition(":")
    if scheme == "age":
        import pyrage

        from kagiya.secrets.keys import age

        recipient = age.open_key(key_id, settings).recipient()
        return "age", {"recipient": key_id, "enc": bytes(pyrage.encrypt(dek, [recipient], armored=True)).decode()}
    if scheme == "pgp":
        from kagiya.secrets.keys.pgp import run_gpg
        from kagiya.secrets.settings import SecretsSettings

        fpr = key_id.replace(" ", "").upper()
        gpg_settings = settings if isinstance(settings, SecretsSettings) else SecretsSettings()
        result = run_gpg(gpg_settings, ["--armor", "--trust-model", "always", "--encrypt", "-r", fpr, "--output", "-"],
                         dek)
        if result.returncode != 0 or not result.stdout:
            raise KeyUnavailable(f"gpg could not encrypt to pgp:{fpr} ({result.last_message})")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return "pgp", {"created_at": created, "enc": result.stdout.decode("ascii"), "fp": fpr}
    raise UsageError(f"{uri}: sops files can be written only for age: and pgp: recipients here")


def encrypt_yaml(text: str, recipients: list[str], settings: object) -> str:
    """A sops YAML file for the single-document plaintext `text`."""
    if not recipients:
        raise UsageError("--to sops needs age: or pgp: recipients (-k)")
    try:
        docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise UsageError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if len(docs) != 1 or not isinstance(docs[0], MappingNode):
        raise UsageError("--to sops writes one YAML mapping document per file; split multi-document files first")
    doc = docs[0]
    if any(isinstance(k, ScalarNode) and k.value == "sops" for k, _ in doc.value):
        raise UsageError("the file already has a top-level sops key")
    meta = sops.Metadata("", "", [[]], encrypted_regex=ENCRYPTED_REGEX)
    dek = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(dek)
    mac = sops.MacHasher(meta)
    edits: list[tuple[int, int, str]] = []
    flows = _flow_spans(doc)
    for path, node in sops_doc.scan_yaml(doc):
        value = sops_doc.yaml12(node)  # type: ignore[arg-type]
        encrypted = meta.should_encrypt(path)
        mac.add(value, encrypted)
        if encrypted and value is not None and value != "":
            start, end = node.start_mark.index, node.end_mark.index
            if getattr(node, "style", None) in ("|", ">"):  # keep the line break(s) a block scalar ends with
                end = start + len(text[start:end].rstrip("\r\n"))
            sealed = encrypt_value(aead, value, ":".join(path) + ":")
            if any(s <= start < e for s, e in flows):  # `,[]` of ENC[…] would end a plain scalar in `{…}`
                sealed = f'"{sealed}"'
            edits.append((start, end, sealed))
    for start, end, path in sops_doc.comments_with_paths(text, doc):
        if meta.should_encrypt(path):
            comment = sops_doc.CommentText(text[start + 1:end])
            edits.append((start, end, "#" + encrypt_value(aead, comment, ":".join(path) + ":")))
    out = sops_doc.apply_edits(text, edits)
    lastmodified = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    block: dict[str, Any] = {}
    for uri in recipients:
        scheme, entry = _wrap(uri, dek, settings)
        block.setdefault(scheme, []).append(entry)
    block.update(lastmodified=lastmodified, mac=encrypt_value(aead, mac.hexdigest(), lastmodified),
                 encrypted_regex=ENCRYPTED_REGEX, version=SOPS_FORMAT_VERSION)
    if not out.endswith("\n"):
        out += "\n"
    return out + yaml.dump({"sops": block}, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False,
                           width=1 << 30)


def _flow_spans(node: Node) -> list[tuple[int, int]]:
    """(start, end) of every flow collection (`{…}`, `[…]`): an ENC[…] value inside one must be quoted."""
    spans: list[tuple[int, int]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, MappingNode | SequenceNode):
            if current.flow_style:
                spans.append((current.start_mark.index, current.end_mark.index))
            for item in current.value:
                stack.extend(item if isinstance(item, tuple) else (item,))
    return spans


class _BlockDumper(yaml.SafeDumper):
    """Armoured keys as `|` blocks, as sops writes them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _str)
