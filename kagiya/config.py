"""Settings: one frozen object built once from defaults, an optional YAML file and `KAGIYA_*` variables.

Precedence: defaults < YAML file (`--config` / `KAGIYA_CONFIG`) < environment. Core keys sit at the top level of
the YAML file (`data_dir`, `port`, ...) and in `KAGIYA_DATA_DIR`, `KAGIYA_PORT`, ...; each capability owns a section
(`authn:`, `secrets:`, ...) declared as a frozen dataclass in its own `settings.py`, set from the environment as
`KAGIYA_<SECTION>_<FIELD>` (`KAGIYA_AUTHN_TOKEN_FILE`). A field may declare an extra env alias in its metadata
(`field(metadata={"env": "KAGIYA_KEYRING"})`).

Unknown keys and bad values fail with a `ConfigError` that names the key. Nothing here runs at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from kagiya.errors import ConfigError

T = TypeVar("T")

#: Capability sections: YAML key -> "module:DataclassName". Imported lazily, only when settings are built.
SECTIONS: dict[str, str] = {
    "authn": "kagiya.authn.settings:AuthnSettings",
    "authz": "kagiya.authz.settings:AuthzSettings",
    "secrets": "kagiya.secrets.settings:SecretsSettings",
    "iam": "kagiya.iam.settings:IamSettings",
    "credentials": "kagiya.iam.credential_settings:CredentialSettings",
    "kube": "kagiya.kube.settings:KubeSettings",
    "audit": "kagiya.audit_settings:AuditSettings",
    "console": "kagiya.console.settings:ConsoleSettings",
    "notify": "kagiya.notify:NotifySettings",
    "serving": "kagiya.serving.settings:ServingSettings",
}

#: Environment variables that are not settings but are read by name elsewhere.
NON_SETTING_ENV = {"KAGIYA_CONFIG", "KAGIYA_SERVER", "KAGIYA_TOKEN", "KAGIYA_CA_FILE"}

@dataclass(frozen=True)
class Settings:
    """Core settings. Capability sections are reached with `settings.section("iam")`."""

    data_dir: Path = Path(".kagiya")
    #: SQLAlchemy URL; empty means a SQLite file `kagiya.db` in `data_dir`. Kept out of repr (it may hold a password).
    database_url: str = field(default="", repr=False)
    #: A file holding the URL (a mounted Secret), so the password is never in the environment.
    database_url_file: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    #: Deprecated and ignored: a replica is one process (see the `serving:` section for its thread pool).
    workers: int = 2
    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""
    #: With `client_ca`, requests to these path prefixes must present a verified client certificate (403 otherwise);
    #: other paths (probes, /metrics, the bearer-token APIs, the admission webhook) may connect without one.
    client_cert_paths: tuple[str, ...] = ("/authn/", "/tokenreviews", "/authz/", "/subjectaccessreviews",
                                          "/iam/agent/")
    #: Largest request body any route accepts; larger ones get 413 before the view runs.
    max_request_bytes: int = 1024 * 1024
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: One JSON access-log line per request: `all`, only `errors` (status >= 400), or `off`.
    access_log: Literal["all", "errors", "off"] = "errors"
    #: Groups whose members may read the audit log and administer policy.
    admin_groups: tuple[str, ...] = ("kagiya:admins",)
    sections: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # from_mapping turns these ValueErrors into ConfigErrors naming the section ("config settings: port …").
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be from 1 to 65535, got {self.port}")
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be from 1 to 64, got {self.workers}")
        if not 1024 <= self.max_request_bytes <= 1024**3:
            raise ValueError(f"max_request_bytes must be from 1024 to {1024**3}, got {self.max_request_bytes}")

    def section(self, name: str) -> Any:
        """The typed settings object of a capability section (its defaults when the file has none)."""
        try:
            return self.sections[name]
        except KeyError:
            raise ConfigError(f"unknown settings section {name!r}") from None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url and self.database_url_file:
            raise ConfigError("set database_url or database_url_file, not both")
        if self.database_url_file:
            try:
                return Path(self.database_url_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"database_url_file {self.database_url_file}: {exc.strerror}") from None
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kagiya.db').resolve()}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings. `overrides` (same shape as the YAML file) win over everything; tests use them.

    Raises ConfigError naming the offending key.
    """
    env = os.environ if env is None else env
    path = config_file or env.get("KAGIYA_CONFIG") or None
    raw: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    _merge(raw, _env_to_tree(env))
    if overrides:
        _merge(raw, _deep_copy(overrides))
    return build_settings(raw)


