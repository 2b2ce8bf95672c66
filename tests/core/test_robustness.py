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


# --- issue 16.5: the malformed-input classes, each a 400 Status on every route that reads that input -------------

ADMIN = {"Authorization": "Bearer admin-token-0001"}


def assert_400(resp: Any, what: str) -> None:
    assert resp.status_code == 400, (what, resp.status_code, resp.get_data(as_text=True)[:300])
    body = resp.get_json()
    assert body["kind"] == "Status" and body["code"] == 400 and body["reason"] == "BadRequest", what


def test_json_nested_ten_thousand_deep_is_400_on_every_json_route(client: Any, routes: list[tuple[str, str]]) -> None:
    deep_array = b"[" * 10000 + b"]" * 10000
    deep_object = b'{"a":' * 10000 + b"1" + b"}" * 10000
    deep_inside = b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":' + deep_object + b"}"
    for method, path in routes:
        if method not in ("POST", "PUT", "PATCH") or path.startswith(METADATA_PREFIXES + HTML_PREFIXES):
            continue  # the console's forms are not JSON routes (their own tests cover bad posts)
        for body in (deep_array, deep_object, deep_inside):
            resp = client.open(path, method=method, data=body, headers={**ADMIN, "Content-Type": "application/json"})
            check(resp, method, path)
            if resp.status_code not in (401, 403, 404, 405, 415):
                assert_400(resp, f"{method} {path}")


def test_json_numbers_past_the_int_digit_limit_are_400_on_every_json_route(client: Any,
                                                                          routes: list[tuple[str, str]]) -> None:
    """Python refuses to convert integers longer than 4,300 digits with a plain ValueError (not a JSON syntax
    error): a 5,000-digit number anywhere in a body is a 400 Status, not a 500."""
    long_number = b"1" * 5000
    bodies = (long_number, b'{"a":' + long_number + b"}",
              b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","n":'
              + long_number + b"}}")
    for method, path in routes:
        if method not in ("POST", "PUT", "PATCH") or path.startswith(METADATA_PREFIXES + HTML_PREFIXES):
            continue
        for body in bodies:
            resp = client.open(path, method=method, data=body, headers={**ADMIN, "Content-Type": "application/json"})
            check(resp, method, path)
            if resp.status_code not in (401, 403, 404, 405, 415):
                assert_400(resp, f"{method} {path}")


def test_json_nesting_up_to_the_cap_is_accepted(client: Any) -> None:
    from kagiya.httpjson import MAX_JSON_DEPTH, parse_json

    ok = b'{"a":' * (MAX_JSON_DEPTH - 1) + b"1" + b"}" * (MAX_JSON_DEPTH - 1)
    assert parse_json(ok)["a"]
    resp = client.post("/authn/tokenreviews", data=b'{"spec":' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}")
    assert_400(resp, "one level past the cap")
    assert "nested" in resp.get_json()["message"]


@pytest.mark.parametrize("path", [
    "/v1/iam/binding-requests/%C2%B2", "/v1/iam/binding-requests/%D9%A3/approve",
    "/v1/audit?limit=%C2%B2", "/v1/audit?continue=%D9%A3", "/v1/iam/binding-requests?limit=%C2%B2",
    "/v1/iam/binding-requests?continue=%C2%B2", "/v1/iam/bindings?limit=%EF%BC%91",
])
def test_unicode_digits_in_ids_and_limits_are_400(client: Any, path: str) -> None:
    method = "POST" if path.endswith("/approve") else "GET"
    assert_400(client.open(path, method=method, headers=ADMIN), path)


@pytest.mark.parametrize("path", [
    "/v1/audit?continue=99999999999999999999999", "/v1/iam/binding-requests?continue=99999999999999999999999",
    "/v1/iam/bindings?continue=99999999999999999999999", "/v1/iam/binding-requests/99999999999999999999999",
    "/v1/audit?limit=99999999999999999999999",
])
def test_integer_overflow_is_400(client: Any, path: str) -> None:
    assert_400(client.get(path, headers=ADMIN), path)


