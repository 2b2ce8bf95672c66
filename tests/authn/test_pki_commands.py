"""`kagiya authn init ...` and `webhook-config`: certificates, file modes, one-line errors, the kubeconfig."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kagiya.tls import mtls


def _ok(runner: Any, *args: str, env: dict[str, str] | None = None) -> str:
    result = runner(list(args), env=env)
    assert result.exit_code == 0, result.stderr
    return result.stdout  # type: ignore[no-any-return]


def _init_all(runner: Any, pki: Path) -> None:
    _ok(runner, "authn", "init", "ca", "--pki-dir", str(pki))
    _ok(runner, "authn", "init", "server", "--pki-dir", str(pki), "--ip", "10.0.0.5", "--dns", "kagiya.example")
    _ok(runner, "authn", "init", "client", "cluster-1", "--pki-dir", str(pki), "--provider", "github", "--org", "acme")


def test_init_writes_ca_server_and_client_certs(runner: Any, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    _init_all(runner, pki)
    for key in ("ca.key", "server.key", "clients/cluster-1.key"):
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((pki / "server.crt").read_bytes())
    client = x509.load_pem_x509_certificate((pki / "clients/cluster-1.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert sans.get_values_for_type(x509.DNSName) == ["kagiya.example"]
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "github"
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    pem = (pki / "clients/cluster-1.crt").read_text()
    assert mtls.peer_subject({"SSL_CLIENT_CERT": pem}) == {"O": ["github"], "CN": ["acme"], "OU": []}


def test_init_client_for_the_node_agent(runner: Any, tmp_path: Path) -> None:
    """`--provider agent` (documented for the node agent's mutual TLS): O=agent, CN defaults to the name."""
    pki = tmp_path / "pki"
    _ok(runner, "authn", "init", "ca", "--pki-dir", str(pki))
    _ok(runner, "authn", "init", "client", "node-agent", "--pki-dir", str(pki), "--provider", "agent")
    pem = (pki / "clients/node-agent.crt").read_text()
    assert mtls.peer_subject({"SSL_CLIENT_CERT": pem}) == {"O": ["agent"], "CN": ["node-agent"], "OU": []}
    cert = x509.load_pem_x509_certificate(pem.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()))
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_pki_dir_defaults_under_data_dir(runner: Any, data_dir: Path) -> None:
    _ok(runner, "authn", "init", "ca", env={"KAGIYA_DATA_DIR": str(data_dir)})
    assert (data_dir / "pki" / "ca.crt").exists()


def test_webhook_config_is_a_kubeconfig_with_embedded_material(runner: Any, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    _init_all(runner, pki)
    out = _ok(runner, "authn", "webhook-config", "--pki-dir", str(pki), "--client", "cluster-1",
              "--server", "https://10.0.0.5:8443/authn/tokenreviews")
    config = yaml.safe_load(out)
    assert config["kind"] == "Config" and config["current-context"] == "webhook"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.0.0.5:8443/authn/tokenreviews"
    assert base64.b64decode(cluster["certificate-authority-data"]) == (pki / "ca.crt").read_bytes()
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == (pki / "clients/cluster-1.key").read_bytes()
    files = yaml.safe_load(_ok(runner, "authn", "webhook-config", "--pki-dir", str(pki), "--client", "cluster-1",
                               "--server", "https://k:1/x", "--no-embed"))
    assert files["users"][0]["user"]["client-certificate"] == str((pki / "clients/cluster-1.crt").resolve())


def test_errors_are_one_line_with_nonzero_exit(runner: Any, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    cases = [
        (["authn", "init", "server", "--pki-dir", str(pki), "--ip", "10.0.0.1"], "run `kagiya authn init ca`"),
        (["authn", "init", "ca", "--pki-dir", str(pki)], None),
        (["authn", "init", "ca", "--pki-dir", str(pki)], "already exists (pass --force"),
        (["authn", "init", "server", "--pki-dir", str(pki), "--ip", "not-an-ip"], "is not an IP address"),
        (["authn", "init", "server", "--pki-dir", str(pki)], "--ip and/or --dns"),
        (["authn", "init", "client", "c", "--pki-dir", str(pki), "--provider", "bogus", "--org", "x"],
         "--provider must be one of"),
        (["authn", "init", "client", "c", "--pki-dir", str(pki), "--provider", "github"], "--org is required"),
        (["authn", "init", "client", "../evil", "--pki-dir", str(pki), "--provider", "github", "--org", "x"],
         "client name"),
        (["authn", "webhook-config", "--pki-dir", str(pki), "--client", "c", "--server", "http://plain"],
         "must be an https:// URL"),
        (["authn", "webhook-config", "--pki-dir", str(pki), "--client", "nobody", "--server", "https://x"],
         "does not exist"),
    ]
    for args, message in cases:
        result = runner(args)
        if message is None:
            assert result.exit_code == 0
            continue
        assert result.exit_code != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    ca_before = (pki / "ca.key").read_bytes()
    _ok(runner, "authn", "init", "ca", "--pki-dir", str(pki), "--force")
    assert (pki / "ca.key").read_bytes() != ca_before


def test_check_reviews_a_token_from_stdin(runner: Any, token_file: Path) -> None:
    env = {"KAGIYA_AUTHN_TOKEN_FILE": str(token_file)}
    ok = runner(["authn", "check"], input="approver-token-0003\n", env=env)
    assert ok.exit_code == 0
    assert ok.stdout.strip() == ("authenticated by token-auth/default: "
                                 "username=carol uid=uid-carol groups=approvers,team-a")
    bad = runner(["authn", "check"], input="nope\n", env=env)
    assert bad.exit_code == 1 and bad.stdout.strip() == "rejected by token-auth/default: invalid token"
    assert "nope" not in bad.stdout.replace("rejected", "")
    empty = runner(["authn", "check"], input="", env=env)
    assert empty.exit_code == 2 and "on stdin" in empty.stderr
    unknown = runner(["authn", "check", "--provider", "oidc/none"], input="x\n", env=env)
    assert unknown.exit_code != 0 and "no authn provider oidc/none" in unknown.stderr


def test_serve_help_says_which_paths_require_a_client_certificate(runner: Any) -> None:
    text = " ".join(_ok(runner, "serve", "--help").split())
    assert "required only on the webhook paths" in text and "/authn/" in text and "/iam/agent/" in text
    assert "clients without one are refused" not in text
