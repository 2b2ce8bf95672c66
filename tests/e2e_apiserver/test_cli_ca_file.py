"""`kagiya iam --ca-file` / `KAGIYA_CA_FILE`: the CLI trusts kagiya's own CA over real TLS (`kagiya serve` with the
certificates of `kagiya authn init`), without touching `SSL_CERT_FILE` or the system store.

Shows: with the CA (flag or environment) the policy round-trips; without it, or with another CA, the CLI refuses
the server (exit 6, one line naming the verification failure, no request sent); a missing CA file is a usage
error (exit 2). Needs no apiserver.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e_apiserver.cluster import KAGIYA, Kagiya, kagiya_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "ops-token-ca-file"  # noqa: S105 - a made-up test token
POLICY = "allow:\n  - cloud: aws\n    glob: \"arn:aws:iam::123456789012:role/team-ca-*\"\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kagiya]:
    work = tmp_path_factory.mktemp("ca-file")
    kagiya = Kagiya(work)
    kagiya.make_pki()
    (work / "users.csv").write_text(f'{TOKEN},ops,uid-ops,"kagiya:admins"\n')
    kagiya.config.write_text(yaml.safe_dump({
        "data_dir": str(work / "data"), "log_level": "WARNING", "admin_groups": ["kagiya:admins"],
        "authn": {"token_file": str(work / "users.csv")}}))
    (work / "token").write_text(TOKEN)
    (work / "policy.yaml").write_text(POLICY)
    kagiya_cli("authn", "init", "ca", "--pki-dir", str(work / "other-pki"))
    kagiya.start()
    try:
        kagiya.wait_ready()
        yield kagiya
    finally:
        kagiya.stop()


def iam(kagiya: Kagiya, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "KAGIYA_CA_FILE")}
    return subprocess.run([KAGIYA, "iam", "--server", kagiya.url, "--token-file", str(kagiya.work / "token"), *args],
                          capture_output=True, text=True, env={**base, **(env or {})}, timeout=60)


def test_ca_file_flag_and_environment(served: Kagiya) -> None:
    put = iam(served, "--ca-file", str(served.ca_file), "policy", "team-ca", "-f", str(served.work / "policy.yaml"))
    assert put.returncode == 0, put.stderr
    got = iam(served, "policy", "team-ca", "-o", "json", env={"KAGIYA_CA_FILE": str(served.ca_file)})
    assert got.returncode == 0, got.stderr
    assert "arn:aws:iam::123456789012:role/team-ca-*" in got.stdout


@pytest.mark.parametrize("ca", ["none", "other"])
def test_an_untrusted_server_is_refused(served: Kagiya, ca: str) -> None:
    args = ["--ca-file", str(served.work / "other-pki" / "ca.crt")] if ca == "other" else []
    proc = iam(served, *args, "policy", "team-ca")
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CERTIFICATE_VERIFY_FAILED" in lines[0] and served.url in lines[0], proc.stderr


def test_a_missing_ca_file_is_a_usage_error(served: Kagiya, tmp_path: Path) -> None:
    proc = iam(served, "--ca-file", str(tmp_path / "nope.crt"), "policy", "team-ca")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"kagiya: error: --ca-file {tmp_path / 'nope.crt'}: no such file"]
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    proc = iam(served, "--ca-file", str(tmp_path / "junk.crt"), "policy", "team-ca")
    assert proc.returncode == 2 and "not a readable PEM CA bundle" in proc.stderr


def test_kagiya_ca_file_is_not_read_as_a_setting(served: Kagiya, tmp_path: Path) -> None:
    """Without --server the CLI loads the settings (for host/port): KAGIYA_CA_FILE must not be an unknown key."""
    from tests.support.servers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    env.update(KAGIYA_CA_FILE=str(served.ca_file), KAGIYA_PORT=str(free_port()), KAGIYA_DATA_DIR=str(tmp_path))
    proc = subprocess.run([KAGIYA, "iam", "--token-file", str(served.work / "token"), "policy", "team-ca"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 6, proc.stderr  # nothing listens there: unreachable, not a configuration error
    assert "cannot reach kagiya" in proc.stderr and "config" not in proc.stderr
