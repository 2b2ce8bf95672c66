"""The `SecretDecryptor` kustomize generator: decrypted Secrets go into the build output, never into a file.

    apiVersion: kagiya.dev/v1
    kind: SecretDecryptor
    metadata: {name: app-secrets}
    files: [db.enc.yaml, api.enc.yaml]     # kubesec-format (kagiya, kubesec) or sops files

Two ways kustomize can run it, both handled here:
- **exec plugin** (what `kubectl kustomize --enable-alpha-plugins` runs; kubectl has no `--enable-exec`, so it
  silently skips KRM exec functions): an executable at
  `$KUSTOMIZE_PLUGIN_HOME/kagiya.dev/v1/secretdecryptor/SecretDecryptor` (default plugin home
  `${XDG_CONFIG_HOME:-~/.config}/kustomize/plugin`), called with the generator's config file as its argument from
  the kustomization's directory; it prints a YAML stream. `kagiya secrets kustomize-install` writes that file.
- **KRM function** (standalone `kustomize build --enable-alpha-plugins --enable-exec`, kpt, Argo CD plugins): the
  config carries `config.kubernetes.io/function: {exec: {path: …}}`; the function reads a `ResourceList` on
  stdin and writes it back with the decrypted resources appended (`kagiya secrets krm`).

Files are resolved against the kustomization's directory and must stay inside it (kustomize's own load
restriction), so a remote base cannot make a build decrypt files elsewhere on the machine. Any failure — a
missing key, a damaged file, a bad config — is one line on stderr, a non-zero exit and nothing on stdout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from kagiya.errors import Invalid, UsageError

API_VERSION = "kagiya.dev/v1"
KIND = "SecretDecryptor"
RESOURCE_LIST = ("config.kubernetes.io/v1", "ResourceList")
MAX_FILES = 1000
_ALLOWED = {"apiVersion", "kind", "metadata", "files"}


class DecryptorConfigError(Invalid):
    """The SecretDecryptor config is not what the generator accepts."""


def plugin_home() -> Path:
    configured = os.environ.get("KUSTOMIZE_PLUGIN_HOME")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kustomize" / "plugin"


def plugin_path(home: Path | None = None) -> Path:
    """Where kustomize looks for the exec plugin: <home>/<group>/<version>/<lower-case kind>/<Kind>."""
    group, version = API_VERSION.split("/")
    return (home or plugin_home()) / group / version / KIND.lower() / KIND


def parse_config(obj: Any) -> list[str]:
    """The `files` list of a SecretDecryptor; raises DecryptorConfigError naming what is wrong."""
    if not isinstance(obj, dict):
        raise DecryptorConfigError("SecretDecryptor config is not a mapping")
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        raise DecryptorConfigError(f"expected apiVersion: {API_VERSION}, kind: {KIND} "
                                   f"(got {obj.get('apiVersion')!r}, {obj.get('kind')!r})")
    unknown = sorted(set(obj) - _ALLOWED)
    if unknown:
        raise DecryptorConfigError(f"SecretDecryptor: unknown field(s) {', '.join(unknown)} (allowed: files)")
    files = obj.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f and "\0" not in f for f in files):
        raise DecryptorConfigError("SecretDecryptor: files must be a non-empty list of file names")
    if len(files) > MAX_FILES:
        raise DecryptorConfigError(f"SecretDecryptor: more than {MAX_FILES} files")
    return list(files)


def resolve(base: Path, name: str) -> Path:
    """`name` relative to `base`, refused if it leaves `base` (also through a symlink)."""
    root = base.resolve()
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise DecryptorConfigError(f"SecretDecryptor: {name} is outside the kustomization directory {root}")
    return target


def generate(config: Any, base: Path, settings: object) -> list[dict[str, Any]]:
    """The decrypted resources of every listed file, in order. Raises a KagiyaError on the first failure."""
    from kagiya.secrets import formats, ops

    out: list[dict[str, Any]] = []
    for name in parse_config(config):
        path = resolve(base, name)
        src = ops.read_source(str(path), settings)
        plain = formats.decrypt(src.text, settings, path=path)
        try:  # a sops JSON file decrypts to JSON, whose tab indentation is not YAML
            docs = [json.loads(plain.text)] if plain.format == formats.SOPS and plain.text.lstrip().startswith(
                "{") else list(yaml.safe_load_all(plain.text))
        except (ValueError, yaml.YAMLError, RecursionError):
            raise DecryptorConfigError(f"{name}: the decrypted file is not valid YAML") from None
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise DecryptorConfigError(f"{name}: holds a document that is not a Kubernetes resource")
            out.append(doc)
    return out


def dump(resources: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(resources, sort_keys=False, default_flow_style=False, allow_unicode=True,
                              width=1 << 30) if resources else ""


def run_exec_plugin(config_file: str, settings: object) -> str:
    """kustomize's exec plugin protocol: argv[1] is the config; the kustomization root is the working directory
    (or `KUSTOMIZE_PLUGIN_CONFIG_ROOT`). Returns the YAML stream to print."""
    try:
        config = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise UsageError(f"cannot read the SecretDecryptor config {config_file}") from None
    base = Path(os.environ.get("KUSTOMIZE_PLUGIN_CONFIG_ROOT") or os.getcwd())
    return dump(generate(config, base, settings))


def run_function(stdin_text: str, settings: object, base: Path | None = None) -> str:
    """The KRM function protocol: a ResourceList in, the same list with the decrypted resources appended out."""
    try:
        rl = yaml.safe_load(stdin_text)
    except (yaml.YAMLError, RecursionError):  # RecursionError: `[[[…` deeper than PyYAML's composer recurses
        raise DecryptorConfigError("stdin is not a YAML ResourceList") from None
    if not isinstance(rl, dict) or (rl.get("apiVersion"), rl.get("kind")) != RESOURCE_LIST:
        raise DecryptorConfigError("stdin is not a config.kubernetes.io/v1 ResourceList")
    items = rl.get("items") or []
    if not isinstance(items, list):
        raise DecryptorConfigError("ResourceList items is not a list")
    rl["items"] = items + generate(rl.get("functionConfig"), base or Path.cwd(), settings)
    try:
        return yaml.safe_dump(rl, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 30)
    except RecursionError:  # an item nested just shallow enough to load but not to dump
        raise DecryptorConfigError("a ResourceList item is nested too deeply") from None


def plugin_script(argv0: list[str]) -> str:
    """The exec plugin file: a two-line shell script that runs this kagiya."""
    import shlex

    return ("#!/bin/sh\n# kagiya SecretDecryptor kustomize exec plugin (`kagiya secrets kustomize-install`)\n"
            f"exec {' '.join(shlex.quote(a) for a in argv0)} secrets kustomize-plugin \"$@\"\n")
