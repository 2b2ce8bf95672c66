"""Guard's routing by the verified client certificate (as the server hands it over in SSL_CLIENT_CERT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kagiya.tls import pki
from tests.authn.conftest import oidc_provider, review_body
from tests.standins.oidc_issuer import OidcIssuer


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "pki"
    pki.init_ca(root)
    out = {}
    for name, provider, org in [("oidc-corp", "oidc", "corp"), ("oidc-other", "oidc", "other"),
                                ("static", "token-auth", "default"), ("agent", "agent", "node-agent")]:
        out[name] = pki.init_client(root, name, provider=provider, org=org).cert.read_text()
    # A certificate whose O= is no provider type (e.g. a generic apiserver client cert) uses the default chain.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert, ca_key = pki._load_ca(root)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    cert = pki._builder(subject, ca_cert.subject, key.public_key(), 1).sign(ca_key, hashes.SHA256())
    out["generic"] = pki._cert_pem(cert).decode()
    return out


def _review(client: Any, token: str, pem: str, path: str = "/authn/tokenreviews") -> dict[str, Any]:
    resp = client.post(path, json=review_body(token), environ_base={"SSL_CLIENT_CERT": pem})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["status"]  # type: ignore[no-any-return]


def test_o_and_cn_pick_the_provider(issuer: OidcIssuer, make_app: Any, certs: dict[str, str]) -> None:
    with OidcIssuer(client_id="kube") as other_idp:
        app = make_app([oidc_provider(issuer, name="corp"), oidc_provider(other_idp, name="other")])
        client = app.test_client()
        corp_token, other_token = issuer.mint(sub="c1"), other_idp.mint(sub="o1")
        assert _review(client, corp_token, certs["oidc-corp"])["user"]["username"] == "c1"
        assert _review(client, other_token, certs["oidc-corp"])["authenticated"] is False
        assert _review(client, other_token, certs["oidc-other"])["user"]["username"] == "o1"
        # token file first on every route
        assert _review(client, "dev-token-0002", certs["oidc-other"])["user"]["username"] == "bob"
        # O=token-auth: the token file only
        assert _review(client, corp_token, certs["static"]) == {"authenticated": False,
                                                            "error": "token-auth/default: invalid token"}
        assert _review(client, "dev-token-0002", certs["static"])["user"]["username"] == "bob"
        # O= that names no provider type: the default chain (both issuers)
        assert _review(client, other_token, certs["generic"])["user"]["username"] == "o1"
        # a path naming the certificate's own provider is fine; a certificate naming no provider may pick any path
        path = "/authn/oidc/other/tokenreviews"
        assert _review(client, other_token, certs["oidc-other"], path=path)["user"]["username"] == "o1"
        assert _review(client, other_token, certs["generic"], path=path)["user"]["username"] == "o1"
        text = client.get("/metrics").get_data(as_text=True)
        assert 'kagiya_authn_token_reviews_total{outcome="authenticated",provider="oidc/other"}' in text


@pytest.mark.parametrize(("cert", "path"), [
    ("oidc-corp", "/authn/oidc/other/tokenreviews"),
    ("oidc-corp", "/authn/token-auth/default/tokenreviews"),
    ("static", "/authn/oidc/corp/tokenreviews"),
])
def test_a_path_cannot_override_the_provider_the_certificate_names(issuer: OidcIssuer, make_app: Any,
                                                                     certs: dict[str, str], cert: str,
                                                                     path: str) -> None:
    """A verified client cert is the stronger credential: O=oidc,CN=corp may not post to another provider's path."""
    with OidcIssuer(client_id="kube") as other_idp:
        app = make_app([oidc_provider(issuer, name="corp"), oidc_provider(other_idp, name="other")])
        client = app.test_client()
        resp = client.post(path, json=review_body(other_idp.mint(sub="o1")),
                           environ_base={"SSL_CLIENT_CERT": certs[cert]})
        assert resp.status_code == 403
        body = resp.get_json()
        assert (body["kind"], body["reason"]) == ("Status", "Forbidden")
        assert "may not use" in body["message"]
        # The same cert on its own path, and the static cert on the token file's path, still work.
        assert _review(client, "dev-token-0002", certs["static"],
                       path="/authn/token-auth/default/tokenreviews")["user"]["username"] == "bob"
        assert _review(client, issuer.mint(sub="c1"), certs["oidc-corp"],
                       path="/authn/oidc/corp/tokenreviews")["user"]["username"] == "c1"


def test_a_node_agent_certificate_may_not_ask_for_token_reviews(make_app: Any, certs: dict[str, str]) -> None:
    """The agent's certificate (kept on every node) opens /iam/agent/ only; the webhook has no failed-review limit,
    so it must not become a token oracle."""
    client = make_app().test_client()
    for path in ("/authn/tokenreviews", "/tokenreviews", "/authn/token-auth/default/tokenreviews"):
        resp = client.post(path, json=review_body("dev-token-0002"), environ_base={"SSL_CLIENT_CERT": certs["agent"]})
        assert resp.status_code == 403, path
        assert resp.get_json()["kind"] == "Status"
