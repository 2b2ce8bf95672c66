"""Settings: defaults < YAML file < environment; unknown keys and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from kagiya.config import load_settings
from kagiya.errors import ConfigError


def test_defaults_are_loopback_and_local_sqlite() -> None:
    s = load_settings(env={})
    assert s.host == "127.0.0.1" and s.port == 8080
    assert s.sqlalchemy_url.startswith("sqlite:///") and s.sqlalchemy_url.endswith(".kagiya/kagiya.db")
    assert s.section("authn").token_file == ""


def test_yaml_then_env_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "kagiya.yaml"
    cfg.write_text("port: 9000\nworkers: 3\nauthn:\n  token_file: /from/yaml\nsecrets:\n  decrypt_groups: [a, b]\n")
    s = load_settings(cfg, env={"KAGIYA_PORT": "9100", "KAGIYA_KEYRING": "/k"})
    assert (s.port, s.workers) == (9100, 3)
    assert s.section("authn").token_file == "/from/yaml"
    assert s.section("secrets").decrypt_groups == ("a", "b")
    assert s.section("secrets").keyring == "/k"


def test_config_file_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_request_bytes: 2048\n")
    assert load_settings(env={"KAGIYA_CONFIG": str(cfg)}).max_request_bytes == 2048


@pytest.mark.parametrize(
    ("yaml_text", "env", "named"),
    [
        ("prot: 1\n", {}, "prot"),
        ("authn:\n  tokenfile: x\n", {}, "authn.tokenfile"),
        ("port: eighty\n", {}, "port"),
        ("workers: true\n", {}, "workers"),
        ("kube:\n  mode: sometimes\n", {}, "kube.mode"),
        ("", {"KAGIYA_PROT": "1"}, "KAGIYA_PROT"),
        ("", {"KAGIYA_PORT": "x"}, "port"),
        ("authn: [1]\n", {}, "authn"),
        ("- a\n", {}, "top level"),
        ("port: [\n", {}, "line"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, env: dict[str, str], named: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env=env)
    assert named in info.value.message


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_settings_are_frozen() -> None:
    s = load_settings(env={})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_database_url_from_mounted_file_and_never_in_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "url"
    secret_file.write_text("postgresql+psycopg://kagiya:s3cret-pw@db:5432/kagiya\n")
    s = load_settings(env={"KAGIYA_DATABASE_URL_FILE": str(secret_file)})
    assert s.sqlalchemy_url == "postgresql+psycopg://kagiya:s3cret-pw@db:5432/kagiya"
    direct = load_settings(env={"KAGIYA_DATABASE_URL": "postgresql+psycopg://kagiya:s3cret-pw@db/kagiya"})
    assert "s3cret-pw" not in repr(direct) and "s3cret-pw" not in repr(s)
    both = load_settings(env={"KAGIYA_DATABASE_URL": "sqlite://", "KAGIYA_DATABASE_URL_FILE": str(secret_file)})
    with pytest.raises(ConfigError, match="not both"):
        _ = both.sqlalchemy_url


def test_load_section_reads_only_its_own_variables() -> None:
    from kagiya.config import load_section

    env = {"KAGIYA_KEYRING": "/k", "KAGIYA_SECRETS_KMS_TIMEOUT_SECONDS": "3", "KAGIYA_IAM_NOT_A_FIELD": "x",
           "KAGIYA_PORT": "1"}
    section = load_section("secrets", env)
    assert section.keyring == "/k" and section.kms_timeout_seconds == 3.0
    with pytest.raises(ConfigError, match="KAGIYA_SECRETS_TYPO"):
        load_section("secrets", {"KAGIYA_SECRETS_TYPO": "1"})
    with pytest.raises(ConfigError, match="kms_timeout_seconds"):
        load_section("secrets", {"KAGIYA_SECRETS_KMS_TIMEOUT_SECONDS": "soon"})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAGIYA_LOG_LEVEL": "bogus"}, "log_level"),
        ({"KAGIYA_PORT": "99999"}, "port"),
        ({"KAGIYA_PORT": "0"}, "port"),
        ({"KAGIYA_WORKERS": "0"}, "workers"),
        ({"KAGIYA_WORKERS": "-3"}, "workers"),
        ({"KAGIYA_MAX_REQUEST_BYTES": "-5"}, "max_request_bytes"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env=env)


def test_fractional_whole_numbers_are_refused_and_log_level_is_case_insensitive(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 8080.9\n")
    with pytest.raises(ConfigError, match="port: expected a whole number"):
        load_settings(cfg, env={})
    assert load_settings(env={"KAGIYA_LOG_LEVEL": "debug"}).log_level == "DEBUG"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("127.evil.example", False), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False),
])
def test_only_real_loopback_addresses_count(host: str, loopback: bool) -> None:
    from kagiya.config import is_loopback

    assert is_loopback(host) is loopback