@pytest.mark.parametrize("query", [
    "since=9999-12-31T23:59:59-05:00", "until=0001-01-01T00:00:00%2B05:00", "since=2026-13-01T00:00:00Z",
    "since=%C2%B2026-01-01", "until=99999-01-01T00:00:00Z",
])
def test_dates_out_of_range_are_400(client: Any, query: str) -> None:
    assert_400(client.get(f"/v1/audit?{query}", headers=ADMIN), query)


def test_lone_surrogates_in_json_strings_are_400(client: Any) -> None:
    created = client.post("/v1/iam/binding-requests", headers=ADMIN, json={
        "namespace": "team-a", "serviceAccount": "app", "cloud": "aws",
        "identity": "arn:aws:iam::123456789012:role/app", "reason": "x"})
    rid = created.get_json().get("id", 1) if created.status_code < 300 else 1
    for path, body in [
        (f"/v1/iam/binding-requests/{rid}/deny", b'{"reason":"\\ud800"}'),
        ("/v1/iam/binding-requests", b'{"namespace":"team-a","serviceAccount":"app\\udfff","cloud":"aws",'
                                     b'"identity":"arn:aws:iam::123456789012:role/app","reason":"\\ud800"}'),
        ("/authn/tokenreviews", b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",'
                                b'"spec":{"token":"\\ud800abc"}}'),
    ]:
        assert_400(client.post(path, data=body, headers=ADMIN), path)


@pytest.mark.parametrize("path", [
    "/v1/iam/binding-requests/1%00", "/v1/iam/policies/team%00a", "/v1/audit?actor=a%00b",
    "/v1/iam/binding-requests?namespace=a%00", "/healthz%00",
])
def test_nul_bytes_in_paths_and_queries_are_400(client: Any, path: str) -> None:
    method = "PUT" if "/policies/" in path else "GET"
    assert_400(client.open(path, method=method, headers=ADMIN, json={}), path)


def test_nul_bytes_in_json_strings_are_400(client: Any) -> None:
    for path, body in [
        ("/v1/iam/binding-requests", {"namespace": "team-a", "serviceAccount": "a\u0000b", "cloud": "aws",
                                      "identity": "arn:aws:iam::123456789012:role/app"}),
        ("/v1/iam/policies/team-a", {"allowedIdentities": ["arn:aws:iam::123456789012:role/\u0000"]}),
    ]:
        method = "PUT" if "/policies/" in path else "POST"
        assert_400(client.open(path, method=method, headers=ADMIN, json=body), path)


@pytest.mark.slow
@pytest.mark.integration
def test_malformed_input_on_postgresql_is_400_not_500(make_settings: Any, token_file: Any) -> None:
    """PostgreSQL refuses NUL in text and integers past bigint; the shared checks answer 400 before it is asked."""
    from tests.support.apps import kagiya_app
    from tests.support.postgres import pg_bindir, postgres_server

    if pg_bindir() is None:
        pytest.skip("PostgreSQL binaries not installed (scripts/install-system-deps.sh)")
    with postgres_server() as url:
        settings = make_settings({"database_url": url, "authn": {"token_file": str(token_file)}})
        with kagiya_app(settings) as app:
            client = app.test_client()
            for path in ("/v1/iam/binding-requests?namespace=a%00b", "/v1/audit?actor=%00", "/v1/audit?limit=%C2%B2",
                         "/v1/iam/binding-requests/1%00", "/v1/audit?continue=99999999999999999999999",
                         "/v1/audit?since=9999-12-31T23:59:59-05:00"):
                assert_400(client.get(path, headers=ADMIN), path)
            body = {"namespace": "team-a", "serviceAccount": "a\u0000b", "cloud": "aws",
                    "identity": "arn:aws:iam::123456789012:role/app", "reason": "\ud800"}
            assert_400(client.post("/v1/iam/binding-requests", headers=ADMIN,
                                   data=json.dumps(body).encode()), "NUL and surrogate in JSON")
            # the largest accepted offset is still a valid bigint on PostgreSQL
            assert client.get(f"/v1/audit?continue={2**62}", headers=ADMIN).status_code == 200
            assert client.get(f"/v1/iam/binding-requests?continue={2**62}", headers=ADMIN).status_code == 200
