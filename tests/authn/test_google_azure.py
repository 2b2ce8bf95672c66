"""Google and Azure AD providers through the webhook, against OIDC issuer and Microsoft Graph stand-ins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.authn.conftest import V1BETA1, post_review
from tests.standins.msgraph import MsGraph
from tests.standins.oidc_issuer import OidcIssuer

TENANT = "7f0c3f5e-0000-4000-8000-00000000abcd"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"


def _status(client: Any, token: str, **kw: Any) -> dict[str, Any]:
    resp = post_review(client, token, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["status"]  # type: ignore[no-any-return]


# ---- Google ------------------------------------------------------------------------------------------------
@pytest.fixture
def google(make_app: Any) -> Iterator[tuple[OidcIssuer, Any]]:
    with OidcIssuer(client_id="123.apps.googleusercontent.com") as idp:
        app = make_app([{"type": "google", "name": "example.com", "issuer": idp.url,
                         "audiences": ["123.apps.googleusercontent.com"], "timeout": 1}])
        yield idp, app.test_client()


def _google_token(idp: OidcIssuer, **claims: Any) -> str:
    base = {"sub": "1098765", "email": "gina@example.com", "email_verified": True, "hd": "example.com"}
    return idp.mint(**{**base, **claims})


def test_google_valid_token(google: tuple[OidcIssuer, Any]) -> None:
    idp, client = google
    body = post_review(client, _google_token(idp), api_version=V1BETA1).get_json()
    assert body["apiVersion"] == V1BETA1
    assert body["status"]["user"] == {"username": "gina@example.com", "uid": "1098765", "groups": []}


def test_google_rejections(google: tuple[OidcIssuer, Any]) -> None:
    idp, client = google
    cases = {
        "token is not from the allowed Google domain": _google_token(idp, hd="evil.com"),
        "token audience not accepted": _google_token(idp, aud="999.apps.googleusercontent.com"),
        "token expired": _google_token(idp, exp=int(time.time()) - 3600),
        "email address not verified": _google_token(idp, email_verified=False),
    }
    for reason, token in cases.items():
        assert _status(client, token) == {"authenticated": False, "error": f"google/example.com: {reason}"}
    consumer = _google_token(idp, hd=None)  # a gmail.com account has no hd claim
    assert _status(client, consumer)["error"] == "google/example.com: token is not from the allowed Google domain"
    # An access token is no ID token: no provider claims it, nothing is sent anywhere.
    assert _status(client, "ya29.not-an-id-token")["error"] == \
        "no configured identity provider accepts tokens of this kind"


def test_google_upstream_stopped_is_503(google: tuple[OidcIssuer, Any]) -> None:
    idp, client = google
    token = _google_token(idp)
    idp.stop()
    started = time.monotonic()
    assert post_review(client, token).status_code == 503
    assert time.monotonic() - started < 2.0


# ---- Azure AD ----------------------------------------------------------------------------------------------
@pytest.fixture
def azure_idp() -> Iterator[OidcIssuer]:
    with OidcIssuer(path=f"/{TENANT}/v2.0", client_id="api-client-id") as idp:
        yield idp


@pytest.fixture
def graph(azure_idp: OidcIssuer) -> Iterator[MsGraph]:
    with MsGraph(azure_idp, members={"oid-many": [f"group-{i}" for i in range(250)]}) as g:
        yield g


@pytest.fixture
def azure_client(azure_idp: OidcIssuer, graph: MsGraph, make_app: Any, tmp_path: Path) -> Any:
    secret = tmp_path / "graph-secret"
    secret.write_text("graph-client-secret-value\n")
    app = make_app([{"type": "azure", "name": TENANT, "authority": azure_idp.base_url,
                     "audiences": ["api-client-id"], "graph_base_url": graph.url, "graph_client_id": "graph-app",
                     "graph_client_secret_file": str(secret), "timeout": 1}])
    return app.test_client()


def _azure_token(idp: OidcIssuer, **claims: Any) -> str:
    base = {"sub": "pairwise-sub", "oid": "oid-1", "tid": TENANT, "upn": "ann@contoso.com",
            "groups": ["g-admins", "g-dev"]}
    return idp.mint(**{**base, **claims})


def test_azure_valid_token_with_groups_claim(azure_idp: OidcIssuer, azure_client: Any) -> None:
    status = _status(azure_client, _azure_token(azure_idp))
    assert status["user"] == {"username": "ann@contoso.com", "uid": "oid-1", "groups": ["g-admins", "g-dev"]}


def test_azure_groups_overage_is_resolved_through_graph(azure_idp: OidcIssuer, graph: MsGraph,
                                                        azure_client: Any) -> None:
    overage = {"groups": None, "oid": "oid-many", "_claim_names": {"groups": "src1"},
               "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x/users/oid-many/getMemberObjects"}}}
    status = _status(azure_client, _azure_token(azure_idp, **overage))
    assert status["user"]["groups"] == [f"group-{i}" for i in range(250)]
    assert graph.hits["getMemberObjects"] == 1
    assert azure_idp.hits["token"] == 1
    hasgroups = _status(azure_client, _azure_token(azure_idp, groups=None, oid="oid-many", hasgroups=True, sub="s2"))
    assert len(hasgroups["user"]["groups"]) == 250
    assert azure_idp.hits["token"] == 1  # the Graph app token is reused


def test_azure_rejections(azure_idp: OidcIssuer, azure_client: Any) -> None:
    cases = {
        "token is from another tenant": _azure_token(azure_idp, tid=OTHER_TENANT),
        "token audience not accepted": _azure_token(azure_idp, aud="some-other-app"),
        "token expired": _azure_token(azure_idp, exp=int(time.time()) - 3600),
    }
    for reason, token in cases.items():
        assert _status(azure_client, token) == {"authenticated": False, "error": f"azure/{TENANT}: {reason}"}
    other_issuer = _azure_token(azure_idp, iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    assert _status(azure_client, other_issuer)["error"] == "no configured identity provider accepts tokens of this kind"
    unknown_user = _azure_token(azure_idp, groups=None, oid="oid-gone", hasgroups=True)
    assert _status(azure_client, unknown_user)["error"] == f"azure/{TENANT}: user not found in the directory"


def test_azure_graph_down_is_503_not_empty_groups(azure_idp: OidcIssuer, graph: MsGraph, azure_client: Any) -> None:
    graph.fail_status = 503
    token = _azure_token(azure_idp, groups=None, oid="oid-many", hasgroups=True)
    assert post_review(azure_client, token).status_code == 503
    graph.fail_status = 0
    graph.stop()
    assert post_review(azure_client, token).status_code == 503


def test_azure_tenant_keys_stopped_is_503(azure_idp: OidcIssuer, azure_client: Any) -> None:
    token = _azure_token(azure_idp)
    azure_idp.stop()
    started = time.monotonic()
    assert post_review(azure_client, token).status_code == 503
    assert time.monotonic() - started < 2.0


# ---- Google groups through the Admin SDK Directory API ---------------------------------------------------------
@pytest.fixture
def google_dir(make_app: Any, tmp_path: Path) -> Iterator[tuple[OidcIssuer, Any, Any]]:
    from tests.standins.google_directory import GoogleDirectory

    with OidcIssuer(client_id="123.apps.googleusercontent.com") as idp, GoogleDirectory(page_size=2) as gd:
        gd.memberships["gina@example.com"] = ["dev@example.com", "ops@example.com", "all@example.com"]
        key = gd.write_key(tmp_path / "sa.json")
        app = make_app([{"type": "google", "name": "example.com", "issuer": idp.url,
                         "audiences": ["123.apps.googleusercontent.com"], "timeout": 1,
                         "service_account_file": str(key), "admin_email": "admin@example.com",
                         "directory_base_url": gd.url, "groups_prefix": "google:"}])
        yield idp, gd, app.test_client()


def test_google_groups_from_the_directory_with_paging(google_dir: tuple[OidcIssuer, Any, Any]) -> None:
    idp, gd, client = google_dir
    status = _status(client, _google_token(idp))
    assert status["user"] == {"username": "gina@example.com", "uid": "1098765",
                              "groups": ["google:dev@example.com", "google:ops@example.com", "google:all@example.com"]}
    assert gd.hits["groups"] == 2 and gd.hits["token"] == 1
    _status(client, _google_token(idp, sub="other-sub"))
    assert gd.hits["token"] == 1  # the directory access token is reused
    unknown = _google_token(idp, email="ghost@example.com")
    assert _status(client, unknown)["error"] == "google/example.com: user not found in the Google directory"


def test_google_directory_down_is_503(google_dir: tuple[OidcIssuer, Any, Any]) -> None:
    idp, gd, client = google_dir
    gd.fail_status = 500
    assert post_review(client, _google_token(idp)).status_code == 503
    gd.fail_status = 0
    gd.stop()
    started = time.monotonic()
    assert post_review(client, _google_token(idp, sub="x2")).status_code == 503
    assert time.monotonic() - started < 2.0


def test_google_directory_config_errors_name_the_key(make_app: Any, tmp_path: Path) -> None:
    from kagiya.errors import ConfigError

    base = {"type": "google", "name": "example.com", "issuer": "http://127.0.0.1:9", "audiences": ["a"]}
    with pytest.raises(ConfigError, match="service_account_file"):
        make_app([{**base, "service_account_file": str(tmp_path / "missing.json"), "admin_email": "a@e"}])
    (tmp_path / "k.json").write_text('{"client_email": "x", "private_key": "nope", "token_uri": "http://t"}')
    with pytest.raises(ConfigError, match="admin_email"):
        make_app([{**base, "service_account_file": str(tmp_path / "k.json")}])


def test_azure_slow_graph_is_503_within_the_provider_timeout(azure_idp: OidcIssuer, graph: MsGraph,
                                                             azure_client: Any) -> None:
    token = _azure_token(azure_idp, groups=None, oid="oid-many", hasgroups=True)
    graph.delay = 3.0
    started = time.monotonic()
    resp = post_review(azure_client, token)
    elapsed = time.monotonic() - started
    graph.delay = 0
    assert resp.status_code == 503
    assert elapsed < 2.5  # provider timeout is 1 s; Graph would take 3 s
