"""End to end over real mutual TLS: certificates from `kagiya authn init`, the kubeconfig from
`kagiya authn webhook-config`, and `kagiya serve` (the serving front, which hands the app the client certificate) as a
subprocess.

One server for the module keeps this fast; it routes by the client certificate's O=/CN= as Guard does.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.authn.conftest import V1BETA1, review_body
from tests.standins.oidc_issuer import OidcIssuer
from tests.support.cli import CliRunner
from tests.support.servers import ServerProcess, free_port

pytestmark = [pytest.mark.integration]


class Env:
    def __init__(self, pki: Path, port: int, issuer: OidcIssuer, server: ServerProcess, tmp: Path) -> None:
        self.pki, self.port, self.issuer, self.server, self.tmp = pki, port, issuer, server, tmp

    def kubeconfig(self, client: str) -> dict[str, Any]:
        result = CliRunner()(["authn", "webhook-config", "--pki-dir", str(self.pki), "--client", client,
                              "--server", f"https://127.0.0.1:{self.port}/authn/tokenreviews"])
        assert result.exit_code == 0, result.stderr
        return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]

    def files_from(self, config: dict[str, Any]) -> tuple[str, tuple[str, str], str]:
        """(server URL, (cert, key), CA file) written from the kubeconfig's embedded data."""
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        name = config["users"][0]["name"]
        paths = {}
        for field in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
            data = (cluster if field.startswith("certificate-authority") else user)[field]
            path = self.tmp / f"{name}-{field}.pem"
            path.write_bytes(base64.b64decode(data))
            paths[field] = str(path)
        return (cluster["server"], (paths["client-certificate-data"], paths["client-key-data"]),
                paths["certificate-authority-data"])


def _cli(*args: str) -> None:
    result = CliRunner()(list(args))
    assert result.exit_code == 0, result.stderr


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("mtls")
    pki = tmp / "pki"
    _cli("authn", "init", "ca", "--pki-dir", str(pki))
    _cli("authn", "init", "server", "--pki-dir", str(pki), "--ip", "127.0.0.1", "--dns", "localhost")
    _cli("authn", "init", "client", "apiserver-oidc", "--pki-dir", str(pki), "--provider", "oidc", "--org", "corp")
    _cli("authn", "init", "client", "apiserver-gh", "--pki-dir", str(pki), "--provider", "github", "--org", "nobody")
    tokens = tmp / "tokens.csv"
    tokens.write_text('e2e-static-token-1,frank,uid-frank,"ops"\n')
    issuer = OidcIssuer(client_id="kube").start()
    config = tmp / "kagiya.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp / "data"),
        "log_level": "INFO",
        "authn": {"token_file": str(tokens),
                  "providers": [{"type": "oidc", "name": "corp", "issuer": issuer.url, "audiences": ["kube"]}]},
    }))
    port = free_port()
    argv = [str(Path(sys.executable).parent / "kagiya"), "--config", str(config), "serve", "--port", str(port),
            "--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key"),
            "--client-ca", str(pki / "ca.crt")]
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("KAGIYA_")}
    server = ServerProcess(argv, port=port, env=env_vars, log_path=tmp / "server.log", timeout=60)
    server.env = env_vars
    with server:
        yield Env(pki, port, issuer, server, tmp)
    issuer.stop()


def test_client_cert_routes_to_the_provider_named_by_o_and_cn(env: Env) -> None:
    url, cert, ca = env.files_from(env.kubeconfig("apiserver-oidc"))
    assert url == f"https://127.0.0.1:{env.port}/authn/tokenreviews"
    jwt = env.issuer.mint(sub="gail", groups=["dev"])
    resp = requests.post(url, json=review_body(jwt, api_version=V1BETA1), cert=cert, verify=ca, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"apiVersion": V1BETA1, "kind": "TokenReview", "metadata": {"creationTimestamp": None},
                           "status": {"authenticated": True,
                                      "user": {"username": "gail", "uid": "gail", "groups": ["dev"]}}}
    static = requests.post(url, json=review_body("e2e-static-token-1"), cert=cert, verify=ca, timeout=10)
    assert static.json()["status"]["user"]["username"] == "frank"  # token file first, as Guard does