def build_settings(raw: Mapping[str, Any]) -> Settings:
    core = {k: v for k, v in raw.items() if k not in SECTIONS}
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        cls = section_class(name)
        value = raw.get(name) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {name!r} must be a mapping")
        sections[name] = from_mapping(cls, value, name)
    settings = from_mapping(Settings, core, "")
    return dataclasses.replace(settings, sections=types.MappingProxyType(sections))


def section_class(name: str) -> type:
    module, _, attr = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def from_mapping(cls: type[T], data: Mapping[str, Any], prefix: str) -> T:
    """Build dataclass `cls` from a mapping, coercing strings (from env) and checking every type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "sections"}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]!s} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = coerce(hints[name], value, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config {prefix or 'settings'}: {exc}") from None


def coerce(tp: Any, value: Any, key: str) -> Any:  # noqa: C901 - one branch per supported type
    """Turn a YAML or env value into `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(inner[0], value, key)
        raise ConfigError(f"config key {key}: unsupported type {tp}")
    if origin is typing.Literal:
        if isinstance(value, str) and value not in args and value.upper() in args:
            value = value.upper()  # log_level: info -> INFO
        if value not in args:
            raise ConfigError(f"config key {key}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"config key {key}: expected {'a whole number' if tp is int else 'a number'}, "
                              f"got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key}: expected a string, got {type(value).__name__}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"config key {key}: expected a path, got {type(value).__name__}")
    if origin in (list, tuple, frozenset) or tp in (list, tuple):
        item_type = args[0] if args else Any
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {type(value).__name__}")
        items = [coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is not list else items
    if origin in (dict, Mapping) or tp is dict:
        key_type, val_type = args if args else (str, Any)
        if isinstance(value, str):
            value = _parse_pairs(value, key)
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key}: expected a mapping, got {type(value).__name__}")
        return {coerce(key_type, k, key): coerce(val_type, v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key}: expected a mapping, got {type(value).__name__}")
        return from_mapping(tp, value, key)
    raise ConfigError(f"config key {key}: unsupported type {tp}")


def _parse_pairs(text: str, key: str) -> dict[str, str]:
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, val = part.partition("=")
        if not sep:
            raise ConfigError(f"config key {key}: expected k=v pairs separated by commas")
        pairs[name.strip()] = val.strip()
    return pairs


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return data


def load_section(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One capability section from the environment alone, for CLI paths that run on every commit (the
    `kagiya secrets` pre-commit hook): it skips importing and building the other sections. Variables of other
    sections and core keys are left for the full load to check; this section's unknown names are still errors.
    """
    env = os.environ if env is None else env
    tree = _env_to_tree(env, only=name)
    return from_mapping(section_class(name), tree.get(name, {}), name)


def _env_to_tree(env: Mapping[str, str], only: str | None = None) -> dict[str, Any]:
    """Map KAGIYA_* variables onto the YAML shape; unknown names are an error. With `only`, just that section."""
    core = {f.name for f in dataclasses.fields(Settings) if f.name != "sections"}
    aliases: dict[str, tuple[str, str]] = {}
    section_fields: dict[str, set[str]] = {}
    for name in [only] if only else SECTIONS:
        cls = section_class(name)
        section_fields[name] = set()
        for f in dataclasses.fields(cls):
            section_fields[name].add(f.name)
            alias = f.metadata.get("env")
            if alias:
                aliases[alias] = (name, f.name)
    tree: dict[str, Any] = {}
    for var, value in env.items():
        if not var.startswith("KAGIYA_") or var in NON_SETTING_ENV:
            continue
        if var in aliases:
            sec, fname = aliases[var]
            tree.setdefault(sec, {})[fname] = value
            continue
        rest = var[len("KAGIYA_") :].lower()
        sec, _, fname = rest.partition("_")
        if only and sec != only:
            continue
        if rest in core:
            tree[rest] = value
            continue
        if sec in section_fields and fname in section_fields[sec]:
            tree.setdefault(sec, {})[fname] = value
            continue
        raise ConfigError(f"unknown environment variable {var}: not a kagiya setting")
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def is_loopback(host: str) -> bool:
    """True only for loopback addresses (and `localhost`); a name that merely starts with `127.` is not one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
