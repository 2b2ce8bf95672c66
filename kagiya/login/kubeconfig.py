"""`kagiya login setup`: write the kubeconfig `users[].user.exec` entry that runs `kagiya login`.

The entry uses `client.authentication.k8s.io/v1` with `interactiveMode: IfAvailable` (required in v1: kubectl
gives the plugin the terminal when it has one, so `--static`/`--ldap` can prompt, and the OIDC flows work
without one). The file is rewritten atomically with mode 0600, keeping every other entry as it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kagiya.atomic import write_atomic
from kagiya.errors import ConfigError

EXEC_API_VERSION = "client.authentication.k8s.io/v1"


def default_kubeconfig() -> Path:
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path(os.path.expanduser("~")) / ".kube" / "config"


def exec_user(name: str, command: str, args: Sequence[str], *, provide_cluster_info: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "user": {
            "exec": {
                "apiVersion": EXEC_API_VERSION,
                "command": command,
                "args": list(args),
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": provide_cluster_info,
            }
        },
    }


def write_exec_user(path: Path, user: dict[str, Any], context: str = "") -> None:
    """Add or replace `user` (by name) in the kubeconfig at `path`; point `context` at it when given."""
    import yaml

    config: dict[str, Any]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise ConfigError(f"kubeconfig {path}: {exc.strerror}") from None
    try:
        config = (yaml.safe_load(text) if text.strip() else None) or {}
    except yaml.YAMLError:
        raise ConfigError(f"kubeconfig {path} is not valid YAML; not touching it") from None
    if not isinstance(config, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping; not touching it")
    config.setdefault("apiVersion", "v1")
    config.setdefault("kind", "Config")
    for key in ("clusters", "contexts", "users"):
        if config.get(key) is None:
            config[key] = []
        if not isinstance(config[key], list):
            raise ConfigError(f"kubeconfig {path}: {key} is not a list")
    users = [u for u in config["users"] if not (isinstance(u, dict) and u.get("name") == user["name"])]
    config["users"] = [*users, user]
    if context:
        match = [c for c in config["contexts"] if isinstance(c, dict) and c.get("name") == context]
        if not match:
            raise ConfigError(f"kubeconfig {path} has no context {context!r}")
        match[0].setdefault("context", {})["user"] = user["name"]
    _atomic_write(path, yaml.safe_dump(config, sort_keys=False))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"), 0o600)