def test_cert_naming_an_unconfigured_provider_rejects_provider_tokens(env: Env) -> None:
    url, cert, ca = env.files_from(env.kubeconfig("apiserver-gh"))
    jwt = env.issuer.mint(sub="gail")
    status = requests.post(url, json=review_body(jwt), cert=cert, verify=ca, timeout=10).json()["status"]
    assert status == {"authenticated": False, "error": "github/nobody: no github provider is configured for 'nobody'"}


def test_a_client_without_certificate_is_refused(env: Env) -> None:
    url, _cert, ca = env.files_from(env.kubeconfig("apiserver-oidc"))
    resp = requests.post(url, json=review_body("e2e-static-token-1"), verify=ca, timeout=10)
    assert resp.status_code == 403 and resp.json()["kind"] == "Status"
    assert "client certificate" in resp.json()["message"]
    sar = requests.post(url.replace("/authn/tokenreviews", "/authz/subjectaccessreviews"), json={}, verify=ca,
                        timeout=10)
    assert sar.status_code == 403


def test_probes_work_without_a_client_certificate(env: Env) -> None:
    """kubelet's HTTPS probes (and bearer-token API clients) present no client certificate."""
    url, _cert, ca = env.files_from(env.kubeconfig("apiserver-oidc"))
    base = url.removesuffix("/authn/tokenreviews")
    assert requests.get(f"{base}/healthz", verify=ca, timeout=10).status_code == 200
    assert requests.get(f"{base}/readyz", verify=ca, timeout=10).status_code == 200


def test_a_certificate_from_another_ca_is_refused_at_the_handshake(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "other-pki"
    _cli("authn", "init", "ca", "--pki-dir", str(other))
    _cli("authn", "init", "client", "intruder", "--pki-dir", str(other), "--provider", "oidc", "--org", "corp")
    url, _cert, ca = env.files_from(env.kubeconfig("apiserver-oidc"))
    foreign = (str(other / "clients" / "intruder.crt"), str(other / "clients" / "intruder.key"))
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is a ConnectionError
        requests.post(url, json=review_body("e2e-static-token-1"), cert=foreign, verify=ca, timeout=10)


def test_a_forged_client_cert_header_does_not_route(env: Env) -> None:
    """SSL_CLIENT_CERT comes from the TLS socket only; a header of that name is ignored."""
    url, cert, ca = env.files_from(env.kubeconfig("apiserver-gh"))
    forged = (env.pki / "clients" / "apiserver-oidc.crt").read_text().replace("\n", "")
    jwt = env.issuer.mint(sub="gail")
    resp = requests.post(url, json=review_body(jwt), cert=cert, verify=ca, timeout=10,
                         headers={"SSL-Client-Cert": forged, "SSL_CLIENT_CERT": forged})
    assert resp.json()["status"]["authenticated"] is False


def test_server_certificate_is_reloaded_when_replaced(env: Env) -> None:
    _url, cert, ca = env.files_from(env.kubeconfig("apiserver-oidc"))

    def served_serial() -> int:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(*cert)
        with socket.create_connection(("127.0.0.1", env.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            from cryptography import x509

            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return int(x509.load_der_x509_certificate(der).serial_number)

    before = served_serial()
    _cli("authn", "init", "server", "--pki-dir", str(env.pki), "--ip", "127.0.0.1", "--force")
    assert served_serial() != before


def test_no_token_in_server_log(env: Env) -> None:
    url, cert, ca = env.files_from(env.kubeconfig("apiserver-oidc"))
    jwt = env.issuer.mint(sub="hana")
    for token in (jwt, "e2e-static-token-1", "e2e-wrong-token-zz"):
        requests.post(url, json=review_body(token), cert=cert, verify=ca, timeout=10)
    log = env.server.output()
    assert "authn.tokenreview" in log  # decisions are logged (as audit lines)...
    for token in (jwt, jwt.split(".")[1], "e2e-static-token-1", "e2e-wrong-token-zz"):
        assert token not in log  # ...but never the token
