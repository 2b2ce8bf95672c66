"""Every route of the assembled service, fed malformed bodies and query strings, answers with a client error or a
clear 503: never a 500. Non-metadata routes answer errors as Kubernetes Status JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

BODIES = [
    b"", b"{", b"[]", b"null", b"{}", b"\xff\xfe", json.dumps({"a": "b" * 10000}).encode(),
    b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"}',
    b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":123}}',
    b'{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview","spec":{"group":"x"}}',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},'
    b'"namespace":"n","object":{"metadata":{},"spec":{"containers":"x"}}}}',
    b'{"namespace": 1, "serviceAccount": [], "cloud": "mars", "identity": null}',
    b"apiVersion: v1\nkind: Secret\ndata:\n  a: '!!'\n",
    b"kind: Secret\ndata: [1, 2]\n# kubesec:v:4\n# kubesec:mac:x\n",
]
QUERIES = ["", "?limit=abc", "?continue=-1", "?x=1", "?namespace=&pod=", "?recursive=true", "?audience=" + "a" * 5000,
           "?scopes=%ff", "?timeout=garbage"]
HEADERS = [{}, {"Authorization": "Bearer admin-token-0001"}, {"Authorization": "Bearer x" * 3000},
           {"Metadata-Flavor": "Google", "X-aws-ec2-metadata-token": "junk"}]
METADATA_PREFIXES = ("/latest", "/computeMetadata", "/v1/credentials")
#: The web console answers people with HTML pages (docs/console.md), not Status JSON.
HTML_PREFIXES = ("/ui/",)


def concrete(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?(\w+)>", lambda m: {"provider": "github"}.get(m.group(1), "x1"), rule)


@pytest.fixture
def routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, concrete(rule.rule)))
    assert len(found) > 40, "expected the capabilities' routes to be registered"
    return found


def check(resp: Any, method: str, path: str) -> None:
    assert resp.status_code != 500, (method, path, resp.get_data(as_text=True)[:300])
    assert "Traceback" not in resp.get_data(as_text=True)
    if resp.status_code >= 400 and not path.startswith(METADATA_PREFIXES + HTML_PREFIXES):
        body = resp.get_json(silent=True)
        assert body and body.get("kind") == "Status", (method, path, resp.status_code)


def test_malformed_bodies_never_give_500(client: Any, routes: list[tuple[str, str]]) -> None:
    for method, path in routes:
        if method not in ("POST", "PUT", "PATCH"):
            continue
        for headers in HEADERS[:2]:
            for body in BODIES:
                for ctype in ("application/json", "application/yaml"):
                    resp = client.open(path, method=method, data=body, headers={**headers, "Content-Type": ctype})
                    check(resp, method, path)


def test_odd_queries_and_headers_never_give_500(client: Any, routes: list[tuple[str, str]]) -> None:
    for method, path in routes:
        if method in ("POST", "PUT", "PATCH"):
            continue
        for headers in HEADERS:
            for query in QUERIES:
                check(client.open(path + query, method=method, headers=headers), method, path + query)
