"""`.kagiya.yaml` creation rules: default recipients for files in a repository, so `encrypt` needs no `-k`.

    creation_rules:
      - path_regex: ^prod/.*\\.ya?ml$        # matched (re.search) against the path relative to this file's dir
        recipients: [gcp:projects/p/locations/global/keyRings/r/cryptoKeys/k, pgp:FPR]
      - recipients: local:default           # no path_regex: matches every file

The nearest `.kagiya.yaml` walking up from the file's directory is used; its first matching rule wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kagiya.errors import ConfigError

FILENAME = ".kagiya.yaml"


@dataclass(frozen=True)
class Rule:
    path_regex: str
    recipients: tuple[str, ...]


def find_config(start: Path) -> Path | None:
    directory = start.resolve()
    for candidate in (directory, *directory.parents):
        path = candidate / FILENAME
        if path.is_file():
            return path
    return None


def load_rules(path: Path) -> list[Rule]:
    """Parse a rules file; raises ConfigError naming the file and the bad entry."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{path}: cannot read it as YAML") from None
    if not isinstance(data, dict) or set(data) - {"creation_rules"}:
        raise ConfigError(f"{path}: expected a mapping with only 'creation_rules'")
    rules = []
    for i, entry in enumerate(data.get("creation_rules") or []):
        where = f"{path}: creation_rules[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"path_regex", "recipients"}:
            raise ConfigError(f"{where}: expected keys path_regex and recipients")
        regex = entry.get("path_regex") or ""
        try:
            re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"{where}: bad path_regex: {exc}") from None
        recipients = entry.get("recipients") or []
        if isinstance(recipients, str):
            recipients = [r.strip() for r in recipients.split(",") if r.strip()]
        if not isinstance(recipients, list) or not recipients or not all(isinstance(r, str) for r in recipients):
            raise ConfigError(f"{where}: recipients must be a non-empty list of key URIs")
        rules.append(Rule(str(regex), tuple(recipients)))
    return rules


def recipients_for(file: Path | None) -> tuple[list[str], Path | None]:
    """Recipients of the first matching rule for `file` (None: stdin, searched from the cwd), and the config used."""
    start = file.resolve().parent if file is not None else Path.cwd()
    config = find_config(start)
    if config is None:
        return [], None
    rel = file.resolve().relative_to(config.parent).as_posix() if file is not None else ""
    for rule in load_rules(config):
        if re.search(rule.path_regex, rel):
            return list(rule.recipients), config
    return [], config
