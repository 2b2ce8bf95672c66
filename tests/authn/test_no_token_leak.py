"""No log line and no audit row carries a token: only keyed `hmac:` fingerprints."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from kagiya import audit
from tests.authn.conftest import oidc_provider, post_review
from tests.standins.oidc_issuer import OidcIssuer


def test_reviews_leave_fingerprints_not_tokens(issuer: OidcIssuer, make_app: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app([oidc_provider(issuer, jwks_min_refresh_seconds=0)], failed_reviews_per_minute=4)
    client = app.test_client()
    good_jwt = issuer.mint(sub="ivan", groups=["dev"])
    bad_jwt = issuer.mint(sub="ivan", aud="elsewhere")
    tokens = [good_jwt, bad_jwt, "admin-token-0001", "wrong-static-token-7777", "zz" * 40]
    for token in tokens:
        post_review(client, token)
        post_review(client, token, path="/tokenreviews")
    client.post("/authn/tokenreviews", data=json.dumps({"apiVersion": "v1", "spec": {"token": tokens[3]}}))
    for i in range(5):
        post_review(client, f"guess-token-{i}-abcdef")
    issuer.stop()
    issuer.rotate()
    late = issuer.mint(sub="late")  # a key kagiya has not seen, issuer down: 503
    from tests.authn.conftest import review_body

    resp = client.post("/authn/tokenreviews", json=review_body(late), environ_base={"REMOTE_ADDR": "127.0.0.9"})
    assert resp.status_code == 503
    tokens += [late] + [f"guess-token-{i}-abcdef" for i in range(5)]

    assert audit.flush(app.extensions["kagiya.store"])  # review events are written in the background
    with app.extensions["kagiya.store"].begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(audit.audit_events))]
    assert {r["outcome"] for r in rows} >= {"success", "denied", "error"}
    assert all("hmac:" in r["details"] for r in rows)
    dumped = json.dumps(rows, default=str) + "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str)
                                                      for r in caplog.records)
    for token in tokens:
        assert token not in dumped
        if token.count(".") == 2:
            assert token.split(".")[2] not in dumped
    assert audit.fingerprint(good_jwt) in dumped
